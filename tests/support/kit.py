"""The testing kit (``tgfleet.testing``) in tgfleet's own tests: its fixtures, on the
session's services and simulator (``tests/conftest.py``) instead of a pair of its own.
A conftest imports everything here to use the kit."""

from __future__ import annotations

from typing import Any

import pytest

from tgfleet.dev.services import DevServices
from tgfleet.testing import (
    tgfleet_bot,
    tgfleet_env,
    tgfleet_fleet,
    tgfleet_settings,
    tgfleet_user,
)


@pytest.fixture(scope="session")
def tgfleet_services(dev_services: DevServices) -> DevServices:
    return dev_services


@pytest.fixture(scope="session")
def tgfleet_simulator(simulator: Any) -> Any:
    return simulator


__all__ = [
    "tgfleet_bot",
    "tgfleet_env",
    "tgfleet_fleet",
    "tgfleet_services",
    "tgfleet_settings",
    "tgfleet_simulator",
    "tgfleet_user",
]
