"""tgfleet/ops."""
