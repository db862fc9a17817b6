"""Tests of the event contract (``controller.contracts.events``): envelopes, OTel aliases, event time, rejections.

Expected values are derived from the contract (RFC 3339 times written here, the documented precedence of
the time sources, the documented field paths), not copied from a run of the decoder.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from controller.contracts.events import Event, Guardrail, Interaction, InvalidEvent, decode_line, decode_record
from controller.ingest.catalog import observe

# 2024-03-01T12:00:00Z, computed independently of the decoder.
T_ISO = "2024-03-01T12:00:00Z"
T = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC).timestamp()
T_OTHER_ISO = "2024-03-01T13:30:00.250Z"
T_OTHER = T + 5400.25
RECORD_MS = 1_600_000_000_123
RECORD_T = 1_600_000_000.123


def full_data(**overrides: Any) -> dict[str, Any]:
    """A data object using every field of the contract."""
    data: dict[str, Any] = {
        "agent": "support-bot",
        "version": "v7",
        "track": "canary",
        "tenant": "acme",
        "channel": "whatsapp",
        "conversation_id": "conv-1",
        "turn": 3,
        "time": T_ISO,
        "latency_ms": 812.5,
        "ttft_ms": 120,
        "input_tokens": 400,
        "output_tokens": 95,
        "cost_usd": 0.0031,
        "outcome": "escalated",
        "error_type": None,
        "finish_reasons": ["stop"],
        "intent": "refund",
        "model": "m-large",
        "guardrails": [{"policy": "pii", "action": "block", "score": 0.9}],
        "tool_calls": [{"name": "crm.lookup", "latency_ms": 40}, {"name": "refund", "error_type": "timeout"}],
        "evaluations": [{"name": "helpfulness", "score": 0.7}],
        "feedback": {"csat": 2, "thumbs": -1, "sentiment": -0.4},
        "content_ref": "s3://bucket/conv-1",
    }
    data.update(overrides)
    return data


def structured(data: Any, **attrs: Any) -> bytes:
    envelope: dict[str, Any] = {"specversion": "1.0", "id": "evt-1", "source": "/agents/support-bot",
                                "type": "dev.vigil.interaction.v1", "time": T_ISO}
    envelope.update(attrs)
    if data is not ...:
        envelope["data"] = data
    return json.dumps(envelope).encode()


def binary_headers(**extra: str) -> dict[str, bytes]:
    headers = {"ce_specversion": "1.0", "ce_id": "evt-1", "ce_source": "/agents/support-bot",
               "ce_type": "dev.vigil.interaction.v1", "ce_time": T_ISO}
    headers.update(extra)
    return {k: v.encode() for k, v in headers.items()}


def reason_of(value: bytes | None, headers: dict[str, bytes] | None = None,
              timestamp_ms: int | None = None) -> str:
    with pytest.raises(InvalidEvent) as info:
        decode_record(value, headers, timestamp_ms)
    assert str(info.value) == info.value.reason
    return info.value.reason


# --- envelopes ------------------------------------------------------------------------------------------
def test_three_envelopes_decode_to_the_same_interaction() -> None:
    data = full_data()
    via_structured = decode_record(structured(data))
    via_binary = decode_record(json.dumps(data).encode(), binary_headers())
    via_bare = decode_record(json.dumps(data).encode())
    assert via_structured.data == via_binary.data == via_bare.data
    assert via_structured.time == via_binary.time == via_bare.time == T
    assert via_structured.id == via_binary.id == "evt-1"
    assert via_bare.id is None


def test_decoded_fields_keep_their_values_and_nested_types() -> None:
    d = decode_record(json.dumps(full_data()).encode()).data
    assert (d.agent, d.version, d.track, d.channel, d.turn) == ("support-bot", "v7", "canary", "whatsapp", 3)
    assert d.outcome == "escalated" and d.latency_ms == 812.5 and d.cost_usd == pytest.approx(0.0031)
    assert d.time == datetime(2024, 3, 1, 12, tzinfo=UTC)
    assert d.guardrails is not None and d.guardrails[0].action == "block"
    assert d.tool_calls is not None and [t.error_type for t in d.tool_calls] == [None, "timeout"]
    assert d.feedback is not None and (d.feedback.csat, d.feedback.thumbs) == (2, -1)
    assert d.content_ref == "s3://bucket/conv-1"


def test_decode_line_reads_structured_and_bare_lines() -> None:
    data = full_data()
    assert decode_line(structured(data)).data == decode_line(json.dumps(data).encode()).data
    assert decode_line(structured(data) + b"\n").time == T


def test_binary_mode_ignores_envelope_like_keys_inside_the_value() -> None:
    # in binary mode the value is `data`: a `specversion` key there is not an envelope
    value = json.dumps({**full_data(), "specversion": "1.0"}).encode()
    assert decode_record(value, binary_headers()).data.agent == "support-bot"


# --- OpenTelemetry GenAI aliases ------------------------------------------------------------------------
OTEL = {
    "gen_ai.agent.name": "support-bot",
    "gen_ai.agent.version": "v7",
    "gen_ai.conversation.id": "conv-9",
    "gen_ai.usage.input_tokens": 400,
    "gen_ai.usage.output_tokens": 95,
    "gen_ai.request.model": "m-large",
    "gen_ai.response.finish_reasons": ["length"],
    "error.type": "rate_limited",
}
NATIVE = {
    "agent": "support-bot",
    "version": "v7",
    "conversation_id": "conv-9",
    "input_tokens": 400,
    "output_tokens": 95,
    "model": "m-large",
    "finish_reasons": ["length"],
    "error_type": "rate_limited",
}


def test_otel_aliases_fill_the_native_fields() -> None:
    d = decode_record(json.dumps(OTEL).encode(), timestamp_ms=RECORD_MS).data
    for name, value in NATIVE.items():
        assert getattr(d, name) == value, name


def test_otel_aliases_feed_the_metrics() -> None:
    d = decode_record(json.dumps(OTEL).encode(), timestamp_ms=RECORD_MS).data
    rates, values = observe(d)
    assert ("error_rate", 1, 1) in rates  # from error.type
    assert ("truncation_rate", 1, 1) in rates  # from gen_ai.response.finish_reasons
    assert ("input_tokens", 400.0) in values and ("output_tokens", 95.0) in values


def test_native_field_wins_over_its_alias() -> None:
    data = {**OTEL, "agent": "native-bot", "version": "v8", "model": "m-small"}
    d = decode_record(json.dumps(data).encode(), timestamp_ms=RECORD_MS).data
    assert (d.agent, d.version, d.model) == ("native-bot", "v8", "m-small")
    assert d.conversation_id == "conv-9"  # the aliases without a native value still apply


def test_otel_alias_violation_names_the_alias_path() -> None:
    data = {**OTEL, "gen_ai.usage.input_tokens": -3}
    assert "`$.data.gen_ai.usage.input_tokens`" in reason_of(structured(data))


# --- event time -----------------------------------------------------------------------------------------
def test_structured_time_precedence() -> None:
    data = full_data(time=T_OTHER_ISO)
    assert decode_record(structured(data), timestamp_ms=RECORD_MS).time == T
    no_ce_time = structured(data, time=None)
    assert decode_record(no_ce_time, timestamp_ms=RECORD_MS).time == pytest.approx(T_OTHER)
    neither = structured(full_data(time=None), time=None)
    assert decode_record(neither, timestamp_ms=RECORD_MS).time == pytest.approx(RECORD_T)


def test_binary_time_precedence() -> None:
    value = json.dumps(full_data(time=T_OTHER_ISO)).encode()
    assert decode_record(value, binary_headers(), RECORD_MS).time == T
    headers = binary_headers()
    del headers["ce_time"]
    assert decode_record(value, headers, RECORD_MS).time == pytest.approx(T_OTHER)
    bare_value = json.dumps(full_data(time=None)).encode()
    assert decode_record(bare_value, headers, RECORD_MS).time == pytest.approx(RECORD_T)


def test_bare_time_precedence() -> None:
    assert decode_record(json.dumps(full_data()).encode(), timestamp_ms=RECORD_MS).time == T
    no_time = json.dumps(full_data(time=None)).encode()
    assert decode_record(no_time, timestamp_ms=RECORD_MS).time == pytest.approx(RECORD_T)


def test_offsets_are_converted_to_utc() -> None:
    shifted = full_data(time="2024-03-01T14:00:00+02:00")  # the same instant as T_ISO
    assert decode_record(json.dumps(shifted).encode()).time == T
    assert decode_record(structured(full_data(), time="2024-03-01T07:00:00-05:00")).time == T


@pytest.fixture
def local_time_not_utc() -> Iterator[None]:
    """A local time zone 5 hours behind UTC, so reading a naive time as local would be caught."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "XXX+05"
    time.tzset()
    try:
        assert datetime(2024, 3, 1, 12).timestamp() != T  # the trap is armed
        yield
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        time.tzset()


@pytest.mark.usefixtures("local_time_not_utc")
def test_naive_times_are_read_as_utc() -> None:
    naive = "2024-03-01T12:00:00"
    assert decode_record(json.dumps(full_data(time=naive)).encode()).time == T
    assert decode_record(structured(full_data(time=None), time=naive)).time == T
    value = json.dumps(full_data(time=None)).encode()
    assert decode_record(value, binary_headers(ce_time=naive)).time == T


# --- rejections -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "path", "detail"),
    [
        ({"agent": 17}, "$.data.agent", "str"),
        ({"turn": "three"}, "$.data.turn", "int"),
        ({"channel": "fax"}, "$.data.channel", "fax"),
        ({"track": "beta"}, "$.data.track", "beta"),
        ({"outcome": "happy"}, "$.data.outcome", "happy"),
        ({"feedback": {"csat": 6}}, "$.data.feedback.csat", "5"),
        ({"feedback": {"csat": 0}}, "$.data.feedback.csat", "1"),
        ({"feedback": {"thumbs": 2}}, "$.data.feedback.thumbs", ""),
        ({"latency_ms": -1.0}, "$.data.latency_ms", ">= 0"),
        ({"cost_usd": -0.01}, "$.data.cost_usd", ">= 0"),
        ({"tool_calls": [{"name": "a"}, {"name": "b", "latency_ms": -5}]}, "$.data.tool_calls[1].latency_ms",
         ">= 0"),
        ({"guardrails": [{"policy": "pii", "action": "maybe"}]}, "$.data.guardrails[0].action", "maybe"),
        ({"time": "yesterday"}, "$.data.time", "RFC3339"),
    ],
)
def test_contract_violation_names_the_field_path(overrides: dict[str, Any], path: str, detail: str) -> None:
    reason = reason_of(structured(full_data(**overrides)))
    assert f"`{path}`" in reason
    assert detail in reason
    # binary mode reports the same path; a bare event has the data object at the root
    value = json.dumps(full_data(**overrides)).encode()
    assert f"`{path}`" in reason_of(value, binary_headers())
    assert f"`{path.replace('$.data', '$', 1)}`" in reason_of(value, timestamp_ms=RECORD_MS)


@pytest.mark.parametrize(("field", "alias"),
                         [("agent", "gen_ai.agent.name"), ("version", "gen_ai.agent.version")])
@pytest.mark.parametrize("missing", [None, ""])
def test_missing_agent_or_version_is_refused(field: str, alias: str, missing: str | None) -> None:
    data = full_data(**{field: missing})
    for reason in (reason_of(structured(data)), reason_of(json.dumps(data).encode(), binary_headers())):
        assert f"`{field}`" in reason and f"`{alias}`" in reason and "`$.data`" in reason


def test_missing_agent_message_says_data_whatever_the_envelope() -> None:
    """Documented in docs/events.md: the `missing required field` message always says `$.data`."""
    reason = reason_of(json.dumps(full_data(agent=None)).encode(), timestamp_ms=RECORD_MS)
    assert reason == "missing required field `agent` (or `gen_ai.agent.name`) - at `$.data`"


def test_envelope_attribute_violation_names_its_path() -> None:
    assert "`$.time`" in reason_of(structured(full_data(), time=1234))
    assert "`$.id`" in reason_of(structured(full_data(), id=["x"]))


@pytest.mark.parametrize(("data", "got"), [(5, "int"), ("text", "str"), ([1, 2], "array"), (True, "bool")])
def test_data_that_is_not_an_object_is_refused(data: Any, got: str) -> None:
    expected = f"Expected `object`, got `{got}`"  # the documented reason, in every envelope
    assert reason_of(structured(data)) == expected
    assert reason_of(json.dumps(data).encode(), binary_headers()) == expected
    assert reason_of(json.dumps(data).encode(), timestamp_ms=RECORD_MS) == expected


@pytest.mark.parametrize("raw", [b"{", b"{\"agent\": \"a\",", b"not json", b"\xff\xfe", b""])
def test_malformed_json_is_refused(raw: bytes) -> None:
    assert reason_of(raw, timestamp_ms=RECORD_MS).startswith("malformed JSON")
    assert reason_of(raw, binary_headers()).startswith("malformed JSON")


def test_record_without_value_is_refused() -> None:
    assert "no value" in reason_of(None, timestamp_ms=RECORD_MS)


def test_cloudevent_without_data_is_refused() -> None:
    assert "without `data`" in reason_of(structured(...))
    assert "without `data`" in reason_of(structured(None))


def test_event_without_any_time_is_refused() -> None:
    no_time = full_data(time=None)
    assert "no event time" in reason_of(json.dumps(no_time).encode())
    assert "no event time" in reason_of(structured(no_time, time=None))
    headers = binary_headers()
    del headers["ce_time"]
    assert "no event time" in reason_of(json.dumps(no_time).encode(), headers)


def test_bad_ce_time_header_is_refused() -> None:
    reason = reason_of(json.dumps(full_data()).encode(), binary_headers(ce_time="next tuesday"))
    assert "ce_time" in reason and "next tuesday" in reason


def test_invalid_event_is_a_value_error_without_payload() -> None:
    secret = "my card number is 4111 1111 1111 1111"
    reason = reason_of(json.dumps(full_data(agent=None, text=secret)).encode(), timestamp_ms=RECORD_MS)
    assert isinstance(InvalidEvent(reason), ValueError)
    assert "4111" not in reason
    truncated = json.dumps({"text": secret, "agent": "a"}).encode()[:-1]
    assert "4111" not in reason_of(truncated, timestamp_ms=RECORD_MS)


# --- no message text ------------------------------------------------------------------------------------
@pytest.mark.parametrize("field", ["text", "message", "content", "prompt", "response"])
def test_message_text_is_never_stored(field: str) -> None:
    secret = "Hello, my password is hunter2"
    data = full_data(**{field: secret})
    decoded = decode_record(structured(data)), decode_record(json.dumps(data).encode(), binary_headers())
    for event in decoded:
        assert not hasattr(event.data, field)
        assert field not in Interaction.__struct_fields__
        assert b"hunter2" not in msgspec.json.encode(event)
        assert event.data == decode_record(structured(full_data())).data


def test_event_struct_is_frozen() -> None:
    event = decode_record(structured(full_data()))
    assert isinstance(event, Event)
    with pytest.raises(AttributeError):
        event.data.agent = "other"  # type: ignore[misc]


def test_errors_and_blocks_are_counted_per_interaction_absence_meaning_none() -> None:
    """Producers that set ``error_type`` and ``guardrails`` only when one happens: every event is a trial,
    so the rates are the share of interactions, not 100% of the events that mention them."""
    quiet = Interaction(agent="a", version="v")
    blocked = Interaction(agent="a", version="v", guardrails=[Guardrail(policy="pii", action="block")])
    failed = Interaction(agent="a", version="v", error_type="timeout")
    rates = {name: (0, 0) for name in ("error_rate", "guardrail_block_rate")}
    for d in [quiet] * 8 + [blocked, failed]:
        for name, n, k in observe(d)[0]:
            if name in rates:
                rates[name] = (rates[name][0] + n, rates[name][1] + k)
    assert rates == {"error_rate": (10, 1), "guardrail_block_rate": (10, 1)}


def test_optional_fields_whose_absence_is_unknown_add_no_trials() -> None:
    """No outcome, no feedback, no finish reasons, no tool calls: unknown, not "no harm"."""
    names = {name for name, _, _ in observe(Interaction(agent="a", version="v"))[0]}
    assert names == {"error_rate", "guardrail_block_rate"}
