"""Leader election against a real HTTP API server (kmock, extended in tests/support/kube_emulator.py) through the
official client, on a fake clock: time only moves when a test says so, so expiries and deadlines are
checked to the hundredth of a second without waiting for them. One test runs on the real clock."""

from __future__ import annotations

import asyncio
import copy
import itertools
import re
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import kubernetes
import pytest

from controller.actuators.kubernetes.lease import (
    Clock,
    LeaderElection,
    LeaseSettings,
    SystemClock,
    format_time,
    parse_time,
)
from controller.config import ConfigError
from tests.support.kube_emulator import EmulatorThread

NS = "vigil"
NAME = "vigil-leader"
LEASES = "coordination.k8s.io/v1/leases"
# zero microseconds: datetime.isoformat() would drop the fraction the API server's MicroTime requires
EPOCH = datetime(2026, 11, 26, 18, 0, tzinfo=UTC)
MICRO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


class FakeClock:
    """Time that moves only in :meth:`advance`. Between two steps it waits (in real time) until every task
    that sleeps on it is asleep again, or done, so the HTTP calls in between complete at one fake instant."""

    def __init__(self, start: datetime = EPOCH) -> None:
        self.start = start
        self.t = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None], asyncio.Task[Any]]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._seq = itertools.count()

    def now(self) -> datetime:
        return self.start + timedelta(seconds=self.t)

    def monotonic(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        entry = (self.t + max(seconds, 0.0), next(self._seq), asyncio.get_running_loop().create_future(), task)
        self._sleepers.append(entry)
        try:
            await entry[2]
        finally:
            self._sleepers.remove(entry)

    def track(self, task: asyncio.Task[Any]) -> None:
        """Wait for ``task`` too, before its first sleep."""
        self._tasks.add(task)

    def _settled(self) -> bool:
        asleep = {task for _, _, fut, task in self._sleepers if not fut.done()}
        return all(t.done() or t in asleep for t in self._tasks)

    async def settle(self, timeout: float = 5.0) -> None:
        give_up = time.monotonic() + timeout
        quiet = 0
        while quiet < 2:  # twice in a row: a task created by a woken one gets to its first sleep as well
            await asyncio.sleep(0.001)
            quiet = quiet + 1 if self._settled() else 0
            assert time.monotonic() < give_up, "tasks on the fake clock never went back to sleep"

    async def advance(self, seconds: float) -> None:
        target = self.t + seconds
        await self.settle()
        while True:
            due = [e for e in self._sleepers if not e[2].done() and e[0] <= target]
            if not due:
                break
            self.t = max(self.t, min(e[0] for e in due))
            for deadline, _, fut, _ in sorted(due):
                if deadline <= self.t:
                    fut.set_result(None)
            await self.settle()
        self.t = target


class Harness:
    """Candidates on one emulated API server, each with its own ``ApiClient`` (as separate pods would be)."""

    def __init__(self, kube: EmulatorThread, clock: FakeClock) -> None:
        self.kube = kube
        self.clock = clock
        self.events: list[tuple[float, str, str]] = []
        """(monotonic time, identity, "started" or "stopped") of every callback, in order."""
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.clients: list[kubernetes.client.ApiClient] = []

    def client(self) -> kubernetes.client.ApiClient:
        c = self.kube.api_client()
        self.clients.append(c)
        return c

    def candidate(self, identity: str, *, start: bool = True, clock: Clock | None = None,
                  **settings: Any) -> LeaderElection:
        clk = clock or self.clock

        def record(what: str) -> None:
            self.events.append((clk.monotonic(), identity, what))

        election = LeaderElection(LeaseSettings(namespace=NS, identity=identity, **settings), self.client(),
                                  on_started_leading=lambda: record("started"),
                                  on_stopped_leading=lambda: record("stopped"), clock=clk)
        if start:
            self.start(election)
        return election

    def start(self, election: LeaderElection) -> None:
        task = asyncio.create_task(election.run())
        self.tasks[election.settings.identity] = task
        if election._clock is self.clock:
            self.clock.track(task)

    async def crash(self, election: LeaderElection) -> None:
        """End the campaign without a release, as a killed pod would."""
        task = self.tasks[election.settings.identity]
        task.cancel()
        await asyncio.wait([task])

    def lease(self) -> dict[str, Any]:
        """The Lease as the server stores it (its raw JSON)."""
        lease: dict[str, Any] = self.kube.call(lambda api: copy.deepcopy(api.objects[LEASES, NS, NAME].raw))
        return lease

    def spec(self) -> dict[str, Any]:
        return dict(self.lease()["spec"])

    def fail_puts(self, identity: str, times: int = 100) -> None:
        """The next ``times`` PUTs of the Lease in ``identity``'s name fail with 500, before any change."""
        def put_by(request: Any) -> bool:
            data = request.data if isinstance(request.data, dict) else {}
            return request.method == "PUT" and (data.get("spec") or {}).get("holderIdentity") == identity

        def inject(api: Any) -> None:
            for _ in range(times):
                api.inject(put_by, status=500)
        self.kube.call(inject)

    async def close(self) -> None:
        for task in self.tasks.values():
            task.cancel()
        if self.tasks:
            await asyncio.wait(self.tasks.values())
        for c in self.clients:
            c.close()


@pytest.fixture
def kube() -> Iterator[EmulatorThread]:
    k = EmulatorThread().start()
    yield k
    k.stop()


@pytest.fixture
async def harness(kube: EmulatorThread) -> AsyncIterator[Harness]:
    h = Harness(kube, FakeClock())
    yield h
    await h.close()


def read_in_step(election: LeaderElection, barrier: asyncio.Barrier) -> None:
    """Hold ``election``'s first read of the Lease until the other parties of ``barrier`` have read it too."""
    read = election._get
    waited = False

    async def get() -> dict[str, Any] | None:
        nonlocal waited
        lease = await read()
        if not waited:
            waited = True
            await barrier.wait()
        return lease
    election._get = get  # type: ignore[method-assign]


def leaders(*elections: LeaderElection) -> list[str]:
    return [e.settings.identity for e in elections if e.is_leader]


@pytest.mark.kubernetes
async def test_one_of_two_candidates_leads(harness: Harness) -> None:
    a, b = harness.candidate("a"), harness.candidate("b")
    await harness.clock.settle()  # both found no Lease and created one: the server let one create through
    assert len(leaders(a, b)) == 1
    winner, loser = (a, b) if a.is_leader else (b, a)
    spec = harness.spec()
    assert spec["holderIdentity"] == winner.settings.identity
    assert spec["leaseTransitions"] == 0 and spec["leaseDurationSeconds"] == 15
    assert spec["renewTime"] == spec["acquireTime"] == "2026-11-26T18:00:00.000000Z"
    await asyncio.wait_for(winner.wait_leader(), 1)

    await harness.clock.advance(30)  # fifteen renewals
    assert leaders(a, b) == [winner.settings.identity] and loser.holder == winner.settings.identity
    spec = harness.spec()
    assert MICRO_TIME.match(spec["renewTime"]) and parse_time(spec["renewTime"]) == EPOCH + timedelta(seconds=30)
    assert spec["acquireTime"] == "2026-11-26T18:00:00.000000Z" and spec["leaseTransitions"] == 0
    assert harness.events == [(0.0, winner.settings.identity, "started")]
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(loser.wait_leader(), 0.05)


@pytest.mark.kubernetes
async def test_follower_takes_over_only_once_the_lease_expired(harness: Harness) -> None:
    a = harness.candidate("a")
    await harness.clock.settle()
    b = harness.candidate("b")
    await harness.clock.advance(5)  # a renewed at 2 and 4
    assert leaders(a, b) == ["a"]
    waiting = asyncio.create_task(b.wait_leader())

    await harness.crash(a)
    assert not a.is_leader and harness.events[-1] == (5.0, "a", "stopped")
    expiry = parse_time(harness.spec()["renewTime"])
    assert expiry is not None
    expiry += timedelta(seconds=15)
    await harness.clock.advance((expiry - harness.clock.now()).total_seconds() - 0.01)
    assert not b.is_leader and not waiting.done() and harness.spec()["holderIdentity"] == "a"

    await harness.clock.advance(0.02)
    assert b.is_leader
    await asyncio.wait_for(waiting, 1)
    spec = harness.spec()
    assert spec["holderIdentity"] == "b" and spec["leaseTransitions"] == 1
    acquired = parse_time(spec["acquireTime"])
    assert acquired is not None and expiry <= acquired <= expiry + timedelta(seconds=0.02)


@pytest.mark.kubernetes
async def test_leader_that_cannot_renew_steps_down_before_anyone_takes_over(harness: Harness) -> None:
    a = harness.candidate("a")
    await harness.clock.settle()
    b = harness.candidate("b")
    await harness.clock.advance(3)
    renewed = parse_time(harness.spec()["renewTime"])
    assert renewed == EPOCH + timedelta(seconds=2)

    harness.fail_puts("a")  # every renewal from now on answers 500
    await harness.clock.advance(12 - 0.01 - harness.clock.t)
    assert a.is_leader  # still inside renew_deadline (10 s) of the last renewal
    await harness.clock.advance(0.02)
    assert not a.is_leader and harness.events[-1] == (12.0, "a", "stopped")

    await harness.clock.advance(17 - 0.01 - harness.clock.t)  # the Lease expires at 2 + 15
    assert leaders(a, b) == []
    await harness.clock.advance(0.02)
    assert leaders(a, b) == ["b"]
    assert harness.events == [(0.0, "a", "started"), (12.0, "a", "stopped"), (17.0, "b", "started")]


@pytest.mark.kubernetes
async def test_step_down_does_not_wait_for_a_hanging_renewal(harness: Harness) -> None:
    a = harness.candidate("a")
    await harness.clock.advance(3)  # renewed at 2
    send = a._send

    async def slow_server(method: str, body: dict[str, Any] | None) -> dict[str, Any]:
        if method == "PUT":
            await harness.clock.sleep(60)
        return await send(method, body)
    a._send = slow_server  # type: ignore[method-assign]

    await harness.clock.advance(12 - 0.01 - harness.clock.t)  # the renewal sent at 4 is still pending
    assert a.is_leader
    await harness.clock.advance(0.02)
    assert not a.is_leader and harness.events == [(0.0, "a", "started"), (12.0, "a", "stopped")]


@pytest.mark.kubernetes
async def test_leader_steps_down_at_once_when_another_writer_took_the_lease(harness: Harness) -> None:
    a = harness.candidate("a")
    await harness.clock.advance(1)
    coordination = kubernetes.client.CoordinationV1Api(harness.client())
    now = format_time(harness.clock.now())
    await asyncio.to_thread(coordination.patch_namespaced_lease, NAME, NS,
                            {"spec": {"holderIdentity": "intruder", "renewTime": now, "acquireTime": now}},
                            _content_type="application/merge-patch+json")

    await harness.clock.advance(1)  # a's renewal at 2 meets a 409, reads the Lease again, finds the intruder
    assert not a.is_leader and a.holder == "intruder"
    assert harness.events == [(0.0, "a", "started"), (2.0, "a", "stopped")]

    await harness.clock.advance(16 - 0.01 - harness.clock.t)  # the intruder's term: 1 + 15
    assert not a.is_leader and harness.spec()["holderIdentity"] == "intruder"
    await harness.clock.advance(0.02)
    assert a.is_leader and harness.spec()["holderIdentity"] == "a"


@pytest.mark.kubernetes
async def test_takeover_race_after_expiry_has_one_winner(harness: Harness) -> None:
    coordination = kubernetes.client.CoordinationV1Api(harness.client())
    stale = EPOCH - timedelta(minutes=5)
    ghost = kubernetes.client.V1Lease(
        metadata=kubernetes.client.V1ObjectMeta(name=NAME, namespace=NS),
        spec=kubernetes.client.V1LeaseSpec(holder_identity="ghost", lease_duration_seconds=15, acquire_time=stale,
                                           renew_time=stale, lease_transitions=3))
    await asyncio.to_thread(coordination.create_namespaced_lease, NS, ghost)
    a, b = harness.candidate("a", start=False), harness.candidate("b", start=False)
    # both read the expired Lease before either writes: both PUT the same resourceVersion
    barrier = asyncio.Barrier(2)
    for election in (a, b):
        read_in_step(election, barrier)
        harness.start(election)
    await harness.clock.settle()

    assert len(leaders(a, b)) == 1
    winner, loser = (a, b) if a.is_leader else (b, a)
    conflicts = harness.kube.call(lambda api: [e for e in api.errors if getattr(e, "status", None) == 409])
    assert len(conflicts) == 1  # the loser's PUT, refused on its stale resourceVersion
    spec = harness.spec()
    assert spec["holderIdentity"] == winner.settings.identity and spec["leaseTransitions"] == 4
    await harness.clock.advance(20)
    assert leaders(a, b) == [winner.settings.identity] and loser.holder == winner.settings.identity
    assert [who for _, who, _ in harness.events] == [winner.settings.identity]


@pytest.mark.kubernetes
async def test_release_lets_a_follower_take_over_at_once(harness: Harness) -> None:
    a = harness.candidate("a")
    await harness.clock.settle()
    b = harness.candidate("b")
    await harness.clock.advance(3)

    await a.release()
    assert not a.is_leader and harness.tasks["a"].done() and harness.events[-1] == (3.0, "a", "stopped")
    spec = harness.spec()
    assert spec.get("holderIdentity") is None and spec["leaseDurationSeconds"] == 1
    assert spec["renewTime"] == format_time(EPOCH + timedelta(seconds=3))

    await harness.clock.advance(1)  # b's next read, at 4: long before the old term would have run out (17)
    assert leaders(a, b) == ["b"] and harness.events[-1] == (4.0, "b", "started")
    spec = harness.spec()
    assert spec["holderIdentity"] == "b" and spec["leaseDurationSeconds"] == 15 and spec["leaseTransitions"] == 1


@pytest.mark.kubernetes
async def test_lease_transitions_count_changes_of_holder(harness: Harness) -> None:
    a = harness.candidate("a")
    await harness.clock.advance(10)
    assert harness.spec()["leaseTransitions"] == 0  # renewals are no transitions

    b = harness.candidate("b")
    await harness.clock.settle()  # b's first read finds a leading
    await a.release()
    await harness.clock.advance(2)  # b's next read, at 12
    assert leaders(b) == ["b"] and harness.spec()["leaseTransitions"] == 1

    c = harness.candidate("c")
    await harness.clock.advance(1)
    await harness.crash(b)  # at 13; b renewed last at 12
    await harness.clock.advance(28 - harness.clock.t)
    assert leaders(c) == ["c"] and harness.spec()["leaseTransitions"] == 2  # c took over at 27

    # c's writes fail from 29 on: it steps down at 37 (27 + renew_deadline) and, the API back after six
    # failures, takes its own Lease back at 41: a new term, but no change of holder
    harness.fail_puts("c", times=6)
    await harness.clock.advance(39.5 - harness.clock.t)
    assert not c.is_leader and harness.spec()["holderIdentity"] == "c"
    before = harness.spec()["acquireTime"]
    await harness.clock.advance(2)
    spec = harness.spec()
    assert c.is_leader and spec["leaseTransitions"] == 2 and spec["acquireTime"] != before
    assert harness.events == [(0.0, "a", "started"), (10.0, "a", "stopped"), (12.0, "b", "started"),
                              (13.0, "b", "stopped"), (27.0, "c", "started"), (37.0, "c", "stopped"),
                              (41.0, "c", "started")]


@pytest.mark.kubernetes
async def test_real_clock_end_to_end(harness: Harness) -> None:
    fast: dict[str, Any] = {"lease_duration": 1, "renew_deadline": 0.5, "retry_period": 0.1}
    a = harness.candidate("a", clock=SystemClock(), **fast)
    await asyncio.wait_for(a.wait_leader(), 2)
    b = harness.candidate("b", clock=SystemClock(), **fast)
    await asyncio.sleep(0.3)
    assert leaders(a, b) == ["a"]

    await harness.crash(a)
    renewed = parse_time(harness.spec()["renewTime"])
    assert renewed is not None
    await asyncio.wait_for(b.wait_leader(), 3)
    assert datetime.now(UTC) >= renewed + timedelta(seconds=1)
    assert harness.spec()["holderIdentity"] == "b"


@pytest.mark.parametrize(("overrides", "field"), [
    ({"renew_deadline": 15}, "renew_deadline"),
    ({"lease_duration": 5}, "renew_deadline"),  # the default deadline (10 s) outlasts the lease
    ({"renew_deadline": 0}, "renew_deadline"),
    ({"retry_period": 10}, "retry_period"),
    ({"retry_period": -1}, "retry_period"),
    ({"lease_duration": 0}, "lease_duration"),
    ({"lease_duration": 15.5}, "lease_duration"),
    ({"lease_duration": True}, "lease_duration"),
    ({"identity": ""}, "identity"),
    ({"namespace": ""}, "namespace"),
    ({"name": ""}, "name"),
])
def test_invalid_settings_are_refused_naming_the_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field}: ") as info:
        LeaseSettings(**{"namespace": NS, "identity": "a", **overrides})
    assert isinstance(info.value, ConfigError) and info.value.path == field


def test_default_settings() -> None:
    s = LeaseSettings(namespace=NS, identity="vigil-0")
    assert (s.name, s.lease_duration, s.renew_deadline, s.retry_period) == ("vigil-leader", 15, 10.0, 2.0)
