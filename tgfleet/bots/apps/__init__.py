"""tgfleet/bots/apps."""
