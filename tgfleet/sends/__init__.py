"""tgfleet/sends."""
