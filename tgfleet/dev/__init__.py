"""tgfleet/dev."""
