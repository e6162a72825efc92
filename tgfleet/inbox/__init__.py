"""tgfleet/inbox."""
