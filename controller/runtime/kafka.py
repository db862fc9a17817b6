"""Kafka clients: the security options every aiokafka client of vigil is made with, and topic set-up."""

from __future__ import annotations

import contextlib
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

__all__ = ["SASL_MECHANISMS", "SECURITY_PROTOCOLS", "client_options", "ensure_topics"]

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
