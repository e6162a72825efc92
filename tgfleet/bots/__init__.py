"""Bot apps: the handler API (``Router``, ``Context``) and the built-in apps.

``bots.settings['app']`` picks a bot's app by name; the default is ``matchmaking``.
"""

from tgfleet.bots.router import Context, Router

DEFAULT_APP = "matchmaking"


def app_router(name: str | None) -> Router:
    """The Router of app ``name`` (unknown names raise KeyError with the choices)."""
    from tgfleet.bots.apps import echo, matchmaking

    apps = {matchmaking.router.name: matchmaking.router, echo.router.name: echo.router}
    key = name or DEFAULT_APP
    if key not in apps:
        raise KeyError(f"unknown bot app {key!r}; choose one of {sorted(apps)}")
    return apps[key]


__all__ = ["DEFAULT_APP", "Context", "Router", "app_router"]
