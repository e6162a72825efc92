"""quickbot: the bot of tgfleet's tutorial (docs/tutorial.md)."""
