"""CredentialStore: refresh timing with injected clocks, invalidation and single-flight
(unit tests with a fake client), then against the real emulator."""

from __future__ import annotations

import datetime as dt
import threading

from synfs.errors import Unavailable
from synfs.synapse.credentials import CredentialStore
from synfs.synapse.models import StsCredentials
from synfs.synapse.throttle import Coalescer
from tests.harness import wait_for

T0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc)


class Clocks:
    def __init__(self):
        self.t = 1000.0

    def clock(self) -> float:
        return self.t

    def wall(self) -> dt.datetime:
        return T0 + dt.timedelta(seconds=self.t - 1000.0)

    def advance(self, seconds: float) -> None:
        self.t += seconds


class FakeClient:
    """``sts_credentials`` vending credentials that live ``lifetime`` seconds."""

    def __init__(self, clocks: Clocks, lifetime: float, gate: threading.Event | None = None,
                 error: Exception | None = None):
        self.clocks = clocks
        self.lifetime = lifetime
        self.gate = gate
        self.error = error
        self.calls: list[tuple[int, str]] = []
        self._lock = threading.Lock()

    def sts_credentials(self, entity_id: int, permission: str = "read_only") -> StsCredentials:
        with self._lock:
            self.calls.append((entity_id, permission))
            n = len(self.calls)
        if self.gate is not None:
            assert self.gate.wait(10)
        if self.error is not None:
            raise self.error
        return StsCredentials(
            bucket="b", base_key="k", access_key_id=f"AK{n}", secret_access_key=f"secret{n}",
            session_token=f"session{n}",
            expiration=self.clocks.wall() + dt.timedelta(seconds=self.lifetime))


def test_cached_until_one_hour_left_for_12h_credentials():
    c = Clocks()
    client = FakeClient(c, lifetime=12 * 3600)
    store = CredentialStore(client, clock=c.clock, wall=c.wall)
    first = store.get(5, 100)
    assert store.get(5, 101) is first
    c.advance(11 * 3600 - 1)
    assert store.get(5, 100) is first
    c.advance(2)                                   # under one hour left
    second = store.get(5, 100)
    assert second is not first and len(client.calls) == 2


def test_short_lifetime_refreshes_at_half():
    c = Clocks()
    client = FakeClient(c, lifetime=3)
    store = CredentialStore(client, clock=c.clock, wall=c.wall)
    first = store.get(5, 100)
    c.advance(1.4)
    assert store.get(5, 100) is first
    c.advance(0.2)
    assert store.get(5, 100) is not first
    assert len(client.calls) == 2


def test_keys_are_location_and_permission():
    c = Clocks()
    client = FakeClient(c, lifetime=3600 * 12)
    store = CredentialStore(client, clock=c.clock, wall=c.wall)
    a = store.get(5, 100)
    b = store.get(6, 200)
    w = store.get(5, 100, "read_write")
    assert len({a.access_key_id, b.access_key_id, w.access_key_id}) == 3
    assert client.calls == [(100, "read_only"), (200, "read_only"), (100, "read_write")]
    assert store.fetches == 3


def test_invalidate_drops_only_the_cached_set():
    c = Clocks()
    client = FakeClient(c, lifetime=12 * 3600)
    store = CredentialStore(client, clock=c.clock, wall=c.wall)
    old = store.get(5, 100)
    assert store.invalidate(5, "read_only", old)
    new = store.get(5, 100)
    assert new is not old
    assert not store.invalidate(5, "read_only", old)      # a late report about the old set
    assert store.get(5, 100) is new
    assert not store.invalidate(5, "read_write", new)


def test_expired_uses_wall_clock():
    c = Clocks()
    store = CredentialStore(FakeClient(c, lifetime=10), clock=c.clock, wall=c.wall)
    creds = store.get(1, 1)
    assert not store.expired(creds)
    c.advance(10)
    assert store.expired(creds)


class CountingCoalescer(Coalescer):
    """The store's single-flight, counting the calls that joined a flight in progress."""

    def __init__(self):
        super().__init__(copy_results=False)
        self.followers = 0

    def do(self, key, fn):
        with self._lock:
            if key in self._flights:
                self.followers += 1
        return super().do(key, fn)


def gated_store(client, c):
    store = CredentialStore(client, clock=c.clock, wall=c.wall)
    store._flights = CountingCoalescer()
    return store


def test_single_flight_one_call_for_concurrent_gets():
    c = Clocks()
    gate = threading.Event()
    client = FakeClient(c, lifetime=12 * 3600, gate=gate)
    store = gated_store(client, c)
    results = []
    threads = [threading.Thread(target=lambda: results.append(store.get(5, 100)))
               for _ in range(20)]
    for t in threads:
        t.start()
    # the leader waits at the gate; let the gate open only once the 19 others joined its flight
    wait_for(lambda: store._flights.followers == 19, timeout=10, what="19 followers")
    gate.set()
    for t in threads:
        t.join()
    assert len(client.calls) == 1
    assert len(results) == 20 and all(r is results[0] for r in results)


def test_single_flight_shares_the_error():
    c = Clocks()
    gate = threading.Event()
    client = FakeClient(c, lifetime=3600, gate=gate, error=Unavailable("sts down"))
    store = gated_store(client, c)
    errors = []

    def get():
        try:
            store.get(5, 100)
        except Unavailable as exc:
            errors.append(exc)

    threads = [threading.Thread(target=get) for _ in range(10)]
    for t in threads:
        t.start()
    wait_for(lambda: store._flights.followers == 9, timeout=10, what="9 followers")
    gate.set()
    for t in threads:
        t.join()
    assert len(errors) == 10 and len(client.calls) == 1
    client.error = None                   # the next get tries again
    assert store.get(5, 100).access_key_id == "AK2"


def test_different_keys_do_not_wait_for_each_other():
    c = Clocks()
    gate = threading.Event()
    client = FakeClient(c, lifetime=3600, gate=gate)
    store = CredentialStore(client, clock=c.clock, wall=c.wall)
    t = threading.Thread(target=store.get, args=(5, 100))
    t.start()
    wait_for(lambda: len(client.calls) == 1, timeout=10, what="the first call")
    done = threading.Event()
    threading.Thread(target=lambda: (store.get(6, 200), done.set())).start()
    # the second key did not queue behind the first (still held at the gate)
    wait_for(lambda: len(client.calls) == 2, timeout=10, what="the second key's own call")
    gate.set()
    t.join()
    assert done.wait(5)


def test_repr_has_no_secrets():
    c = Clocks()
    store = CredentialStore(FakeClient(c, lifetime=3600), clock=c.clock, wall=c.wall)
    creds = store.get(1, 1)
    for text in (repr(store), str(store), repr(creds), str(creds)):
        assert creds.secret_access_key not in text and creds.session_token not in text


def test_wall_clock_jump_refreshes_even_if_monotonic_did_not_move():
    """After a suspend CLOCK_MONOTONIC has not advanced but the credentials have expired."""
    c = Clocks()
    client = FakeClient(c, lifetime=12 * 3600)
    wall_offset = [0.0]
    store = CredentialStore(client, clock=c.clock,
                            wall=lambda: c.wall() + dt.timedelta(seconds=wall_offset[0]))
    first = store.get(5, 100)
    wall_offset[0] = 12 * 3600
    assert store.get(5, 100) is not first


# ---- integration: the emulator's STS vending ---------------------------------------------------

from tests.seams import client_for, seed_world  # noqa: E402


def test_emulator_single_flight_and_scoping(emulator):
    world = seed_world(emulator)
    client = client_for(emulator, world.user.token)
    store = CredentialStore(client)
    results = []
    threads = [threading.Thread(target=lambda i=i: results.append(
        store.get(world.sts_location, world.files["small.bin"][0] if i % 2 else world.sts_folder)))
        for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 16 and all(r is results[0] for r in results)
    assert client.stats["GET /entity/{id}/sts"] == 1
    creds = results[0]
    assert creds.remaining() > 11 * 3600
    ext = store.get(world.ext_location, world.ext_folder)
    assert ext.base_key and ext.base_key != creds.base_key
    assert client.stats["GET /entity/{id}/sts"] == 2


def test_emulator_short_expiration_is_refetched(emulator):
    world = seed_world(emulator)
    client = client_for(emulator, world.user.token)
    store = CredentialStore(client)
    emulator.set_faults(sts_expiration_s=2)
    first = store.get(world.sts_location, world.sts_folder)
    assert 0 < first.remaining() <= 2.5
    assert store.get(world.sts_location, world.sts_folder) is first
    wait_for(lambda: first.remaining() < 0.9, timeout=10, what="half the lifetime")
    assert store.get(world.sts_location, world.sts_folder) is not first
    assert client.stats["GET /entity/{id}/sts"] == 2
