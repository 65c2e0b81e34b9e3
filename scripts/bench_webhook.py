#!/usr/bin/env python3
"""Benchmark the admission webhook on loopback: cached and uncached reviews/s and p50/p99 latency.

Sets up a real local registry (Debian docker-registry) with key-signed images, a trust directory and TLS,
starts the webhook in a child process (``--stack uvicorn``: what ``airgap webhook serve`` runs; ``stdlib``:
ThreadingHTTPServer over the same AdmissionService, for comparison; ``granian`` when installed), then drives
it from another process with N concurrent keep-alive HTTPS clients: ``wrk`` (a C load generator, like the
API server's Go client; runs --wrk-seconds) when it is on PATH, else an asyncio client (bounded by --requests
and --seconds); ``--driver`` picks one. The CPU seconds the load generator, the webhook and the registry
spent in each run are printed too (the machine has 2 cores: what the driver burns, the webhook cannot use).
Scenarios:

* ``cached``: ``/validate`` of one pod of --images images by tag, warmed; every review re-resolves each tag (HEAD
  at the registry: a tag the validating webhook admits unpinned is pulled by name) and hits the decision cache;
* ``cached-1image``: the same with a pod of one image (one tag resolution per review);
* ``cached-digest``: the same images pinned by digest (no registry round trip at all);
* ``mutate``: ``/mutate`` of the pod of --images tags, warmed: each tag's verified digest is reused within the
  tag window (--tag-reuse-window, default 3 s: one coalesced look-up per tag per window), decisions cached, a
  JSONPatch pinning every image returned;
* ``validate-pinned``: ``/validate`` of that pod as the mutating webhook left it (``repo:tag@sha256:...``);
* ``pinned-pod``: both, alternately (what the API server sends for each pod created: one mutating review,
  then one validating review of the patched pod); reviews/s counts both, so pods/s is half;
* ``uncached``: the webhook runs with the cache off, so every review verifies every image afresh.

Targets (2 cores): with digest pinning, a cached pod of 3 tags (``mutate``, ``validate-pinned``, ``pinned-pod``)
>= 2,500 reviews/s with p99 <= 20 ms; the unpinned tag path (``cached``) >= 1,000/s; uncached pod of 3 images
p99 <= 100 ms.
Usage: scripts/bench_webhook.py [--stack uvicorn] [--clients 16] [--requests 5000] [--seconds 15] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import benchlib
from benchlib import cpu_seconds

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

TARGETS = {"cached": (1000.0, 20.0), "cached-1image": (1000.0, 20.0), "cached-digest": (1000.0, 20.0),
           "mutate": (2500.0, 20.0), "validate-pinned": (2500.0, 20.0), "pinned-pod": (2500.0, 20.0),
           "uncached": (None, 100.0)}


def review(images: list[str], uid: str | None = None) -> bytes:
    containers = [{"name": f"c{i}", "image": image} for i, image in enumerate(images)]
    return json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": uid or str(uuid.uuid4()), "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"}, "operation": "CREATE",
        "namespace": "bench", "name": "bench-pod", "userInfo": {"username": "bench"},
        "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bench-pod", "namespace": "bench"},
                   "spec": {"containers": containers}}}}).encode()


# ---- server side (child process) --------------------------------------------------------------------

def serve_stdlib(config: Any, cert: str, key: str, port: int) -> None:
    """ThreadingHTTPServer + TLS over the same AdmissionService (a thread per keep-alive connection)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from airgap.admission.server import AdmissionService

    service = AdmissionService(config)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            self.request = context.wrap_socket(self.request, server_side=True)
            super().setup()

        def log_message(self, *args: object) -> None:
            pass

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length <= config.max_body else None
            status, ctype, payload = service.handle(self.command, self.path, body)
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = _answer

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


def serve_granian(config: Any, cert: str, key: str, port: int) -> None:
    os.environ["AIRGAP_BENCH_CONFIG"] = json.dumps(config.__dict__ | {"registry": None})
    from granian import Granian  # type: ignore[import-not-found]

    Granian("bench_webhook:granian_app", address="127.0.0.1", port=port, interface="asgi", workers=1,
            ssl_cert=Path(cert), ssl_key=Path(key), log_enabled=False, factory=True).serve()


def granian_app() -> Any:
    from airgap.admission.server import AdmissionService, WebhookConfig, asgi_app

    return asgi_app(AdmissionService(WebhookConfig(**json.loads(os.environ["AIRGAP_BENCH_CONFIG"]))))


def child_main(args: argparse.Namespace) -> None:
    from airgap.admission.server import WebhookConfig, serve

    config = WebhookConfig(trust_dir=args.trust, cache_ttl=0 if args.no_cache else 300)
    sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - per-request JSON logs are still written
    if args.serve == "uvicorn":
        serve(config, args.cert, args.key, host="127.0.0.1", port=args.port)
    elif args.serve == "stdlib":
        serve_stdlib(config, args.cert, args.key, args.port)
    else:
        sys.path.insert(0, str(Path(__file__).parent))
        serve_granian(config, args.cert, args.key, args.port)


# ---- client side ------------------------------------------------------------------------------------

async def _client(host: str, port: int, ctx: ssl.SSLContext, calls: list[tuple[str, bytes]], stop_at: float,
                  budget: list[int], latencies: list[float], errors: list[str]) -> None:
    reader, writer = await asyncio.open_connection(host, port, ssl=ctx)
    i = 0
    while budget[0] > 0 and time.monotonic() < stop_at:
        budget[0] -= 1
        path, body = calls[i % len(calls)]
        i += 1
        head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        start = time.perf_counter()
        writer.write(head + body)
        header = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in header.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        payload = await reader.readexactly(length)
        latencies.append(time.perf_counter() - start)
        if b'"allowed":true' not in payload:
            errors.append(payload.decode()[:300])
    writer.close()


async def _drive(port: int, ca: str, bodies: list[tuple[str, bytes]], clients: int, requests: int, seconds: float
                 ) -> dict[str, Any]:
    ctx = ssl.create_default_context(cafile=ca)
    latencies: list[float] = []
    errors: list[str] = []
    budget = [requests]
    start = time.perf_counter()
    await asyncio.gather(*(_client("127.0.0.1", port, ctx, bodies, time.monotonic() + seconds, budget, latencies,
                                   errors) for _ in range(clients)))
    wall = time.perf_counter() - start
    lat = sorted(latencies)

    def pct(p: float) -> float:
        return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 2) if lat else float("nan")

    return {"requests": len(lat), "seconds": round(wall, 2), "rps": round(len(lat) / wall, 1),
            "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": pct(1.0), "errors": len(errors),
            "first_error": errors[0] if errors else None}


def drive(port: int, ca: str, bodies: list[tuple[str, bytes]], clients: int, requests: int, seconds: float
          ) -> dict[str, Any]:
    try:
        import uvloop

        return uvloop.run(_drive(port, ca, bodies, clients, requests, seconds))
    except ImportError:
        return asyncio.run(_drive(port, ca, bodies, clients, requests, seconds))


_WRK_LUA = """\
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local requests = {%s}
local turn = 0
function request()
  turn = turn %% #requests + 1
  return requests[turn]
end
function response(status, headers, body)
  if not string.find(body, '"allowed":true', 1, true) then
    bad = bad + 1
    if first == "" then first = string.sub(body, 1, 300) end
  end
end
"""


def drive_wrk(port: int, calls: list[tuple[str, bytes]], clients: int, seconds: float, work: Path) -> dict[str, Any]:
    """Drive with wrk (one thread, ``clients`` keep-alive TLS connections) for ``seconds``, each connection
    sending the ``(path, body)`` calls in turn."""
    lua = _WRK_LUA % ", ".join(f'wrk.format(nil, "{path}", nil, [==[{body.decode()}]==])' for path, body in calls)
    return benchlib.run_wrk(lua, f"https://127.0.0.1:{port}/validate", clients=clients, seconds=seconds,
                            timeout="10s", script=work / "review.lua")


# ---- setup ------------------------------------------------------------------------------------------

def setup(work: Path, count: int) -> tuple[Any, list[str], list[str], Path]:
    from cryptography.hazmat.primitives.asymmetric import ec
    from support.images import Pusher, push_image
    from support.registries import start_registry
    from support.trustdirs import airgap_policy, cip, key_authority, write_trust

    from airgap.keys.private import KeySigner
    from airgap.keys.public import public_pem
    from airgap.oci.registry import RegistryClient
    from airgap.signing.sign import sign_image

    reg = start_registry(work / "registry")
    signer = KeySigner(ec.generate_private_key(ec.SECP256R1()))
    pusher = Pusher(reg.url)
    tags, pinned = [], []
    client = RegistryClient()
    for i in range(count):
        image = push_image(pusher, f"bench/app{i}", "1.0")
        tags.append(f"{reg.host}/bench/app{i}:1.0")
        pinned.append(f"{reg.host}/bench/app{i}@{image.digest}")
        sign_image(tags[-1], signer, client=client)
    policy = cip("bench", key_authority("release"), f"{reg.host}/bench/**") + airgap_policy("deny")
    trust = write_trust(work / "trust", keys={"release": public_pem(signer.public_key)}, policy=policy)
    return reg, tags, pinned, trust


def start_child(stack: str, trust: Path, tls: Any, no_cache: bool) -> tuple[subprocess.Popen[bytes], int]:
    from support.registries import free_port

    port = free_port()
    argv = [sys.executable, __file__, "--serve", stack, "--port", str(port), "--trust", str(trust),
            "--cert", str(tls.cert_pem), "--key", str(tls.key_pem)] + (["--no-cache"] if no_cache else [])
    proc = subprocess.Popen(argv, cwd=ROOT)
    ctx = ssl.create_default_context(cafile=str(tls.ca_pem))
    deadline = time.monotonic() + 20
    import http.client

    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=2)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"{stack} webhook did not become ready")


def check_patch(port: int, ca: str, pod: bytes, patched: bytes) -> None:
    """The mutating webhook's patch pins every image of ``pod`` to the digests of ``patched`` (else stop)."""
    import base64
    import http.client

    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ssl.create_default_context(cafile=ca), timeout=10)
    conn.request("POST", "/mutate", body=pod, headers={"Content-Type": "application/json"})
    answer = json.loads(conn.getresponse().read())["response"]
    conn.close()
    want = [c["image"] for c in json.loads(patched)["request"]["object"]["spec"]["containers"]]
    got = [op["value"] for op in json.loads(base64.b64decode(answer.get("patch", "W10=")))]
    if got != want:
        raise SystemExit(f"the mutating webhook did not pin the pod: {answer}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stack", default="uvicorn", help="uvicorn | stdlib | granian (comma-separated for several)")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--uncached-clients", type=int, default=4)
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--images", type=int, default=3)
    ap.add_argument("--scenarios", default="cached,cached-1image,cached-digest,mutate,validate-pinned,pinned-pod,"
                                           "uncached")
    ap.add_argument("--driver", choices=("auto", "wrk", "asyncio"), default="auto",
                    help="load generator: wrk when on PATH (auto), else the asyncio client")
    ap.add_argument("--wrk-seconds", type=float, default=6.0, help="how long wrk drives each scenario")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--trust", help=argparse.SUPPRESS)
    ap.add_argument("--cert", help=argparse.SUPPRESS)
    ap.add_argument("--key", help=argparse.SUPPRESS)
    ap.add_argument("--no-cache", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        child_main(args)
        return
    from support.registries import make_tls

    driver = args.driver if args.driver != "auto" else ("wrk" if shutil.which("wrk") else "asyncio")
    if driver == "wrk" and not shutil.which("wrk"):
        raise SystemExit("wrk is not on PATH (apt-get install wrk), or use --driver asyncio")

    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="airgap-bench-webhook-") as tmp:
        work = Path(tmp)
        reg, tags, pinned, trust = setup(work, args.images)
        tls = make_tls(work / "tls")
        try:
            for stack in args.stack.split(","):
                for scenario in args.scenarios.split(","):
                    proc, port = start_child(stack, trust, tls, no_cache=scenario == "uncached")
                    try:
                        images = {"cached-digest": pinned, "cached-1image": tags[:1]}.get(scenario, tags)
                        pod = review(images)
                        patched = review([f"{tag}@{ref.rsplit('@', 1)[1]}" for tag, ref in zip(tags, pinned,
                                                                                                strict=True)])
                        calls = {"mutate": [("/mutate", pod)], "validate-pinned": [("/validate", patched)],
                                 "pinned-pod": [("/mutate", pod), ("/validate", patched)]
                                 }.get(scenario, [("/validate", pod)])
                        drive(port, str(tls.ca_pem), calls, 1, 3, 10)  # warm: connection, caches, imports
                        if scenario in ("mutate", "pinned-pod"):
                            check_patch(port, str(tls.ca_pem), pod, patched)
                        clients = args.uncached_clients if scenario == "uncached" else args.clients
                        requests = args.requests if scenario != "uncached" else max(200, args.requests // 10)
                        cpu0 = cpu_seconds(proc.pid), cpu_seconds(reg.process.pid)
                        if driver == "wrk":
                            out = drive_wrk(port, calls, clients, args.wrk_seconds, work)
                        else:
                            own = resource.getrusage(resource.RUSAGE_SELF)
                            out = drive(port, str(tls.ca_pem), calls, clients, requests, args.seconds)
                            end = resource.getrusage(resource.RUSAGE_SELF)
                            out["driver_cpu"] = round(end.ru_utime + end.ru_stime - own.ru_utime - own.ru_stime, 2)
                        out["webhook_cpu"] = round(cpu_seconds(proc.pid) - cpu0[0], 2)
                        out["registry_cpu"] = round(cpu_seconds(reg.process.pid) - cpu0[1], 2)
                    finally:
                        proc.terminate()
                        proc.wait(timeout=10)
                    rps_target, p99_target = TARGETS[scenario]
                    out.update(stack=stack, driver=driver, scenario=scenario, clients=clients, images=len(images),
                               meets_target=(out["errors"] == 0 and out["p99_ms"] <= p99_target
                                             and (rps_target is None or out["rps"] >= rps_target)))
                    results.append(out)
                    if not args.json:
                        print(f"{stack:8} {scenario:14} clients={clients:<3} {out['requests']:>6} reviews "
                              f"{out['rps']:>8.1f}/s  p50 {out['p50_ms']:>6.2f} ms  p99 {out['p99_ms']:>6.2f} ms  "
                              f"errors {out['errors']}  {'OK' if out['meets_target'] else 'MISSES TARGET'}  "
                              f"[{driver}; cpu s: driver {out['driver_cpu']}, webhook {out['webhook_cpu']}, "
                              f"registry {out['registry_cpu']} in {out['seconds']} s]", flush=True)
        finally:
            reg.stop()
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
