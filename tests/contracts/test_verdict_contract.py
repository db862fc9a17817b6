"""The verdict document (``controller.contracts.verdict``): a msgspec struct, the same JSON as before it was one."""

from __future__ import annotations

import msgspec
import pytest

from controller.contracts.verdict import VerdictDocument, VerdictEvidence, decode, encode
from controller.engine.core import Engine
from controller.engine.verdict import published, verdict
from controller.runtime.verdicts import VerdictView
from tests.support.traffic import rollout, run, summaries, traffic

# what vigil published before the document was a struct (the dict of engine/verdict.py), for the same state
ROLLED_BACK = (
    b'{"namespace":null,"name":"bot","agent":"bot","verdict":"unhealthy","healthy":false,"rollback":true,'
    b'"phase":"rolled_back","stable":"v1","canary":"v2","canarySamples":50,"enoughSamples":false,'
    b'"alarms":["resolution_rate"],"evidence":[{"metric":"resolution_rate","detector":"mixture-fisher",'
    b'"statistic":8.6727,"threshold":7.9638,"pValue":0.0001712,"nCanary":50,"nStable":348,"canaryValue":0.58,'
    b'"stableValue":0.862069}],"updated":1700000120,"canaryWeight":0.0}')
PENDING = (
    b'{"namespace":"shop","name":"bot","agent":"bot","verdict":"unknown","healthy":false,"rollback":false,'
    b'"phase":"pending","stable":null,"canary":null,"canarySamples":0,"enoughSamples":false,"alarms":[],'
    b'"evidence":[],"updated":null}')


def test_the_engine_publishes_the_same_json_as_before() -> None:
    # the statistics as they were then: no fresh starts, no categorical tests holding a share of alpha
    engine = Engine([rollout(changeEvery=0, categorical={"fields": []})])
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
