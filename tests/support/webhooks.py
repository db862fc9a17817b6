"""A webhook receiver on 127.0.0.1 (http.server in a thread, HTTP/1.1 keep-alive)."""

from __future__ import annotations

import collections
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    """A webhook endpoint: records every POST, answers the queued statuses (then 200; a 3xx points elsewhere on
    the same server), holds each answer while ``gate`` is clear, and counts the requests running at once."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.statuses: collections.deque[int] = collections.deque()
        self.gate = threading.Event()
        self.gate.set()
        self.running = [0, 0]  # now, most at once
        self.retry_after: list[str | None] = []
        """``Retry-After`` values sent with the next answers, one each."""
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: the client may pool its connections

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with lock:
                    status = outer.statuses.popleft() if outer.statuses else 200
                    wait = outer.retry_after.pop(0) if outer.retry_after else None
                    outer.requests.append({"path": self.path, "raw": raw, "port": self.client_address[1],
                                           "headers": {k.lower(): v for k, v in self.headers.items()}})
                    outer.running[0] += 1
                    outer.running[1] = max(outer.running)
                outer.gate.wait(5)
                with lock:
                    outer.running[0] -= 1
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "/elsewhere")
                if wait is not None:
                    self.send_header("Retry-After", wait)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), name="webhook-receiver",
                                       daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [json.loads(r["raw"]) for r in self.requests if r["path"] == path]
