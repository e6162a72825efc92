"""The simulator's access hashes: per account, stable until a rehash, and kept across
restarts."""

from __future__ import annotations

import hashlib
import hmac
import struct

import pytest

from tgfleet.simulator.hashes import AccessHashes
from tgfleet.simulator.world import World, WorldError

SECRET = b"s" * 32


def test_hashes_are_per_account_and_keep_their_original_scheme() -> None:
    # Given hashes that were never rehashed
    hashes = AccessHashes(SECRET)
    digest = hmac.new(SECRET, struct.pack("<qq", 1, 2), hashlib.sha256).digest()
    # Then they are what earlier versions computed (saved sessions keep working), and
    # differ per account
    assert hashes.of(1, 2) == struct.unpack("<q", digest[:8])[0]
    assert hashes.of(1, 2) != hashes.of(3, 2)


def test_a_rehash_changes_the_hash_for_everyone_or_for_one_account() -> None:
    hashes = AccessHashes(SECRET)
    before = {account: hashes.of(account, 7) for account in (1, 2)}
    # When peer 7 is rehashed for account 1 only
    hashes.rehash(7, account_id=1)
    # Then only account 1 sees a new hash
    assert hashes.of(1, 7) != before[1]
    assert hashes.of(2, 7) == before[2]
    # When it is rehashed for everyone, Then both change again, each to a new value
    once = {account: hashes.of(account, 7) for account in (1, 2)}
    hashes.rehash(7)
    assert all(hashes.of(a, 7) not in (before[a], once[a]) for a in (1, 2))


def test_rehashes_survive_a_save_and_load() -> None:
    # Given a world where a user was rehashed
    world = World(secret=SECRET)
    bot, user = world.create_bot(), world.create_user("Ann")
    world.rehash(user.id)
    world.rehash(user.id, bot.id)
    expected = world.access_hash(bot.id, user.id)
    # When its hashes are saved and loaded into a fresh world with the same secret
    again = World(secret=SECRET)
    again.hashes.load(world.hashes.to_json())
    # Then the bot sees the same hash
    assert again.access_hash(bot.id, user.id) == expected


def test_rehashing_an_unknown_peer_or_for_an_unknown_bot_is_refused() -> None:
    world = World(secret=SECRET)
    user = world.create_user("Ann")
    with pytest.raises(WorldError, match="no user or bot"):
        world.rehash(999)
    with pytest.raises(WorldError, match="no bot"):
        world.rehash(user.id, 999)
