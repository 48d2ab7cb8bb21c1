"""The claim: cache, throttle and refresh lease in one step, on every store (TOKEN-KIS-LOCK).

The Redis store claims in one script against a real redis-server; the file and process-local stores
claim in steps (``claim_in_steps``). All three must answer the same way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from stockmon.redaction import Secret
from stockmon.reference.fleet.file_store import FileCredentialStore, cache_file
from stockmon.reference.fleet.lease import Lease
from stockmon.reference.fleet.redis_conn import connect_redis
from stockmon.reference.fleet.token_state import CachedCredential
from stockmon.reference.fleet.token_store import (
    Claim,
    CredentialStore,
    LocalCredentialStore,
    RedisCredentialStore,
    StoreWrite,
    claim_in_steps,
    key_prefix,
)

APP_KEY = Secret("PS-claim-test-app-key-0000000000000000")
TTL = 5.0


@pytest.fixture(params=["redis", "file", "local"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[CredentialStore]:
    """Each kind of store, empty."""
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        client = connect_redis(Secret(url))
        made: CredentialStore = RedisCredentialStore(client, key_prefix("mock", APP_KEY))
        try:
            yield made
        finally:
            await made.aclose()
            await client.aclose()
    elif request.param == "file":
        yield FileCredentialStore(cache_file(tmp_path, "mock", APP_KEY))
    else:
        yield LocalCredentialStore()


def cred(value: str) -> CachedCredential:
    """A credential valid for a long while (the stores keep it for the write's keep_for)."""
    return CachedCredential(Secret(value), 4_000_000_000.0, 1_000.0)


async def stored(store: CredentialStore, value: str, throttle: float | None = None) -> int:
    """Write ``value`` under a lease of its own (released); the version it got."""
    claim = await store.claim("token", TTL, "writer", 10**9)
    assert claim.lease is not None, "the writer's claim must get the free lease"
    version = await store.write(claim.lease, "token", StoreWrite(cred(value), 600.0, throttle))
    await claim.lease.release()
    assert version is not None
    return version


def held(claim: Claim) -> Lease:
    """The claim's lease, which the test expects it to have."""
    assert claim.lease is not None, claim
    return claim.lease


async def test_a_claim_on_an_empty_store_takes_the_lease(store: CredentialStore) -> None:
    """Nothing stored, nobody holding: the claim gets the lease and sees no credential."""
    claim = await store.claim("token", TTL, "a", 0)
    lease = held(claim)
    assert claim.cred is None and claim.version == 0 and claim.throttle == 0
    assert lease.holder == "a" and lease.remaining() > 0
    await lease.release()


async def test_a_held_lease_is_not_taken_twice(store: CredentialStore) -> None:
    """While one claim holds the lease another gets the cache but no lease; after release it can."""
    first = held(await store.claim("token", TTL, "a", 0))
    second = await store.claim("token", TTL, "b", 0)
    assert second.lease is None
    await first.release()
    third = held(await store.claim("token", TTL, "b", 0))
    assert third.epoch > first.epoch  # fencing: every acquisition a new epoch
    await third.release()


async def test_a_newer_credential_is_returned_instead_of_the_lease(store: CredentialStore) -> None:
    """Someone stored a version above the caller's: it gets that credential and no lease."""
    version = await stored(store, "tok-new")
    claim = await store.claim("token", TTL, "a", version - 1)
    assert claim.lease is None
    assert claim.version == version
    assert claim.cred is not None and claim.cred.value.reveal() == "tok-new"


async def test_the_credential_already_seen_is_replaced_under_the_lease(
    store: CredentialStore,
) -> None:
    """The caller has seen the stored version (it is expired or rejected): the claim takes the lease."""
    version = await stored(store, "tok-old")
    claim = await store.claim("token", TTL, "a", version)
    lease = held(claim)
    assert claim.cred is not None and claim.cred.version == version
    await lease.release()


async def test_no_lease_inside_the_throttle_window(store: CredentialStore) -> None:
    """While issuance is throttled the claim reports the seconds left and takes no lease."""
    version = await stored(store, "tok", throttle=30.0)
    claim = await store.claim("token", TTL, "a", version)
    assert claim.lease is None
    assert 25.0 < claim.throttle <= 30.0


async def test_the_bad_holder_name_is_refused(store: CredentialStore) -> None:
    """A holder name with the lease value's separators is a ValueError, as for try_acquire."""
    with pytest.raises(ValueError, match="holder"):
        await store.claim("token", TTL, "a/b", 0)


async def test_a_malformed_redis_entry_does_not_block_the_refresh(redis_url: str) -> None:
    """An unreadable cache hash with a high version: reported, then claimable against it."""
    client = connect_redis(Secret(redis_url))
    store = RedisCredentialStore(client, key_prefix("mock", APP_KEY))
    try:
        await client.hset(store.key("token"), mapping={"value": "x", "version": "7"})
        first = await store.claim("token", TTL, "a", 0)
        assert first.cred is None and first.version == 7 and first.lease is None
        again = await store.claim("token", TTL, "a", first.version)
        await held(again).release()
    finally:
        await store.aclose()
        await client.aclose()


class LateWriter(LocalCredentialStore):
    """A store where another writer stores a credential just after the first snapshot (once)."""

    wrote = False

    async def try_acquire(self, kind: str, ttl: float, holder: str):  # type: ignore[no-untyped-def]
        """The first time, let the other writer in (lease, write, release); then acquire."""
        if self.wrote:
            return await super().try_acquire(kind, ttl, holder)
        self.wrote = True
        other = self.leases.try_acquire(f"{kind}:lease", ttl, "other")
        assert other is not None
        await self.write(other, kind, StoreWrite(cred("tok-late"), 600.0))
        await other.release()
        return await super().try_acquire(kind, ttl, holder)


async def test_claim_in_steps_gives_the_lease_back_when_a_write_came_first() -> None:
    """The second snapshot sees the write between the first one and the lease: no lease kept."""
    store = LateWriter()
    claim = await claim_in_steps(store, "token", TTL, "a", 0)
    assert claim.lease is None and claim.version == 1
    assert claim.cred is not None and claim.cred.value.reveal() == "tok-late"
    assert held(await store.claim("token", TTL, "b", 1)).holder == "b"  # the lease is free
