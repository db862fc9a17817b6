"""The HTTP server itself, over real sockets on 127.0.0.1 (http.client in a thread, the server on the test's
loop): keep-alive, HEAD, 405 with Allow, 401 with WWW-Authenticate, chunked and oversized bodies, a failing
handler, a malformed request, and a stop that does not wait for idle connections. The endpoints' documents
are in test_verdict.py and test_pipeline_kafka.py."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import logging
import socket
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any

import pytest

from controller.engine.core import Engine
from controller.http.server import HttpServer
from controller.runtime.pipeline import PipelineStats
from controller.tools.simulate import SimConfig
from tests.support.simulated import feed, rollout

GET_PATHS = ("/metrics", "/healthz", "/readyz", "/api/v1/decisions", "/api/v1/agents", "/api/v1/verdict/default/r")
FLAGGER = "/api/v1/flagger/rollback"


@contextlib.asynccontextmanager
async def serving(ready: Callable[[], bool] = lambda: True, **kw: Any) -> AsyncIterator[int]:
    """A server on a free port over an engine that holds rollout ``r`` (agent ``bot``, a few seconds of traffic:
    too little to judge)."""
    engine = Engine([rollout("bot", "r")])
    feed(engine, SimConfig(agent="bot", duration=3, rate=5, canary_weight=30, seed=3))
    server = HttpServer(PipelineStats(), lambda: engine, ready, port=0, **kw)
    port = await server.start()
    try:
        yield port
    finally:
        await server.stop()


@contextlib.contextmanager
def connection(port: int) -> Iterator[http.client.HTTPConnection]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        yield conn
    finally:
        conn.close()


def ask(conn: http.client.HTTPConnection, method: str, path: str, body: bytes | Iterable[bytes] | None = None,
        headers: dict[str, str] | None = None) -> tuple[int, http.client.HTTPMessage, bytes]:
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    return resp.status, resp.headers, resp.read()


def once(port: int, method: str, path: str, body: bytes | Iterable[bytes] | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, http.client.HTTPMessage, bytes]:
    with connection(port) as conn:
        return ask(conn, method, path, body, headers)


def webhook(size: int) -> bytes:
    """A Flagger payload for rollout ``r``, padded with JSON whitespace to exactly ``size`` bytes."""
    doc = json.dumps({"name": "r", "namespace": "default", "phase": "Progressing"}).encode()
    return doc + b" " * (size - len(doc))


async def test_two_requests_on_one_connection() -> None:
    def two(port: int) -> list[Any]:
        with connection(port) as conn:
            first = ask(conn, "GET", "/healthz")
            sock = conn.sock  # http.client drops it when the server closes the connection
            second = ask(conn, "POST", FLAGGER, webhook(100), {"Content-Type": "application/json"})
            return [first, second, sock is not None and conn.sock is sock]

    async with serving() as port:
        (s1, _, b1), (s2, h2, b2), same = await asyncio.to_thread(two, port)
    assert (s1, b1) == (200, b"ok\n") and same
    # too little traffic to judge, which is no reason to roll back
    assert s2 == 412 and h2["Content-Type"] == "application/json" and json.loads(b2)["name"] == "r"


async def test_head_answers_wherever_get_does() -> None:
    def both(port: int) -> list[tuple[Any, Any]]:
        return [(once(port, "GET", p), once(port, "HEAD", p)) for p in GET_PATHS]

    async with serving() as port:
        pairs = await asyncio.to_thread(both, port)
    for path, ((gs, gh, gb), (hs, hh, hb)) in zip(GET_PATHS, pairs, strict=True):
        assert gs == hs == 200 and hb == b"" and gb, path
        assert gh["Content-Type"] == hh["Content-Type"], path
    assert pairs[0][1][1]["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"


async def test_another_method_gets_405_with_allow() -> None:
    def calls(port: int) -> list[Any]:
        return [once(port, "POST", "/healthz", b"{}"), once(port, "DELETE", "/api/v1/verdict/default/r"),
                once(port, "GET", FLAGGER), once(port, "POST", "/nowhere", b"{}")]

    async with serving() as port:
        (s1, h1, b1), (s2, h2, _), (s3, h3, _), (s4, _, b4) = await asyncio.to_thread(calls, port)
    assert (s1, b1) == (405, b"method not allowed\n") and set(h1["Allow"].split(",")) == {"GET", "HEAD"}
    assert s2 == 405 and set(h2["Allow"].split(",")) == {"GET", "HEAD"}
    assert s3 == 405 and h3["Allow"] == "POST"
    assert (s4, b4) == (404, b"not found\n")


async def test_401_names_the_bearer_scheme() -> None:
    def calls(port: int) -> list[Any]:
        return [once(port, m, "/api/v1/agents", headers=auth) for m in ("GET", "HEAD")
                for auth in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer s3cret"})]

    async with serving(admin_token="s3cret") as port:
        results = await asyncio.to_thread(calls, port)
    assert [s for s, _, _ in results] == [401, 401, 200] * 2
    for status, headers, body in results:
        if status == 401:
            assert headers["WWW-Authenticate"] == 'Bearer realm="vigil"'
            assert headers["Content-Type"] == "application/json"
            assert body == b"" or json.loads(body) == {"error": "a bearer token is required"}


async def test_chunked_bodies_are_read_and_bounded_at_64_kib() -> None:
    limit = 64 * 1024

    def chunked(doc: bytes) -> Iterable[bytes]:  # http.client sends an iterable without length as chunked
        return (doc[i:i + 1000] for i in range(0, len(doc), 1000))

    def calls(port: int) -> list[Any]:
        return [once(port, "POST", FLAGGER, chunked(webhook(limit))),
                once(port, "POST", FLAGGER, chunked(webhook(limit + 1))),
                once(port, "POST", FLAGGER, webhook(limit + 1))]  # with a Content-Length

    async with serving() as port:
        (s1, _, b1), (s2, h2, b2), (s3, _, b3) = await asyncio.to_thread(calls, port)
    assert s1 == 412 and json.loads(b1)["name"] == "r"
    assert s2 == s3 == 413 and h2["Content-Type"] == "application/json"
    assert "64 KiB" in json.loads(b2)["error"] and b2 == b3


async def test_a_failing_handler_answers_500_in_json_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> bool:
        raise RuntimeError("readiness exploded")

    def calls(port: int) -> list[Any]:
        with connection(port) as conn:
            return [ask(conn, "GET", "/readyz"), ask(conn, "GET", "/healthz")]

    with caplog.at_level(logging.ERROR, logger="vigil.http"):
        async with serving(ready=broken) as port:
            (s1, h1, b1), (s2, _, _) = await asyncio.to_thread(calls, port)
    assert s1 == 500 and h1["Content-Type"] == "application/json" and "error" in json.loads(b1)
    assert s2 == 200  # and the connection is still good
    [rec] = [r for r in caplog.records if r.name == "vigil.http"]
    assert "/readyz" in rec.getMessage() and rec.exc_info and "readiness exploded" in str(rec.exc_info[1])


async def test_a_malformed_request_gets_400() -> None:
    def raw(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"NOT HTTP AT ALL\r\n\r\n")
            return s.recv(100)

    async with serving() as port:
        answer = await asyncio.to_thread(raw, port)
    assert answer.split(b"\r\n")[0].endswith(b" 400 Bad Request")


async def test_stop_does_not_wait_for_an_idle_keep_alive_connection() -> None:
    server = HttpServer(PipelineStats(), lambda: None, lambda: True, port=0)
    port = await server.start()
    with connection(port) as conn:
        status, _, _ = await asyncio.to_thread(ask, conn, "GET", "/healthz")
        assert status == 200 and conn.sock is not None  # still open, idle
        await asyncio.wait_for(server.stop(), 2)
