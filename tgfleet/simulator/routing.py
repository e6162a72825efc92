"""The control API's routing table, shared by the modules that add routes to it."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tgfleet.simulator.server import Simulator

Json = dict[str, Any]
Route = Callable[["Simulator", re.Match[str], Json, dict[str, str]], Awaitable[Json]]
ROUTES: list[tuple[str, re.Pattern[str], Route]] = []


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def route(method: str, pattern: str) -> Callable[[Route], Route]:
    def register(handler: Route) -> Route:
        ROUTES.append((method, re.compile(f"^{pattern}$"), handler))
        return handler

    return register


def number_field(body: Json, name: str, default: float | None = None) -> float:
    value = body.get(name, default)
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        raise HttpError(400, f"{name!r} must be a non-negative number")
    return float(value)


def int_field(body: Json, name: str) -> int:
    value = body.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise HttpError(400, f"{name!r} must be an integer id")
    return value
