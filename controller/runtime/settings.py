"""The live pipeline's settings: topics, consumer groups, timeouts and the cluster's security options."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from controller.runtime.kafka import client_options

__all__ = ["PipelineSettings"]


@dataclass(frozen=True)
class PipelineSettings:
    bootstrap: str
    """Kafka bootstrap servers, ``host:port[,host:port]``."""
    topic: str = "vigil.events"
    """The topic agents publish interaction events to."""
    summaries_topic: str = ""
    """Internal topic of bucket summaries, keyed by agent; default ``<group>.summaries``."""
    changelog_topic: str = ""
    """Internal changelog topic the state stage checkpoints to (same partitions); default ``<group>.state``."""
    decisions_topic: str = "vigil.decisions"
    """Every decision, as one JSON object per message, keyed by agent."""
    verdicts_topic: str = ""
    """Compacted topic of each agent's latest verdict document (JSON), keyed by agent; default ``<group>.verdicts``."""
    group: str = "vigil"
    """Consumer group prefix: ``<group>.ingest`` and ``<group>.state``."""
    partitions: int = 3
    """Partitions of the topics vigil creates when they are missing."""
    session_timeout_ms: int = 6000
    """Consumer session timeout; small so a group forms quickly and a dead worker is noticed soon."""
    max_batch: int = 5000
    """Records per poll at most."""
    poll_timeout_ms: int = 200
    """How long one poll waits for records."""
    checkpoint_interval: float = 1.0
    """Seconds between state checkpoints (offsets are committed with each checkpoint)."""
    security_protocol: str = "PLAINTEXT"
    """``PLAINTEXT``, ``SSL``, ``SASL_PLAINTEXT`` or ``SASL_SSL`` (TLS trusts the system's CA certificates)."""
    sasl_mechanism: str | None = None
    """``PLAIN``, ``SCRAM-SHA-256`` or ``SCRAM-SHA-512`` with SASL."""
    sasl_username: str | None = None
    """SASL user name."""
    sasl_password: str | None = field(default=None, repr=False)
    """SASL password (never printed)."""

    def _check_security(self) -> None:
        try:
            self.client_options()
        except ValueError as exc:
            raise ValueError(f"invalid Kafka security settings: {exc}") from None

    def client_options(self) -> dict[str, Any]:
        """aiokafka keyword arguments for this cluster's security settings."""
        return client_options(self.security_protocol, self.sasl_mechanism, self.sasl_username, self.sasl_password)

    def __post_init__(self) -> None:
        self._check_security()
        # derived from the group, so two deployments with their own groups never share internal topics
        if not self.summaries_topic:
            object.__setattr__(self, "summaries_topic", f"{self.group}.summaries")
        if not self.changelog_topic:
            object.__setattr__(self, "changelog_topic", f"{self.group}.state")
        if not self.verdicts_topic:
            object.__setattr__(self, "verdicts_topic", f"{self.group}.verdicts")

    @property
    def dlq_topic(self) -> str:
        return f"{self.topic}.dlq"
