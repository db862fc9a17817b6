"""The verdict document (``controller.contracts.verdict``): a msgspec struct, the same JSON as before it was one."""

from __future__ import annotations

import msgspec
import pytest

from controller.contracts.verdict import CanaryVerdict, VerdictDocument, VerdictEvidence, decode, encode
from controller.engine.core import Engine
from controller.engine.verdict import published, verdict
from controller.runtime.verdicts import VerdictView
from tests.support.traffic import rollout, run, summaries, traffic

# what vigil published before the document was a struct (the dict of engine/verdict.py), for the same state; only
# the threshold has moved since (7.9638 then), by the budget split over the metrics present, by weight
ROLLED_BACK = (
    b'{"namespace":null,"name":"bot","agent":"bot","verdict":"unhealthy","healthy":false,"rollback":true,'
    b'"phase":"rolled_back","stable":"v1","canary":"v2","canarySamples":50,"enoughSamples":false,'
    b'"alarms":["resolution_rate"],"evidence":[{"metric":"resolution_rate","detector":"mixture-fisher",'
    b'"statistic":8.6727,"threshold":7.3132,"pValue":0.0001712,"nCanary":50,"nStable":348,"canaryValue":0.58,'
    b'"stableValue":0.862069}],"updated":1700000120,"canaryWeight":0.0}')
PENDING = (
    b'{"namespace":"shop","name":"bot","agent":"bot","verdict":"unknown","healthy":false,"rollback":false,'
    b'"phase":"pending","stable":null,"canary":null,"canarySamples":0,"enoughSamples":false,"alarms":[],'
    b'"evidence":[],"updated":null}')


def test_the_engine_publishes_the_same_json_as_before() -> None:
    # the statistics as they were then: no fresh starts, a stratum per bucket, no categorical tests holding a share
    # of alpha
    engine = Engine([rollout(changeEvery=0, stratum=0, categorical={"fields": []})])
    run(engine, summaries(traffic(seed=2, seconds=120, escalation=(0.1, 0.3))))
    doc = published(engine.agents["bot"])
    assert isinstance(doc, VerdictDocument) and encode(doc) == ROLLED_BACK
    assert encode(VerdictDocument(namespace="shop", name="bot", agent="bot")) == PENDING
    assert verdict(engine, None, "nothing") is None


@pytest.mark.parametrize("raw", [ROLLED_BACK, PENDING])
def test_todays_documents_decode_and_encode_back_byte_for_byte(raw: bytes) -> None:
    doc = decode(raw)
    assert encode(doc) == raw and decode(encode(doc)) == doc
    assert msgspec.to_builtins(doc) == msgspec.json.decode(raw)


def test_a_round_trip_keeps_every_field() -> None:
    doc = VerdictDocument(namespace=None, name="r", agent="a", verdict="healthy", healthy=True, phase="progressing",
                          stable="v1", canary="v2", canary_samples=120, enough_samples=True, alarms=["x"],
                          evidence=[VerdictEvidence("x", "mixture-fisher", 1.5, 7.9, 0.2, 120, 900, 0.1, None)],
                          updated=12.5, canary_weight=25.0)
    assert decode(encode(doc)) == doc
    assert b'"canaryWeight":25.0}' in encode(doc) and b'"pValue":0.2' in encode(doc)


def test_the_view_skips_a_record_that_is_no_verdict_document() -> None:
    view = VerdictView("unused:9092", "vigil.verdicts")
    view.apply(b"bot", ROLLED_BACK)
    view.apply(b"bot", b'{"name": "bot", "agent": "bot", "namespace": null, "healthy": "yes"}')
    view.apply(b"bot", b'{"name": 3}')
    assert view.invalid == 2 and view.by_agent("bot") == msgspec.json.decode(ROLLED_BACK)


def test_a_document_of_several_canaries_lists_each_last_and_round_trips() -> None:
    ev = VerdictEvidence("escalation_rate", "mixture-fisher", 9.1, 7.9, 0.0001, 300, 900, 0.3, 0.1)
    each = [CanaryVerdict(canary="v2", verdict="healthy", healthy=True, phase="progressing", canary_samples=400,
                          enough_samples=True, canary_weight=0.0),
            CanaryVerdict(canary="v3", verdict="unhealthy", rollback=True, phase="rolled_back", canary_samples=300,
                          enough_samples=True, alarms=["escalation_rate"], evidence=[ev])]
    doc = VerdictDocument(namespace=None, name="bot", agent="bot", verdict="unhealthy", rollback=True,
                          phase="rolled_back", stable="v1", canary="v3", canary_samples=300, enough_samples=True,
                          alarms=["escalation_rate"], evidence=[ev], updated=100, canary_weight=0.0, canaries=each)
    raw = encode(doc)
    assert decode(raw) == doc
    assert raw.index(b'"canaryWeight":0.0,"canaries":[{"canary":"v2","verdict":"healthy"') > 0
    body = msgspec.json.decode(raw)
    assert list(body["canaries"][1]) == ["canary", "verdict", "healthy", "rollback", "phase", "canarySamples",
                                          "enoughSamples", "alarms", "evidence", "canaryWeight"]
    # the view reads it as any other document
    view = VerdictView("unused:9092", "vigil.verdicts")
    view.apply(b"bot", raw)
    assert view.invalid == 0 and view.by_agent("bot") == body
