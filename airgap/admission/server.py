"""The admission webhook server: ``POST /validate`` (AdmissionReview v1), ``/healthz``, ``/readyz``, ``/metrics``.

Two layers. :class:`AdmissionService` is the whole webhook without HTTP: ``handle(method, path, body)``
returns ``(status, content type, bytes)``; it owns the trust (reloaded when the directory changes), the
shared :class:`airgap.api.Verifier`, the decision cache, metrics and logs. :func:`asgi_app` puts it behind
any ASGI server; :func:`serve` runs it on uvicorn (httptools + uvloop) with TLS and HTTP/1.1 keep-alive,
the stack scripts/bench_webhook.py measured fastest for this workload.

Threat model and failure behaviour: request bodies are untrusted (size-capped before parsing, parsed
strictly); the local registry is untrusted and may be slow or down. Every review is answered within the
internal deadline (shorter than the webhook's ``timeoutSeconds``): what is not verified by then is denied
in enforce mode with a message saying so. A trust directory that fails to load keeps the previous trust
(and is logged); with no trust at all ``/readyz`` fails and every review is denied in enforce mode.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import IO, TYPE_CHECKING, Any

from airgap.admission.cache import DecisionCache, FreshLookup
from airgap.admission.decide import Decision, ImageVerdict, Mode, decide_request, malformed
from airgap.admission.review import AdmissionRequest, ReviewError
from airgap.errors import Error

if TYPE_CHECKING:
    from airgap.api import Verifier
    from airgap.config import RegistryOptions
    from airgap.oci.registry import RegistryClient
    from airgap.translate import Aliases
    from airgap.trust import Trust

JSON = "application/json"
TEXT = "text/plain; version=0.0.4; charset=utf-8"
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class WebhookConfig:
    """Knobs of one webhook process, with the reasons for their defaults."""

    trust_dir: str
    mode: Mode = "enforce"
    # Shorter than the ValidatingWebhookConfiguration's timeoutSeconds (10 in our manifests), so the
    # API server always gets our clear denial instead of its own timeout.
    deadline: float = 8.0
    cache_ttl: float = 60.0
    cache_size: int = 10_000
    # An AdmissionReview holds the object (and oldObject on UPDATE); etcd caps objects at 1.5 MiB.
    max_body: int = 4 * 1024 * 1024
    reload_interval: float = 2.0
    aliases: tuple[str, ...] = ()
    workers: int = 32  # image checks at once (threads); blocked ones are bounded by the registry timeouts
    registry: RegistryOptions | None = None


class JsonLog:
    """Structured logs: one JSON object per line (ts, level, msg and fields)."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self._lock = threading.Lock()

    def __call__(self, level: str, msg: str, **fields: Any) -> None:
        line = json.dumps({"ts": round(time.time(), 3), "level": level, "msg": msg, **fields}, default=str)
        with self._lock:
            try:
                self.stream.write(line + "\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass  # a closed log stream never fails a review


class Metrics:
    """Prometheus counters and a latency histogram, rendered in the text exposition format."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.decisions: dict[tuple[str, str], int] = {}
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total = 0.0
        self.reloads = 0
        self.reload_failures = 0
        self.deadline_exceeded = 0

    def observe(self, outcome: str, allowed: bool, seconds: float, deadline_hit: bool) -> None:
        index = next((i for i, b in enumerate(BUCKETS) if seconds <= b), len(BUCKETS))
        with self._lock:
            key = (outcome, "true" if allowed else "false")
            self.decisions[key] = self.decisions.get(key, 0) + 1
            self.counts[index] += 1
            self.total += seconds
            self.deadline_exceeded += deadline_hit

    def render(self, cache: DecisionCache[Any], ready: bool) -> str:
        with self._lock:
            lines = ["# HELP airgap_webhook_decisions_total Admission reviews answered, by worst image verdict.",
                     "# TYPE airgap_webhook_decisions_total counter"]
            lines += [f'airgap_webhook_decisions_total{{result="{r}",allowed="{a}"}} {n}'
                      for (r, a), n in sorted(self.decisions.items())]
            lines += ["# HELP airgap_webhook_review_seconds Time to answer one admission review.",
                      "# TYPE airgap_webhook_review_seconds histogram"]
            running = 0
            for bound, n in zip(BUCKETS, self.counts, strict=False):
                running += n
                lines.append(f'airgap_webhook_review_seconds_bucket{{le="{bound}"}} {running}')
            running += self.counts[-1]
            lines += [f'airgap_webhook_review_seconds_bucket{{le="+Inf"}} {running}',
                      f"airgap_webhook_review_seconds_sum {self.total:.6f}",
                      f"airgap_webhook_review_seconds_count {running}"]
            counters = {"cache_hits_total": cache.hits, "cache_misses_total": cache.misses,
                        "cache_evictions_total": cache.evictions, "trust_reloads_total": self.reloads,
                        "trust_reload_failures_total": self.reload_failures,
                        "deadline_exceeded_total": self.deadline_exceeded}
            for name, value in counters.items():
                lines += [f"# TYPE airgap_webhook_{name} counter", f"airgap_webhook_{name} {value}"]
            lines += ["# TYPE airgap_webhook_cache_entries gauge", f"airgap_webhook_cache_entries {len(cache)}",
                      "# TYPE airgap_webhook_ready gauge", f"airgap_webhook_ready {int(ready)}"]
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class _State:
    """One loaded trust directory and the verifier over it; replaced whole on reload."""

    trust: Trust
    verifier: Verifier
    policy_digest: str
    fingerprint: tuple[Any, ...] = field(repr=False)


def fingerprint(directory: str) -> tuple[Any, ...]:
    """Cheap change detector for a mounted ConfigMap/Secret (symlink swaps included): names, sizes, mtimes."""
    out: list[Any] = []
    for root, dirs, files in os.walk(directory, followlinks=True):
        dirs.sort()
        for name in sorted(files):
            try:
                st = os.stat(os.path.join(root, name))
            except OSError:
                continue
            out.append((os.path.relpath(os.path.join(root, name), directory), st.st_size, st.st_mtime_ns, st.st_ino))
    return tuple(out)


class AdmissionService:
    """The webhook without HTTP; thread-safe. See the module docstring."""

    def __init__(self, config: WebhookConfig, *, log: JsonLog | None = None) -> None:
        from airgap.config import RegistryOptions
        from airgap.oci.registry import RegistryClient
        from airgap.translate import Aliases

        self.config = config
        self.log = log or JsonLog()
        self.metrics = Metrics()
        self.cache: DecisionCache[ImageVerdict] = DecisionCache(config.cache_ttl, config.cache_size)
        options = config.registry or RegistryOptions()
        # One slow registry request must not outlive the review: bound it by the deadline, retry once.
        base = options.limits
        limits = replace(base, connect_timeout=min(base.connect_timeout, config.deadline),
                         read_timeout=min(base.read_timeout, config.deadline), retries=min(base.retries, 1),
                         backoff_max=min(base.backoff_max, 0.5))
        self.client: RegistryClient = RegistryClient(replace(options, limits=limits))
        self.aliases: Aliases = Aliases.parse(list(config.aliases))
        self._tags: FreshLookup[str | None] = FreshLookup(self._resolve)
        self.executor = ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="airgap-check")
        self._state: _State | None = None
        self._stop = threading.Event()
        self._reload_lock = threading.Lock()
        self.reload()
        self._watcher = threading.Thread(target=self._watch, name="airgap-trust-watch", daemon=True)
        self._watcher.start()

    # ---- trust ----------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._state is not None

    def reload(self) -> bool:
        """Load the trust directory if it changed; keep serving the old one if the new one is broken."""
        from airgap.api import Verifier
        from airgap.trust import Trust

        with self._reload_lock:
            current = self._state
            seen = fingerprint(self.config.trust_dir)
            if current is not None and seen == current.fingerprint:
                return False
            try:
                trust = Trust.load(self.config.trust_dir)
                verifier = Verifier(trust, None, self.client, self.aliases)
            except Error as exc:
                self.metrics.reload_failures += 1
                self.log("error", "trust not loaded; keeping the previous trust" if current else "trust not loaded",
                         trust_dir=self.config.trust_dir, error=str(exc))
                # Remember the broken fingerprint so we do not retry (and log) every interval.
                if current is not None:
                    self._state = replace(current, fingerprint=seen)
                return False
            policy_digest = trust.policy.digest if trust.policy is not None else ""
            self._state = _State(trust, verifier, policy_digest, seen)
            if current is not None:
                self.metrics.reloads += 1
            self.log("info", "trust loaded", trust_dir=self.config.trust_dir, trust_digest=trust.digest,
                     policy_digest=policy_digest, keys=sorted(trust.keys))
            return True

    def _watch(self) -> None:
        while not self._stop.wait(self.config.reload_interval):
            try:
                self.reload()
            except Exception as exc:  # noqa: BLE001 - the watcher must survive anything a reload throws
                self.log("error", "trust reload crashed", error=f"{type(exc).__name__}: {exc}")

    def close(self) -> None:
        self._stop.set()
        self.executor.shutdown(wait=False, cancel_futures=True)

    # ---- one image ------------------------------------------------------------------------------

    def _resolve(self, key: tuple[str, str, str]) -> str | None:
        desc = self.client.head_manifest(*key)
        return desc.digest if desc is not None else None

    def _check(self, state: _State, image: str) -> ImageVerdict:
        """Resolve the tag now (never from cache), then the cached decision or a fresh verification."""
        from airgap import refs

        try:
            ref = refs.parse(image)
            digest = ref.digest
            if digest is None:
                host = refs.api_host(self.aliases.access_host(ref.registry))
                digest = self._tags.get((host, ref.repository, ref.identifier))
                if digest is None:
                    return ImageVerdict(image, "deny", reasons=(f"{ref} is not in the local registry",))
        except Error as exc:
            return ImageVerdict(image, "deny", error=True, reasons=(str(exc),))
        key = DecisionCache.key(image, digest, state.policy_digest, state.trust.digest)
        hit = self.cache.get(key)
        if hit is not None:
            return replace(hit, cached=True)
        # Verify exactly the digest the tag resolved to (fetched by digest, bytes checked), tag kept for
        # translation and policy globs: no second resolution, no window for a re-tag in between.
        result = state.verifier.verify(str(ref.with_digest(digest)))
        verdict = ImageVerdict(image, result.decision, result.digest, tuple(result.reasons), tuple(result.warnings),
                               error=result.digest is None)
        if result.digest is not None:  # decided on the image's bytes (not a transport failure): cacheable
            self.cache.put(key, verdict)
        return verdict

    # ---- HTTP-independent request handling ------------------------------------------------------

    def handle(self, method: str, path: str, body: bytes | None) -> tuple[int, str, bytes]:
        """Answer one HTTP request; ``body`` is None when it was over ``max_body`` (not read)."""
        path = path.split("?", 1)[0]
        if path == "/validate":
            if method != "POST":
                return 405, JSON, b'{"error":"POST an AdmissionReview v1"}'
            return self.validate(body)
        if method not in ("GET", "HEAD"):
            return 405, JSON, b'{"error":"method not allowed"}'
        if path == "/healthz":
            return 200, TEXT, b"ok\n"
        if path == "/readyz":
            return (200, TEXT, b"ready\n") if self.ready else (503, TEXT, b"trust not loaded\n")
        if path == "/metrics":
            return 200, TEXT, self.metrics.render(self.cache, self.ready).encode()
        return 404, JSON, b'{"error":"not found"}'

    def validate(self, body: bytes | None) -> tuple[int, str, bytes]:
        start = time.monotonic()
        mode = self.config.mode
        request: AdmissionRequest | None = None
        status = 200
        try:
            if body is None:
                status = 413
                decision = malformed("", f"request body is over the {self.config.max_body}-byte limit", mode,
                                     code=413)
            else:
                request = AdmissionRequest.from_bytes(body)
                state = self._state
                if state is None:
                    decision = malformed(request.uid, "trust directory not loaded: cannot verify images", mode,
                                         code=503)
                else:
                    decision = decide_request(request, lambda image: self._check(state, image), mode,
                                              executor=self.executor, deadline=self.config.deadline)
        except ReviewError as exc:
            status = 400
            decision = malformed(_uid_of(body), str(exc), mode)
        except Exception as exc:  # noqa: BLE001 - fail closed with a clear message, never a traceback
            decision = malformed(request.uid if request else _uid_of(body),
                                 f"internal error: {type(exc).__name__}: {exc}", mode, code=500)
            self.log("error", "internal error", error=f"{type(exc).__name__}: {exc}")
        if decision.allowed and status != 200:
            status = 200  # warn/audit: answer a well-formed "allowed" review even to a broken request
        elapsed = time.monotonic() - start
        deadline_hit = any(v.error and "deadline" in v.why for v in decision.verdicts)
        self.metrics.observe(decision.outcome, decision.allowed, elapsed, deadline_hit)
        self._log_decision(request, decision, elapsed)
        return status, JSON, json.dumps(decision.review(), separators=(",", ":")).encode()

    def _log_decision(self, request: AdmissionRequest | None, decision: Decision, elapsed: float) -> None:
        fields: dict[str, Any] = {"uid": decision.uid, "mode": self.config.mode, "allowed": decision.allowed,
                                  "result": decision.outcome, "ms": round(elapsed * 1000, 2)}
        if request is not None:
            fields.update(kind=request.kind, namespace=request.namespace, name=request.name,
                          operation=request.operation)
        fields["images"] = [{"image": v.image, "digest": v.digest, "decision": v.decision, "cached": v.cached,
                             **({"reasons": list(v.reasons)} if v.reasons else {})} for v in decision.verdicts]
        if decision.message:
            fields["message"] = decision.message
        self.log("info" if decision.outcome == "allow" else "warning", "admission review", **fields)


def _uid_of(body: bytes | None) -> str:
    """The request uid of a review we could not fully parse (echoed when it is there), else ''."""
    try:
        uid = json.loads(body or b"")["request"]["uid"]
        return uid if isinstance(uid, str) else ""
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return ""


# ---- HTTP: ASGI app and the uvicorn runner -----------------------------------------------------------

ASGIApp = Any


def asgi_app(service: AdmissionService) -> ASGIApp:
    """An ASGI 3 app over ``service``: reads the body (capped), answers from a worker thread."""
    import asyncio

    http_pool = ThreadPoolExecutor(max_workers=max(8, service.config.workers), thread_name_prefix="airgap-http")
    cap = service.config.max_body

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    http_pool.shutdown(wait=False, cancel_futures=True)
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        body: bytes | None = None
        if method == "POST":
            declared = dict(scope.get("headers") or ()).get(b"content-length", b"")
            if declared.isdigit() and int(declared) > cap:
                body = None  # not read at all: the server closes the connection after answering
            else:
                chunks: list[bytes] = []
                size = 0
                more = True
                while more:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > cap:
                        chunks = []
                        break
                    chunks.append(chunk)
                    more = message.get("more_body", False)
                body = b"".join(chunks) if size <= cap else None
        if path == "/validate":
            loop = asyncio.get_running_loop()
            status, ctype, payload = await loop.run_in_executor(http_pool, service.handle, method, path, body)
        else:
            status, ctype, payload = service.handle(method, path, body)
        headers = [(b"content-type", ctype.encode()), (b"content-length", str(len(payload)).encode())]
        if body is None and method == "POST":
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload if method != "HEAD" else b""})

    return app


@dataclass
class Running:
    """A webhook serving in a background thread (tests, benchmarks): ``url`` and ``stop()``."""

    service: AdmissionService
    port: int
    _server: Any = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._server.should_exit = True
        self._server.force_exit = True  # do not wait for idle keep-alive clients
        self._thread.join(timeout=10)
        self.service.close()


def _uvicorn(service: AdmissionService, cert: str, key: str) -> Any:
    import uvicorn

    config = uvicorn.Config(asgi_app(service), ssl_certfile=cert, ssl_keyfile=key, loop="uvloop", http="httptools",
                            lifespan="on", log_level="warning", access_log=False, timeout_keep_alive=75,
                            limit_concurrency=2048, server_header=False, date_header=False,
                            timeout_graceful_shutdown=3)
    return uvicorn.Server(config)


def _listen(host: str, port: int) -> Any:
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def start(config: WebhookConfig, cert: str, key: str, *, host: str = "127.0.0.1", port: int = 0,
          log: JsonLog | None = None) -> Running:
    """Serve in a background thread on ``host:port`` (0: any free port); returns once it accepts."""
    service = AdmissionService(config, log=log)
    sock = _listen(host, port)
    server = _uvicorn(service, cert, key)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="airgap-webhook", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    if not server.started:
        service.close()
        raise Error("webhook server did not start")
    return Running(service, sock.getsockname()[1], server, thread)


def serve(config: WebhookConfig, cert: str, key: str, *, host: str = "0.0.0.0", port: int = 8443) -> None:  # noqa: S104
    """Serve until SIGTERM/SIGINT (the foreground ``airgap webhook serve``)."""
    service = AdmissionService(config)
    service.log("info", "serving", address=f"{host}:{port}", mode=config.mode, deadline=config.deadline)
    try:
        _uvicorn(service, cert, key).run(sockets=[_listen(host, port)])
    finally:
        service.close()
