"""Event contract v1: one Kafka message per agent interaction.

Three envelopes are accepted (see ``docs/events.md``):

* CloudEvents 1.0 structured JSON: ``{"specversion": "1.0", "id", "source", "type", "time", "data": {...}}``;
* CloudEvents binary mode: ``ce_*`` Kafka headers, the value is the ``data`` object;
* a bare ``data`` object, whose event time is its own ``time`` field or, failing that, the record timestamp.

Decoding is typed (msgspec), so a contract violation is reported with the JSON path of the offending
field. Message text never enters vigil: the contract has no field for it, only ``content_ref``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

import msgspec

from controller.errors import VigilError

__all__ = [
    "Evaluation",
    "Event",
    "Feedback",
    "Guardrail",
    "Interaction",
    "InvalidEvent",
    "ToolCall",
    "decode_line",
    "decode_record",
]

NonNegative = Annotated[float, msgspec.Meta(ge=0)]
Channel = Literal["voice", "sms", "whatsapp", "rcs", "webchat", "email", "other"]
Track = Literal["stable", "canary", "shadow"]
Outcome = Literal["resolved", "escalated", "abandoned", "error", "in_progress"]


class InvalidEvent(VigilError, ValueError):
    """The message cannot be decoded or violates the contract; ``reason`` says why (no payload)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Guardrail(msgspec.Struct, frozen=True):
    policy: str
    action: Literal["allow", "block", "warn"]
    score: float | None = None


class ToolCall(msgspec.Struct, frozen=True):
    name: str
    latency_ms: NonNegative | None = None
    error_type: str | None = None


class Evaluation(msgspec.Struct, frozen=True):
    name: str
    score: float


class Feedback(msgspec.Struct, frozen=True):
    csat: Annotated[int, msgspec.Meta(ge=1, le=5)] | None = None
    thumbs: Literal[-1, 0, 1] | None = None
    sentiment: Annotated[float, msgspec.Meta(ge=-1, le=1)] | None = None


class Interaction(msgspec.Struct, frozen=True):
    """The ``data`` of an event. The OpenTelemetry GenAI attribute names are accepted as aliases."""

    agent: str | None = None
    version: str | None = None
    track: Track | None = None
    tenant: str | None = None
    channel: Channel | None = None
    conversation_id: str | None = None
    turn: Annotated[int, msgspec.Meta(ge=0)] | None = None
    time: datetime | None = None
    latency_ms: NonNegative | None = None
    ttft_ms: NonNegative | None = None
    input_tokens: NonNegative | None = None
    output_tokens: NonNegative | None = None
    cost_usd: NonNegative | None = None
    outcome: Outcome | None = None
    error_type: str | None = None
    finish_reasons: list[str] | None = None
    intent: str | None = None
    model: str | None = None
    guardrails: list[Guardrail] | None = None
    tool_calls: list[ToolCall] | None = None
    evaluations: list[Evaluation] | None = None
    feedback: Feedback | None = None
    content_ref: str | None = None
    # OpenTelemetry GenAI semantic-convention aliases, folded into the fields above by ``_normalise``.
    otel_agent: str | None = msgspec.field(default=None, name="gen_ai.agent.name")
    otel_version: str | None = msgspec.field(default=None, name="gen_ai.agent.version")
    otel_conversation: str | None = msgspec.field(default=None, name="gen_ai.conversation.id")
    otel_input_tokens: NonNegative | None = msgspec.field(default=None, name="gen_ai.usage.input_tokens")
    otel_output_tokens: NonNegative | None = msgspec.field(default=None, name="gen_ai.usage.output_tokens")
    otel_model: str | None = msgspec.field(default=None, name="gen_ai.request.model")
    otel_finish: list[str] | None = msgspec.field(default=None, name="gen_ai.response.finish_reasons")
    otel_error: str | None = msgspec.field(default=None, name="error.type")


class _Structured(msgspec.Struct):
    specversion: str | None = None
    id: str | None = None
    source: str | None = None
    type: str | None = None
    time: datetime | None = None
    subject: str | None = None
    data: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b""))


class Event(msgspec.Struct, frozen=True):
    """A validated interaction with its event time (UTC, seconds since the epoch)."""

    time: float
    data: Interaction
    id: str | None = None


_structured = msgspec.json.Decoder(_Structured)
_interaction = msgspec.json.Decoder(Interaction)


def _epoch(value: datetime) -> float:
    if value.tzinfo is None:  # RFC 3339 requires an offset; a naive time is read as UTC, never as local
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def _normalise(data: Interaction) -> Interaction:
    changes: dict[str, object] = {}
    for field, alias in (
        ("agent", "otel_agent"),
        ("version", "otel_version"),
        ("conversation_id", "otel_conversation"),
        ("input_tokens", "otel_input_tokens"),
        ("output_tokens", "otel_output_tokens"),
        ("model", "otel_model"),
        ("finish_reasons", "otel_finish"),
        ("error_type", "otel_error"),
    ):
        if getattr(data, field) is None and getattr(data, alias) is not None:
            changes[field] = getattr(data, alias)
    if changes:
        data = msgspec.structs.replace(data, **changes)
    if not data.agent:
        raise InvalidEvent("missing required field `agent` (or `gen_ai.agent.name`) - at `$.data`")
    if not data.version:
        raise InvalidEvent("missing required field `version` (or `gen_ai.agent.version`) - at `$.data`")
    return data


def _decode_data(raw: bytes | msgspec.Raw, path: str) -> Interaction:
    try:
        data = _interaction.decode(raw)
    except msgspec.ValidationError as exc:
        raise InvalidEvent(str(exc).replace("`$", f"`{path}", 1)) from None
    except msgspec.DecodeError as exc:
        raise InvalidEvent(f"malformed JSON: {exc}") from None
    return _normalise(data)


def _header(headers: dict[str, bytes], name: str) -> str | None:
    value = headers.get(name)
    return value.decode("utf-8", "replace") if value is not None else None


def decode_record(value: bytes | None, headers: dict[str, bytes] | None = None,
                  timestamp_ms: int | None = None) -> Event:
    """Decode one Kafka record (any of the three envelopes) or raise :class:`InvalidEvent`.

    >>> ev = decode_record(b'{"agent": "bot", "version": "v2", "outcome": "escalated"}', timestamp_ms=1_700_000_000_000)
    >>> (ev.data.agent, ev.data.version, ev.data.outcome, ev.time)
    ('bot', 'v2', 'escalated', 1700000000.0)
    """
    if value is None:
        raise InvalidEvent("empty record (no value)")
    headers = headers or {}
    if "ce_specversion" in headers:  # CloudEvents binary mode: attributes in headers, value is `data`
        data = _decode_data(value, "$.data")
        when = _header(headers, "ce_time")
        if when is not None:
            try:
                t = _epoch(msgspec.json.decode(msgspec.json.encode(when), type=datetime))
            except msgspec.ValidationError:
                raise InvalidEvent(f"header `ce_time` is not an RFC 3339 time: {when[:64]!r}") from None
        elif data.time is not None:
            t = _epoch(data.time)
        elif timestamp_ms is not None:
            t = timestamp_ms / 1000.0
        else:
            raise InvalidEvent("no event time: neither `ce_time`, `data.time` nor a record timestamp")
        return Event(time=t, data=data, id=_header(headers, "ce_id"))
    try:
        envelope = _structured.decode(value)
    except msgspec.ValidationError as exc:
        raise InvalidEvent(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise InvalidEvent(f"malformed JSON: {exc}") from None
    if envelope.specversion is not None:
        if not bytes(envelope.data) or bytes(envelope.data) == b"null":
            raise InvalidEvent("CloudEvent without `data` - at `$`")
        data = _decode_data(envelope.data, "$.data")
        when_dt = envelope.time or data.time
        if when_dt is not None:
            t = _epoch(when_dt)
        elif timestamp_ms is not None:
            t = timestamp_ms / 1000.0
        else:
            raise InvalidEvent("no event time: neither `time`, `data.time` nor a record timestamp")
        return Event(time=t, data=data, id=envelope.id)
    data = _decode_data(value, "$")
    if data.time is not None:
        t = _epoch(data.time)
    elif timestamp_ms is not None:
        t = timestamp_ms / 1000.0
    else:
        raise InvalidEvent("no event time: a bare event needs `time` outside Kafka")
    return Event(time=t, data=data)


def decode_line(line: bytes) -> Event:
    """Decode one line of a JSON lines file (structured CloudEvents or bare data with ``time``)."""
    return decode_record(line)
