# tgfleet's testing kit: its fixtures (tgfleet_bot, tgfleet_user, ...) for every test here.
pytest_plugins = ["tgfleet.testing"]
