"""Bot leases on a real Redis: one holder, fencing tokens grow, expiry hands over."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from tests.support.waiting import wait_until
from tgfleet.platform.lease import LeaseStore
from tgfleet.platform.settings import Settings


@pytest.fixture
def client(settings: Settings) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(settings.redis_url)
    yield client
    for key in client.scan_iter("tgfleet:lease*"):
        client.delete(key)
    client.close()


def test_one_holder_and_takeover_after_expiry(client: redis.Redis) -> None:
    a = LeaseStore(client, "listener-a", ttl_s=0.5)
    b = LeaseStore(client, "listener-b", ttl_s=0.5)
    # Given A holds bot 7
    lease_a = a.acquire(7)
    assert lease_a is not None
    # Then B cannot take it, and A re-acquiring keeps the same token
    assert b.acquire(7) is None
    assert a.acquire(7) == lease_a
    assert a.renew(lease_a)
    # When A stops renewing, B takes over with a larger fencing token
    wait_until(
        lambda: not client.exists(LeaseStore.key(7)), 5, "A's lease on bot 7 to expire", poll=0.02
    )
    lease_b = b.acquire(7)
    assert lease_b is not None and lease_b.token > lease_a.token
    # And A's stale lease can neither renew nor release B's
    assert not a.renew(lease_a)
    a.release(lease_a)
    holder = b.holder(7)
    assert holder is not None and holder[0] == "listener-b"


def test_release_frees_the_bot(client: redis.Redis) -> None:
    a = LeaseStore(client, "listener-a")
    b = LeaseStore(client, "listener-b")
    lease = a.acquire(8)
    assert lease is not None
    a.release(lease)
    assert a.holder(8) is None
    assert b.acquire(8) is not None
