"""Bot apps: which Router a bot runs, found by name.

A bot's app (``bots.settings['app']``) is either

* the name of an app registered in the ``tgfleet.apps`` entry-point group; tgfleet's
  own (``matchmaking``, ``echo``) are registered there like anyone's, in its
  ``pyproject.toml``::

      [project.entry-points."tgfleet.apps"]
      dating = "mybot.app:router"

* or a dotted path to a Router, ``package.module:attribute`` (``mybot.app:router``),
  importable where the update workers run.

``load_app`` raises ``AppUnavailable`` naming what is wrong (no such module, no such
attribute, not a Router), so ``tgfleet bots add --app`` refuses a bad one at once, and a
worker dead-letters the updates of a bot whose app has gone, with that reason.
"""

from __future__ import annotations

import functools
import importlib
from importlib.metadata import entry_points
from typing import Any

from tgfleet.bots.router import Router
from tgfleet.platform.errors import AppUnavailable

#: The entry-point group apps register in.
ENTRY_POINT_GROUP = "tgfleet.apps"
#: The app of a bot that names none.
DEFAULT_APP = "matchmaking"


@functools.cache
def registered_apps() -> dict[str, str]:
    """Registered app name -> its ``module:attribute`` (read once per process: installing
    a package means restarting the workers anyway)."""
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def load_app(spec: str | None) -> Router:
    """The Router of app ``spec`` (a registered name or ``module:attribute``); loaded once
    per process and spec (every update of a bot looks its app up)."""
    router = _loaded.get(spec)
    if router is None:
        router = _loaded[spec] = _load(spec)
    return router


_loaded: dict[str | None, Router] = {}


def _load(spec: str | None) -> Router:
    name = spec or DEFAULT_APP
    registered = registered_apps()
    target = registered.get(name, name)
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        choices = ", ".join(sorted(registered)) or "none registered"
        raise AppUnavailable(
            f"unknown bot app {name!r}: name a registered app ({choices}) or a Router by "
            "its dotted path, e.g. mybot.app:router"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise AppUnavailable(
            f"bot app {name!r}: cannot import {module_name!r} ({exc}); is its package "
            "installed where the workers run?"
        ) from None
    found: Any = module
    for part in attribute.split("."):
        if not hasattr(found, part):
            raise AppUnavailable(f"bot app {name!r}: {module_name!r} has no {attribute!r}")
        found = getattr(found, part)
    if not isinstance(found, Router):
        raise AppUnavailable(
            f"bot app {name!r}: {target} is a {type(found).__name__}, not a tgfleet.bots.Router"
        )
    return found
