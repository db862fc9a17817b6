"""Kafka clients: the one factory every aiokafka client of vigil is made by, its security options, and topic
set-up.

Three kinds of client, each made in one place so that every one of them carries the cluster's security
options and the same timeouts: :func:`group_consumer` (a member of a consumer group, committing by hand),
:func:`reader` (no group: it assigns partitions itself and commits nothing) and :func:`producer`.
"""

from __future__ import annotations

import contextlib
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

__all__ = ["SASL_MECHANISMS", "SECURITY_PROTOCOLS", "client_options", "ensure_topics", "group_consumer", "producer",
           "reader"]

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def client_options(security_protocol: str = "PLAINTEXT", sasl_mechanism: str | None = None,
                   sasl_username: str | None = None, sasl_password: str | None = None) -> dict[str, Any]:
    """aiokafka keyword arguments for a secured cluster (TLS with the system's CA certificates, SASL).

    >>> client_options()
    {}
    >>> sorted(client_options("SASL_PLAINTEXT", "PLAIN", "u", "p"))
    ['sasl_mechanism', 'sasl_plain_password', 'sasl_plain_username', 'security_protocol']
    """
    if security_protocol not in SECURITY_PROTOCOLS:
        raise ValueError(f"security_protocol must be one of {', '.join(SECURITY_PROTOCOLS)}, got {security_protocol!r}")
    if security_protocol == "PLAINTEXT":
        return {}
    out: dict[str, Any] = {"security_protocol": security_protocol}
    if security_protocol.endswith("SSL"):
        from aiokafka.helpers import create_ssl_context

        out["ssl_context"] = create_ssl_context()
    if security_protocol.startswith("SASL"):
        if sasl_mechanism not in SASL_MECHANISMS:
            raise ValueError(f"sasl_mechanism must be one of {', '.join(SASL_MECHANISMS)}, got {sasl_mechanism!r}")
        if not sasl_username or not sasl_password:
            raise ValueError("sasl_username and sasl_password are required with SASL")
        out.update(sasl_mechanism=sasl_mechanism, sasl_plain_username=sasl_username, sasl_plain_password=sasl_password)
    return out


async def ensure_topics(bootstrap: str, topics: dict[str, int],
                        configs: dict[str, dict[str, str]] | None = None,
                        options: dict[str, Any] | None = None) -> None:
    """Create the topics that do not exist yet, with the given partition counts and topic configs."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **(options or {}))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [NewTopic(name, num_partitions=n, replication_factor=1, topic_configs=(configs or {}).get(name, {}))
               for name, n in topics.items() if name not in existing]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(new)
    finally:
        await admin.close()


def group_consumer(bootstrap: str, group: str, *topics: str, options: dict[str, Any],
                   session_timeout_ms: int) -> AIOKafkaConsumer:
    """A member of consumer ``group``: offsets committed by hand, from the earliest when the group has none.

    The heartbeat is a sixth of the session timeout, so a short session (a few seconds, so that a dead
    worker is noticed soon) still survives a missed beat or two; a member has at least 10 s to rejoin.
    """
    return AIOKafkaConsumer(
        *topics, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False, auto_offset_reset="earliest",
        session_timeout_ms=session_timeout_ms, heartbeat_interval_ms=max(100, session_timeout_ms // 6),
        rebalance_timeout_ms=max(session_timeout_ms, 10000), **options)


def reader(bootstrap: str, *topics: str, options: dict[str, Any]) -> AIOKafkaConsumer:
    """A consumer in no group: it is assigned its partitions by the caller, reads from the earliest offset
    it has none for, and commits nothing."""
    return AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                            auto_offset_reset="earliest", **options)


def producer(bootstrap: str, *, options: dict[str, Any], **overrides: Any) -> AIOKafkaProducer:
    """A producer whose sends are acknowledged by every in-sync replica (``acks=all``), batching for 5 ms,
    with requests up to 8 MiB (one poll's summaries of a busy agent); ``overrides`` replace these."""
    kwargs: dict[str, Any] = {"acks": "all", "linger_ms": 5, "max_request_size": 8 * 1024 * 1024, **overrides}
    return AIOKafkaProducer(bootstrap_servers=bootstrap, **kwargs, **options)
