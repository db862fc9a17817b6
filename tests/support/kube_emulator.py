"""A Kubernetes API for the tests: kmock's stateful emulator, extended where it falls short of a real
API server, served over real HTTP on 127.0.0.1 from a background thread.

What kmock 0.8 lacks, and this module adds (:class:`ApiServer`):

* ``metadata.resourceVersion``, ``generation`` and ``uid``: stamped on every write; a patch or replace that
  carries a stale ``resourceVersion`` is refused with 409 Conflict, as the API server does (optimistic
  concurrency is what the controller relies on, so the tests must be able to lose a race);
* PUT (``replace_*``, the way a Lease is renewed): kmock has no PUT at all;
* 201 on create (the official client only decodes a created custom object from a 201);
* ``generateName``;
* fault injection *before* any state change (kmock's own reactions answer an error but still apply the
  write): :meth:`ApiServer.inject` fails the next matching request with any status, once per call;
* (added with the Kubernetes backend's tests) :meth:`ApiServer.before`: a blocking function run in a
  worker thread just before the next matching request is handled, while the server keeps serving. It
  can write to the API through another client (a concurrent writer landing between a read and the write
  that follows it), or sleep past the client's timeout (a slow server); and
  :meth:`EmulatorThread.requests` / :meth:`EmulatorThread.history` to inspect what was asked and stored.

Still as kmock does it, and so never relied on by the tests: selectors are ignored, a strategic merge patch
replaces lists instead of merging them by key, ``/status`` is not separated from the object, there is no
admission, defaulting or validation. The controller only uses merge patches (custom resources), JSON patches
and replaces, whose semantics kmock gets right.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import gzip
import importlib.resources
import itertools
import threading
import uuid
from collections.abc import Callable
from typing import Any

import kmock
import kubernetes

__all__ = ["ApiServer", "EmulatorThread"]


def _load_builtin_resources(emu: kmock.KubernetesEmulator) -> None:
    # emu.resources.load_bundled() without its DeprecationWarning (importlib.resources.read_binary)
    data = (importlib.resources.files("kmock._internal") / "resources.json.gz").read_bytes()
    emu.resources.load_data(gzip.decompress(data))


class ApiServer(kmock.KubernetesEmulator):  # type: ignore[misc]
    """kmock's emulator with resourceVersions, conflicts, PUT, 201 on create and fault injection."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._rv = itertools.count(1)
        # one-shot interceptions, in the order given: an error to answer with, or a blocking function to run first
        self.faults: collections.deque[tuple[Callable[[Any], bool], kmock.KubernetesError | Callable[[], object]]] = (
            collections.deque())
        self.fallback[kmock.method.PUT] << self._serve_put  # PUT is no kmock "action"
        self.fallback[kmock.action.CREATE] ** 1 << 201 << self._serve_create

    def inject(self, predicate: Callable[[Any], bool], status: int = 500, reason: str = "InternalError",
               message: str = "injected fault") -> None:
        """Fail the next request matching ``predicate`` (it sees ``.method``, ``.resource``, ``.name``,
        ``.subresource``, ``.data``) with ``status``, before it changes anything."""
        self.faults.append((predicate, kmock.KubernetesError(status=status, reason=reason, message=message)))

    def before(self, predicate: Callable[[Any], bool], fn: Callable[[], object]) -> None:
        """Run ``fn()`` in a worker thread before handling the next request matching ``predicate`` (once).

        The server answers other requests meanwhile, so ``fn`` may call this API with the blocking client."""
        self.faults.append((predicate, fn))

    async def _handle(self, request: Any) -> Any:
        for i, (pred, action) in enumerate(self.faults):
            if pred(request):
                del self.faults[i]
                if isinstance(action, kmock.KubernetesError):
                    raise action
                await asyncio.to_thread(action)
                break
        if request.resource is not None:
            async with self._lock:
                await self._stamp(request)
        return await super()._handle(request)

    async def _stamp(self, request: Any) -> None:
        key = (request.resource, request.namespace, request.name)
        cur = self._objects[key] if key in self._objects and not self._objects[key].deleted else None
        meta = cur.raw.get("metadata", {}) if cur is not None else {}
        rv = str(next(self._rv))
        data = request.data
        if request.action == kmock.action.CREATE and isinstance(data, dict):
            m = data.setdefault("metadata", {})
            if not m.get("name") and m.get("generateName"):
                m["name"] = m["generateName"] + uuid.uuid4().hex[:5]
            if request.namespace and not m.get("namespace"):
                m["namespace"] = request.namespace
            m.update(resourceVersion=rv, generation=1, uid=str(uuid.uuid4()))
        elif request.action == kmock.action.UPDATE and cur is not None:
            if isinstance(data, dict):
                want = (data.get("metadata") or {}).get("resourceVersion")
                if want is not None and want != meta.get("resourceVersion"):
                    raise kmock.KubernetesError(status=409, reason="Conflict", message=(
                        "the object has been modified; please apply your changes to the latest version and try again"))
                data.setdefault("metadata", {})["resourceVersion"] = rv
                if "spec" in data and request.subresource != "status":
                    data["metadata"]["generation"] = meta.get("generation", 1) + 1
            elif isinstance(data, list):  # a JSON patch: its "test" ops guard it; the version still moves
                data.append({"op": "add", "path": "/metadata/resourceVersion", "value": rv})
                if any(str(op.get("path", "")).startswith("/spec") for op in data):
                    data.append({"op": "add", "path": "/metadata/generation", "value": meta.get("generation", 1) + 1})
        elif request.method == kmock.method.PUT and request.name is not None:
            if cur is None:
                raise kmock.KubernetesObjectNotFoundError()
            body = dict(data or {})
            want = (body.get("metadata") or {}).get("resourceVersion")
            if want is not None and want != meta.get("resourceVersion"):
                raise kmock.KubernetesError(status=409, reason="Conflict", message="stale resourceVersion")
            if request.subresource == "status":
                body = {**cur.raw, "status": body.get("status")}
            body["metadata"] = {**meta, **(body.get("metadata") or {}), "resourceVersion": rv}
            if cur.raw.get("spec") != body.get("spec"):
                body["metadata"]["generation"] = meta.get("generation", 1) + 1
            self._objects[key].create(body)
            await self._buses[request.resource].put({"type": "MODIFIED", "object": self._objects[key].raw})

    async def _serve_put(self, request: Any) -> Any:
        async with self._lock:
            return self._objects[request.resource, request.namespace, request.name].raw


class EmulatorThread:
    """:class:`ApiServer` on 127.0.0.1 (a free port), its event loop on a background thread, so that the
    blocking official client can call it from anywhere but that loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._exc: BaseException | None = None
        self._stop: asyncio.Event | None = None
        self.api: ApiServer | None = None
        self.port = 0
        self.thread = threading.Thread(target=self._run, name="kube-emulator", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._main())
        except BaseException as exc:  # noqa: BLE001 - handed to start()
            self._exc = exc
            self._ready.set()
        finally:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        async with ApiServer() as api, kmock.Server(api, host="127.0.0.1") as srv:
            _load_builtin_resources(api)
            self.api, self.port = api, srv.port
            # kmock's watch handler never ends by itself: without this an open watch holds shutdown ~120 s
            srv.server.runner._shutdown_timeout = 0.5
            self._ready.set()
            await self._stop.wait()

    def start(self) -> EmulatorThread:
        self.thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the Kubernetes emulator did not start")
        if self._exc is not None:
            raise self._exc
        return self

    def stop(self) -> None:
        if self.thread.is_alive() and self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(10)

    def call(self, fn: Callable[[ApiServer], Any]) -> Any:
        """Run ``fn(api)`` on the emulator's loop (to seed or read its state directly)."""
        async def run() -> Any:
            assert self.api is not None
            return fn(self.api)
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def requests(self, method: str | None = None, plural: str | None = None) -> list[Any]:
        """The requests served so far, oldest first, optionally only those of one method and resource plural
        (each has ``.method``, ``.resource``, ``.namespace``, ``.name``, ``.subresource``, ``.data``)."""
        def pick(api: ApiServer) -> list[Any]:
            return [r for r in list(api) if (method is None or r.method == method.upper())
                    and (plural is None or (r.resource is not None and r.resource.plural == plural))]
        return list(self.call(pick))

    def history(self, resource: str, namespace: str, name: str) -> list[dict[str, Any] | None]:
        """Every stored version of one object, oldest first, as plain dicts (None marks a deletion)."""
        def read(api: ApiServer) -> list[dict[str, Any] | None]:
            return [copy.deepcopy(dict(v.raw)) if v is not None else None
                    for v in api.objects[resource, namespace, name].history]
        return list(self.call(read))

    @property
    def host(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api_client(self) -> kubernetes.client.ApiClient:
        cfg = kubernetes.client.Configuration()
        cfg.host = self.host
        return kubernetes.client.ApiClient(cfg)
