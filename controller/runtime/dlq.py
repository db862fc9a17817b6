"""The dead-letter topic: an event that cannot be read goes there, with its original key, value and headers,
and two headers more saying why and where it came from; nothing a producer sends is lost or stops the stream."""

from __future__ import annotations

from aiokafka import ConsumerRecord

__all__ = ["DLQ_REASON_HEADER", "DLQ_SOURCE_HEADER", "dead_letter", "reason_class"]

#: Why the record was refused: the decoder's message (the field's path and what was wrong with it).
DLQ_REASON_HEADER = "vigil-dlq-reason"
#: Where it was read: ``topic/partition/offset``.
DLQ_SOURCE_HEADER = "vigil-dlq-source"


def dead_letter(record: ConsumerRecord[bytes, bytes],
                reason: str) -> tuple[bytes, bytes | None, list[tuple[str, bytes]]]:
    """The value, key and headers to send to the dead-letter topic for ``record``."""
    headers = [*record.headers, (DLQ_REASON_HEADER, reason.encode()),
               (DLQ_SOURCE_HEADER, f"{record.topic}/{record.partition}/{record.offset}".encode())]
    # Kafka refuses a record with neither key nor value: keep it as an empty value
    value = record.value if record.value is not None or record.key is not None else b""
    return value, record.key, headers


def reason_class(reason: str) -> str:
    """A low-cardinality label for a DLQ reason (the path is dropped; values never reach a label)."""
    head = reason.split(" - at ")[0]
    for key in ("malformed JSON", "missing required field", "no event time", "empty record", "Invalid enum",
                "Expected", "unexpected"):
        if head.startswith(key):
            return key.lower().replace(" ", "_")
    return "contract_violation"
