"""Tests of event-time windows (``controller.windows``) and of the pre-aggregation feeding them.

Watermark rule under test: an agent's watermark is the lowest high mark among its sources that lag the
newest by at most ``idle_timeout``, less ``allowed_lateness``; a bucket ``[s, s + bucket_seconds)``
closes once ``s + bucket_seconds <= watermark``. Data for a bucket the watermark has passed is late.
"""

from __future__ import annotations

import json
import math

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.config import MAX_CATEGORIES_LIMIT, parse_rollout
from controller.contracts.events import Event, Interaction, ToolCall
from controller.ingest.aggregator import MAX_CATEGORY_CHARS, MAX_TENANT_CHARS, Aggregator, tenant_caps
from controller.ingest.buckets import MAX_EXAMPLES, Bucket, Summary, bin_of, bin_value, merge_bucket
from controller.windows import EventTimeWindow


def bucket(start: int, n: int = 1, version: str = "v1", track: str = "stable", channel: str = "sms",
           harmful: int = 0) -> Bucket:
    return Bucket(version, track, channel, start, n=n, rates={"escalation_rate": [n, harmful]},
                  values={"latency_ms": {bin_of(100.0): n}}, sums={"latency_ms": 100.0 * n},
                  examples={"escalation_rate": [f"c{start}"]} if harmful else {})


def summary(high: float, buckets: list[Bucket], source: str = "0", first: int = 0, last: int | None = None,
            agent: str = "bot", others: dict[str, float] | None = None) -> Summary:
    """A summary whose sender reports ``source`` read up to ``high`` (and ``others`` as given)."""
    return Summary(agent, {source: high, **(others or {})}, {source: (first, first if last is None else last)},
                   buckets)


class Offsets:
    """Consecutive, non-overlapping offsets per source, as a consumer would produce them."""

    def __init__(self) -> None:
        self.next: dict[str, int] = {}

    def __call__(self, high: float, buckets: list[Bucket], source: str = "0", size: int = 10) -> Summary:
        first = self.next.get(source, 0)
        self.next[source] = first + size
        return summary(high, buckets, source, first, first + size - 1)


def starts(closed: list[tuple[int, list[Bucket]]]) -> list[int]:
    return [s for s, _ in closed]


# --- closing --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("bucket_seconds", "lateness"), [(1, 0.0), (1, 5.0), (5, 2.5), (10, 30.0)])
def test_bucket_closes_only_once_the_watermark_passes_it(bucket_seconds: int, lateness: float) -> None:
    start = 1000
    due = start + bucket_seconds + lateness  # the high mark at which the bucket may close
    w = EventTimeWindow(bucket_seconds, lateness, idle_timeout=60.0)
    nxt = Offsets()
    w.add(nxt(float(start), [bucket(start)]))
    assert w.close() == []
    w.add(nxt(due - 0.001, []))
    assert w.watermark == pytest.approx(due - 0.001 - lateness)
    assert w.close() == []
    w.add(nxt(due, []))
    assert starts(w.close()) == [start]
    assert w.open == {}


def test_closed_buckets_come_oldest_first_with_merged_series() -> None:
    w = EventTimeWindow(1, 0.0, 60.0)
    nxt = Offsets()
    w.add(nxt(12.0, [bucket(11, 2, harmful=1), bucket(10, 3), bucket(10, 1, version="v2", track="canary")]))
    w.add(nxt(12.5, [bucket(10, 4, harmful=2), bucket(12, 1)]))
    closed = w.close()
    assert starts(closed) == [10, 11]
    ten = {(b.version, b.track): b for b in closed[0][1]}
    assert ten[("v1", "stable")].n == 7 and ten[("v1", "stable")].rates["escalation_rate"] == [7, 2]
    assert ten[("v1", "stable")].sums["latency_ms"] == pytest.approx(700.0)
    assert ten[("v2", "canary")].n == 1
    assert list(w.open) == [12]


def test_flush_closes_every_open_bucket() -> None:
    w = EventTimeWindow(1, 5.0, 60.0)
    w.add(summary(20.0, [bucket(20), bucket(18), bucket(19)]))
    assert w.close() == []
    assert starts(w.close(flush=True)) == [18, 19, 20]
    assert w.open == {}


def test_empty_window_has_no_watermark() -> None:
    w = EventTimeWindow()
    assert w.watermark == -math.inf
    assert w.close() == []


# --- late data ------------------------------------------------------------------------------------------
def test_data_for_a_closed_bucket_is_counted_late_and_not_merged() -> None:
    w = EventTimeWindow(1, 2.0, 60.0)
    nxt = Offsets()
    w.add(nxt(10.0, [bucket(5, 3)]))
    assert starts(w.close()) == [5]
    assert w.add(nxt(10.5, [bucket(5, 4, harmful=4), bucket(9, 2)]))  # bucket 5 is late, 9 is not
    assert w.late_events == 4
    assert list(w.open) == [9]
    w.add(nxt(30.0, []))
    closed = w.close()
    assert starts(closed) == [9]  # bucket 5 is never emitted again
    assert sum(b.n for _, bs in closed for b in bs) == 2


def test_late_events_accumulate_over_summaries() -> None:
    w = EventTimeWindow(1, 0.0, 60.0)
    nxt = Offsets()
    w.add(nxt(10.0, [bucket(3), bucket(4)]))
    w.close()
    w.add(nxt(10.0, [bucket(3, 2)]))
    w.add(nxt(10.0, [bucket(4, 5), bucket(2, 1)]))
    assert w.late_events == 8
    assert w.open == {}


def test_data_behind_the_watermark_is_late_even_if_its_bucket_never_held_data() -> None:
    """Bucket 10 ends at 11, before the watermark of 15: its data is late whether or not 10 was ever open.

    Closing buckets 5 (the only open one) leaves ``closed_until`` at 6, not at the watermark, so a later
    summary for bucket 10 is merged and emitted as if on time.
    """
    w = EventTimeWindow(1, 5.0, 60.0)
    nxt = Offsets()
    w.add(nxt(20.0, [bucket(5)]))
    assert starts(w.close()) == [5]
    assert w.watermark == 15.0
    w.add(nxt(20.5, [bucket(10, 3)]))
    assert w.late_events == 3
    assert w.close() == []


# --- sources and the watermark --------------------------------------------------------------------------
def test_lowest_source_sets_the_watermark() -> None:
    w = EventTimeWindow(1, 5.0, idle_timeout=60.0)
    nxt = Offsets()
    w.add(nxt(100.0, [bucket(60)], source="a"))
    w.add(nxt(50.0, [bucket(40)], source="b"))
    assert w.watermark == 45.0
    assert starts(w.close()) == [40]
    w.add(nxt(70.0, [], source="b"))
    assert w.watermark == 65.0
    assert starts(w.close()) == [60]


def test_newest_report_on_a_source_wins_even_when_lower() -> None:
    """A sender that finds a backlog behind a source reports it lower: the watermark waits for it."""
    w = EventTimeWindow(1, 0.0, 60.0)
    nxt = Offsets()
    w.add(nxt(50.0, [bucket(30), bucket(55)], source="a"))
    assert starts(w.close()) == [30]
    w.add(nxt(40.0, [], source="a"))
    assert w.high["a"] == 40.0 and w.watermark == 40.0
    w.add(nxt(60.0, [], source="b"))
    assert w.close() == []  # bucket 55 waits for the backlog of "a"
    w.add(nxt(45.0, [bucket(30, 2), bucket(42, 3)], source="a"))
    assert w.late_events == 5  # the watermark going back does not reopen what it had passed (up to 50)
    w.add(nxt(56.0, [], source="a"))
    assert starts(w.close()) == [55]


def test_backlogged_source_still_reported_is_not_idle() -> None:
    """Idleness is judged on when a source was last reported, not on how far behind its events are."""
    w = EventTimeWindow(1, 0.0, idle_timeout=60.0)
    w.add(summary(200.0, [bucket(150)], source="a", first=0, last=9, others={"b": 100.0}))
    assert w.watermark == 100.0  # "b" lags by 100 s but its sender reported it just now
    assert w.close() == []
    w.add(summary(300.0, [], source="a", first=10, last=19))  # "b" is no longer reported: its sender is gone
    assert w.watermark == 300.0
    assert starts(w.close()) == [150]


def test_summary_reports_progress_of_every_source_of_its_sender() -> None:
    w = EventTimeWindow(1, 0.0, 60.0)
    nxt = Offsets()
    w.add(nxt(10.0, [bucket(9)], source="b"))
    w.add(nxt(30.0, [bucket(20)], source="a"))
    assert w.watermark == 10.0 and starts(w.close()) == [9]
    # a poll of "a" whose sender has also read "b" to its end: "b" no longer holds the watermark back
    w.add(summary(31.0, [], source="a", first=100, last=109, others={"b": 31.0}))
    assert w.watermark == 31.0 and starts(w.close()) == [20]


def test_idle_source_stops_holding_the_watermark_back() -> None:
    w = EventTimeWindow(1, 5.0, idle_timeout=60.0)
    nxt = Offsets()
    w.add(nxt(130.0, [bucket(126)], source="slow"))
    w.add(nxt(190.0, [bucket(150)], source="fast"))
    assert w.watermark == 125.0  # lagging by exactly the timeout still holds it back
    assert starts(w.close()) == []
    w.add(nxt(200.0, [], source="fast"))  # now "slow" lags by 70 s > 60 s
    assert w.watermark == 195.0
    assert starts(w.close()) == [126, 150]


def test_idle_source_holds_the_watermark_again_once_it_catches_up() -> None:
    w = EventTimeWindow(1, 0.0, idle_timeout=10.0)
    nxt = Offsets()
    w.add(nxt(100.0, [], source="a"))
    w.add(nxt(50.0, [], source="b"))
    assert w.watermark == 100.0
    w.add(nxt(95.0, [], source="b"))
    assert w.watermark == 95.0


# --- duplicates -----------------------------------------------------------------------------------------
def test_exact_duplicate_summary_is_dropped_and_counted() -> None:
    w = EventTimeWindow(1, 0.0, 60.0)
    p = summary(5.0, [bucket(3, 4, harmful=1)], first=100, last=109)
    assert w.add(p) is True
    assert w.add(p) is False
    assert w.add(msgspec.convert(msgspec.to_builtins(p), Summary)) is False  # decoded again after a crash
    assert w.duplicate_summaries == 2
    assert w.open[3][("v1", "stable", "sms", "")].n == 4
    assert w.open[3][("v1", "stable", "sms", "")].rates["escalation_rate"] == [4, 1]


def test_older_summary_is_dropped_newer_and_other_sources_are_kept() -> None:
    w = EventTimeWindow(1, 0.0, 60.0)
    assert w.add(summary(5.0, [bucket(3)], first=100, last=109))
    assert not w.add(summary(5.0, [bucket(3)], first=90, last=99))
    assert w.add(summary(5.0, [bucket(3)], source="other", first=100, last=109))
    assert w.add(summary(6.0, [bucket(3)], first=110, last=119))
    assert w.duplicate_summaries == 1
    assert w.open[3][("v1", "stable", "sms", "")].n == 3


def test_dropped_duplicate_does_not_move_the_watermark() -> None:
    w = EventTimeWindow(1, 0.0, 60.0)
    w.add(summary(5.0, [bucket(3)], first=0, last=9))
    w.add(summary(50.0, [bucket(3)], first=0, last=9))
    assert w.high == {"0": 5.0}


def test_window_never_aliases_the_callers_buckets() -> None:
    w = EventTimeWindow(1, 0.0, 60.0)
    b = bucket(3, 2)
    w.add(summary(3.0, [b], first=0, last=0))
    w.add(summary(3.0, [bucket(3, 5)], first=1, last=1))
    assert b.n == 2 and b.rates["escalation_rate"] == [2, 0]  # the merge did not write into the summary
    b.n = 1000
    assert w.open[3][("v1", "stable", "sms", "")].n == 7


# --- checkpoints ----------------------------------------------------------------------------------------
def busy_window() -> tuple[EventTimeWindow, Offsets]:
    w = EventTimeWindow(2, 3.0, 30.0)
    nxt = Offsets()
    w.add(nxt(20.0, [bucket(10, 5, harmful=2), bucket(12, 1)], source="a"))
    w.add(nxt(21.0, [bucket(18, 3, version="v2", track="canary", channel="voice", harmful=1)], source="b"))
    w.close()  # watermark 17: closes 10 and 12
    w.add(nxt(21.5, [bucket(12, 9)], source="a"))  # late
    w.add(summary(22.0, [], source="b", first=0, last=9))  # duplicate of b's first
    w.add(nxt(22.0, [bucket(20, 2), bucket(18, 1, harmful=1)], source="a"))
    return w, nxt


def test_state_is_json_safe_and_round_trips() -> None:
    w, _ = busy_window()
    state = json.loads(json.dumps(w.to_state()))
    # the watermark reached 17 (lowest high mark 20, less 3): every bucket of the 2 s grid before 16 is closed
    assert state["closed_until"] == 16 and state["late_events"] == 9 and state["duplicate_summaries"] == 1
    restored = EventTimeWindow(2, 3.0, 30.0)
    restored.load_state(state)
    assert restored.open == w.open  # every open bucket, with int histogram bins, examples and sums
    assert restored.high == w.high and restored.applied == w.applied and restored.reported == w.reported
    assert restored.watermark == w.watermark and restored.closed_until == w.closed_until
    assert (restored.late_events, restored.duplicate_summaries) == (9, 1)
    assert json.loads(json.dumps(restored.to_state())) == state


def test_restored_window_behaves_like_the_original() -> None:
    w, nxt = busy_window()
    restored = EventTimeWindow(2, 3.0, 30.0)
    restored.load_state(json.loads(json.dumps(w.to_state())))
    a_next = nxt.next["a"]
    follow_up = [
        summary(22.0, [bucket(20, 7)], source="a", first=a_next - 10, last=a_next - 1),  # replay: dropped
        summary(23.0, [bucket(10, 4)], source="b", first=10, last=19),  # late
        summary(40.0, [bucket(22, 1), bucket(36, 1)], source="a", first=a_next, last=a_next + 9),
        summary(41.0, [bucket(24, 2)], source="b", first=20, last=29),
    ]
    for p in follow_up:
        assert w.add(p) == restored.add(p)
        assert w.close() == restored.close()
    assert w.close(flush=True) == restored.close(flush=True)
    assert (w.late_events, w.duplicate_summaries) == (restored.late_events, restored.duplicate_summaries)
    assert (w.late_events, w.duplicate_summaries) == (13, 2)  # 9 + 4 of bucket 10; 1 + the replay of "a"


def test_fresh_window_state_round_trips() -> None:
    restored = EventTimeWindow()
    restored.load_state(json.loads(json.dumps(EventTimeWindow().to_state())))
    assert restored.closed_until == -math.inf and restored.watermark == -math.inf and restored.open == {}


# --- pre-aggregation ------------------------------------------------------------------------------------
def event(t: float, version: str = "v1", track: str = "stable", outcome: str = "resolved", agent: str = "bot",
          conv: str | None = None, latency: float | None = None, tenant: str | None = None) -> Event:
    return Event(time=t, data=Interaction(agent=agent, version=version, track=track,  # type: ignore[arg-type]
                                          outcome=outcome,  # type: ignore[arg-type]
                                          channel="sms", conversation_id=conv, latency_ms=latency, tenant=tenant))


def test_aggregator_buckets_events_by_floor_of_event_time() -> None:
    agg = Aggregator(bucket_seconds=5)
    for i, t in enumerate([100.0, 104.99, 105.0, 103.2]):
        outcome = "escalated" if i % 2 else "resolved"
        agg.add(event(t, outcome=outcome, conv=f"c{i}", latency=50.0), offset=10 + i)
    (p,) = agg.drain()
    assert (p.agent, p.highs, p.offsets) == ("bot", {"0": 105.0}, {"0": (10, 13)})
    by_start = {b.start: b for b in p.buckets}
    assert sorted(by_start) == [100, 105]
    assert by_start[100].n == 3 and by_start[100].rates["escalation_rate"] == [3, 2]  # events 0, 1 and 3
    assert by_start[100].examples["escalation_rate"] == ["c1", "c3"]
    assert by_start[105].n == 1 and by_start[105].rates["escalation_rate"] == [1, 0]
    assert by_start[100].values["latency_ms"] == {bin_of(50.0): 3}
    assert by_start[100].sums["latency_ms"] == pytest.approx(150.0)
    assert agg.drain() == []


def test_aggregator_gives_one_summary_per_agent_merging_sources_and_caps_examples() -> None:
    agg = Aggregator()
    for i in range(10):
        agg.add(event(7.5, outcome="escalated", conv=f"c{i}", agent="a" if i < 6 else "b"),
                source="p0" if i % 2 else "p1", offset=i)
    summaries = agg.drain()
    # one summary per agent: the progress it carries is applied only together with all of its buckets
    assert [p.agent for p in summaries] == ["a", "b"]
    assert all(p.offsets == {"p0": (1, 9), "p1": (0, 8)} for p in summaries)
    assert [sum(b.n for b in p.buckets) for p in summaries] == [6, 4]
    for p in summaries:
        (b,) = p.buckets
        # the smallest ids are kept, whatever the order events came in
        assert b.examples["escalation_rate"] == sorted(f"c{i}" for i in range(10)
                                                       if (i < 6) == (p.agent == "a"))[:MAX_EXAMPLES]


def test_aggregator_remembers_how_far_each_source_was_read() -> None:
    agg = Aggregator()
    agg.add(event(50.0), source="p0", offset=0)
    agg.add(event(20.0), source="p1", offset=0)
    agg.drain()
    agg.add(event(40.0), source="p0", offset=1)  # older than what p0 already gave
    (p,) = agg.drain()
    assert agg.highs == {"p0": 50.0, "p1": 20.0}
    assert p.highs == {"p0": 50.0, "p1": 20.0} and p.offsets == {"p0": (1, 1)}
    agg.add(event(60.0), source="p0", offset=2)
    (q,) = agg.drain({"p0": 60.0, "p1": 60.0})  # the sender's own view of its sources
    assert q.highs == {"p0": 60.0, "p1": 60.0}


def test_aggregator_refuses_zero_bucket_seconds() -> None:
    with pytest.raises(ValueError, match="bucket_seconds"):
        Aggregator(bucket_seconds=0)


def test_merge_bucket_adds_counts_and_keeps_the_smallest_examples_in_any_order() -> None:
    def pair() -> tuple[Bucket, Bucket]:
        a, b = bucket(3, 2, harmful=1), bucket(3, 3, harmful=2)
        a.examples["escalation_rate"] = ["x", "y"]
        b.examples["escalation_rate"] = ["z", "w", "x"]
        return a, b

    a, b = pair()
    merge_bucket(a, b)
    assert a.n == 5 and a.rates["escalation_rate"] == [5, 3]
    assert a.values["latency_ms"] == {bin_of(100.0): 5} and a.sums["latency_ms"] == pytest.approx(500.0)
    assert a.examples["escalation_rate"] == ["w", "x", "y"]
    b2, a2 = pair()[::-1]
    merge_bucket(b2, a2)
    assert b2.examples == a.examples  # the merge order does not matter


def test_aggregator_examples_are_the_harmful_outcomes() -> None:
    agg = Aggregator()
    outcomes = ["resolved", "escalated", "abandoned", "resolved", "escalated", "abandoned", "abandoned"]
    for i, outcome in enumerate(outcomes):
        agg.add(event(1.0, outcome=outcome, conv=f"c{i}"), offset=i)
    (b,) = agg.drain()[0].buckets
    assert b.examples["escalation_rate"] == ["c1", "c4"]
    assert b.examples["abandonment_rate"] == ["c2", "c5", "c6"]
    # a resolution is the good outcome: the examples of resolution_rate are the misses
    assert b.examples["resolution_rate"] == ["c1", "c2", "c4"]  # the smallest MAX_EXAMPLES ids kept
    assert MAX_EXAMPLES == 3


def test_consecutive_add_many_polls_are_all_applied() -> None:
    """``add_many`` hands out summaries whose offsets must not make the window drop the next poll."""
    agg = Aggregator()
    w = EventTimeWindow(1, 0.0, 60.0)
    for second in range(3):
        agg.add_many([event(float(second)), event(second + 0.5)])
        (p,) = agg.drain()
        w.add(p)
    assert w.duplicate_summaries == 0
    assert sum(b.n for _, bs in w.close(flush=True) for b in bs) == 6


@given(st.floats(-1e9, 1e9, allow_nan=False), st.floats(-1e9, 1e9, allow_nan=False))
def test_bin_of_is_monotone(x: float, y: float) -> None:
    lo, hi = min(x, y), max(x, y)
    assert bin_of(lo) <= bin_of(hi)


@given(st.integers(-600, 600))
def test_bin_value_lies_in_its_bin(b: int) -> None:
    assert bin_of(bin_value(b)) == b


def test_bins_are_five_percent_wide() -> None:
    assert bin_of(100.0) != bin_of(106.0)
    assert abs(bin_of(1000.0) - bin_of(1000.0 * 1.05)) == 1
    assert bin_of(1e-9) == bin_of(-1e-9) == 0


def test_history_of_one_agent_is_not_judged_by_the_clock_of_another() -> None:
    """One worker reads agent a's history (written faster than real time) and agent b's live traffic;
    both partitions are caught up after each poll. a's watermark follows a's own events, not b's."""
    agg = Aggregator()
    windows = {"a": EventTimeWindow(allowed_lateness=5.0), "b": EventTimeWindow(allowed_lateness=5.0)}
    offset = 0
    for poll in range(3):
        for t in range(poll * 100, poll * 100 + 100):  # a's history, 100 s per poll, in order
            agg.add(event(float(t), agent="a"), source="0", offset=offset)
            offset += 1
        agg.add(event(10_000.0 + poll, agent="b"), source="1", offset=poll)  # b is live, far ahead
        for p in agg.drain({"0": None, "1": None}):  # nothing left unread on either partition
            windows[p.agent].add(p)
            windows[p.agent].close()
    late = windows["a"].late_events
    assert late == 0
    assert windows["a"].watermark == 299.0 - 5.0


# --- tenants ----------------------------------------------------------------------------------------------
def test_tenant_is_read_only_for_agents_that_segment_by_tenant() -> None:
    agg = Aggregator(tenants={"bot": 20})
    for i, (agent, tenant) in enumerate([("bot", "acme"), ("bot", "globex"), ("bot", None), ("other", "acme")]):
        agg.add(event(1.0, agent=agent, tenant=tenant), offset=i)
    by_agent = {p.agent: sorted(b.tenant for b in p.buckets) for p in agg.drain()}
    assert by_agent == {"bot": ["", "acme", "globex"], "other": [""]}  # no tenant: "", never a segment


def test_tenants_beyond_the_cap_are_pooled_and_names_are_cut() -> None:
    agg = Aggregator(tenants={"bot": 2})
    long = "t" * 1000
    names = ["acme", long, "globex", "acme", "other", "initech", long + "x"]
    for i, tenant in enumerate(names):
        agg.add(event(float(i), tenant=tenant), offset=i)
    (p,) = agg.drain()
    kept = [b.tenant for b in sorted(p.buckets, key=lambda b: b.start)]
    cut = "t" * MAX_TENANT_CHARS
    # the first two tenants seen keep their series, for good; a name is kept to its first characters only
    assert kept == ["acme", cut, "other", "acme", "other", "other", cut]
    agg.add(event(9.0, tenant="globex"), offset=9)
    assert [b.tenant for b in agg.drain()[0].buckets] == ["other"]


def test_tenant_caps_come_from_the_rollouts() -> None:
    def rollout(agent: str, **analysis: object) -> object:
        return parse_rollout({"apiVersion": "vigil.dev/v1alpha1", "kind": "AgentRollout", "spec": {
            "agent": agent, "stable": {"version": "v1"}, "canary": {"version": "v2"}, "analysis": analysis}})

    rollouts = [rollout("a", segments=["tenant"]), rollout("b", segments=["channel"]),
                rollout("c", segments=["channel", "tenant"], maxSegments=5), rollout("d")]
    assert tenant_caps(rollouts) == {"a": 20, "c": 5}  # type: ignore[arg-type]


# --- categories -------------------------------------------------------------------------------------------
def labelled(t: float, version: str = "v1", **fields: object) -> Event:
    return Event(time=t, data=Interaction(agent="bot", version=version, channel="sms", **fields))  # type: ignore[arg-type]


def test_categories_are_counted_per_field_and_value() -> None:
    agg = Aggregator()
    agg.add(labelled(1.0, intent="billing", model="m1", finish_reasons=["tool_calls", "stop"], error_type="timeout",
                     tool_calls=[ToolCall(name="lookup"), ToolCall(name="lookup"), ToolCall(name="refund")]))
    agg.add(labelled(1.5, intent="billing", model="", finish_reasons=["stop"]), offset=1)
    (b,) = agg.drain()[0].buckets
    assert b.categories == {"intent": {"billing": 2}, "model": {"m1": 1}, "finish_reason": {"tool_calls": 1, "stop": 2},
                            "error_type": {"timeout": 1}, "tool": {"lookup": 2, "refund": 1}}
    into = Bucket("v1", "stable", "sms", 1, categories={"intent": {"billing": 1, "refund": 4}})
    merge_bucket(into, b)
    assert into.categories["intent"] == {"billing": 3, "refund": 4} and into.categories["tool"] == b.categories["tool"]


def test_the_category_cap_holds_against_a_producer_sending_thousands_of_values() -> None:
    agg = Aggregator()
    for i in range(5000):
        agg.add(labelled(float(i // 100), intent=f"intent-{i}-" + "x" * 500, tool_calls=[ToolCall(name=f"t{i}")]),
                offset=i)
    buckets = [b for p in agg.drain() for b in p.buckets]
    assert max(len(b.categories["intent"]) for b in buckets) <= MAX_CATEGORIES_LIMIT
    kept = {v for b in buckets for v in b.categories["intent"]}
    assert len(kept) == MAX_CATEGORIES_LIMIT + 1 and "other" in kept  # the first values seen, then one pool
    assert max(len(v) for v in kept) == MAX_CATEGORY_CHARS
    assert sum(b.categories["intent"].get("other", 0) for b in buckets) == 5000 - MAX_CATEGORIES_LIMIT
    assert len({v for b in buckets for v in b.categories["tool"]}) == MAX_CATEGORIES_LIMIT + 1
    # kept for good: a later new value is pooled, a kept one keeps its name
    agg.add(labelled(99.0, intent="brand-new"), offset=6000)
    agg.add(labelled(99.0, intent="intent-0-" + "x" * 500), offset=6001)
    (b,) = agg.drain()[0].buckets
    assert b.categories["intent"] == {"other": 1, ("intent-0-" + "x" * 500)[:MAX_CATEGORY_CHARS]: 1}


def test_a_category_label_is_printable() -> None:
    agg = Aggregator()
    agg.add(labelled(1.0, intent="bill\ning\x00", model='gpt"4\u2028'))
    (b,) = agg.drain()[0].buckets
    assert b.categories == {"intent": {"bill?ing?": 1}, "model": {'gpt"4?': 1}}


def test_window_keeps_tenants_apart_and_checkpoints_them() -> None:
    w = EventTimeWindow(1, 0.0, 60.0)
    a, b = bucket(3, 2, harmful=1), bucket(3, 3)
    b.tenant = "acme"
    w.add(summary(2.0, [a, b]))
    assert sorted(w.open[3]) == [("v1", "stable", "sms", ""), ("v1", "stable", "sms", "acme")]
    restored = EventTimeWindow(1, 0.0, 60.0)
    restored.load_state(json.loads(json.dumps(w.to_state())))
    assert restored.open == w.open
    assert [x.tenant for _, bs in restored.close(flush=True) for x in bs] == ["", "acme"]


def test_a_bucket_encoded_before_tenants_existed_still_decodes() -> None:
    b = bucket(3, 2, harmful=1)
    # array_like: the same fields, less the tenant and the categories
    old = msgspec.msgpack.encode(msgspec.to_builtins(b)[:-2])
    assert msgspec.msgpack.decode(old, type=Bucket) == b and b.tenant == ""
    p = msgspec.msgpack.decode(msgspec.msgpack.encode(summary(2.0, [b])), type=Summary)
    assert p.buckets == [b]
