"""Guarantee 8 for the webhook: fed hostile images, the real `airgap webhook serve` process stays under the
memory limit of the Deployment `airgap webhook manifests` renders, and keeps answering.

The registry serves signature manifests built to exhaust a verifier: 80 junk layers of 4 MiB each (320 MiB
per image) and 12,000 layers (a 2.6 MB manifest). A burst of reviews of pods naming all of them at once is
sent to the webhook (default limits, the Deployment's environment); its resident set is sampled from /proc
(and the kernel's high-water mark read at the end) and must stay under the limit, while every review is
answered HTTP 200 with a denial naming why, within the deadline, and /healthz keeps answering.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.images import OCI_CONFIG, OCI_MANIFEST, Pusher, canonical, push_image
from support.registries import free_port
from test_webhook import Site, make_site, pod_spec

from airgap.admission.manifests import Settings, make_certs, render

MiB = 1024 * 1024
SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
JUNK_LAYERS, JUNK_LAYER_BYTES = 80, 4 * MiB
WIDE_LAYERS, WIDE_DISTINCT = 12_000, 300
IMAGES_PER_KIND = 4
BURST, WAVES = 24, 2


def deployment(site: Site, tmp: Path) -> dict[str, Any]:
    certs = make_certs("airgap-webhook", "airgap-system", tmp / "certs")
    objects = render(Settings(image="registry.local/airgap:test", trust_dir=site.trust, certs_dir=certs.ca.parent))
    return next(o for o in objects if o["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]


def quantity(text: str) -> int:
    units = {"Ki": 1024, "Mi": MiB, "Gi": 1024 * MiB}
    return int(text[:-2]) * units[text[-2:]] if text[-2:] in units else int(text)


def push_hostile(site: Site) -> list[str]:
    """Images whose signature manifests are hostile, in a repository the policy covers."""
    pusher = Pusher(site.reg.url)
    host = site.reg.host
    config = pusher.blob("team/junk", b"{}")
    junk = [pusher.blob("team/junk", os.urandom(JUNK_LAYER_BYTES)) for _ in range(JUNK_LAYERS)]
    small = [pusher.blob("team/wide", os.urandom(300)) for _ in range(WIDE_DISTINCT)]
    pusher.blob("team/wide", b"{}")
    refs = []
    for repo, digests, size, count in (("team/junk", junk, JUNK_LAYER_BYTES, JUNK_LAYERS),
                                       ("team/wide", small, 300, WIDE_LAYERS)):
        for i in range(IMAGES_PER_KIND):
            image = push_image(pusher, repo, f"v{i}")
            layers = [{"mediaType": SIMPLESIGNING, "digest": digests[j % len(digests)], "size": size,
                       "annotations": {"dev.cosignproject.cosign/signature": "MEUCIQ=="}} for j in range(count)]
            manifest = canonical({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                                  "config": {"mediaType": OCI_CONFIG, "digest": config, "size": 2},
                                  "layers": layers})
            pusher.manifest(repo, image.digest.replace(":", "-") + ".sig", manifest, OCI_MANIFEST)
            refs.append(f"{host}/{repo}:v{i}")
    return refs


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    s = make_site(tmp_path_factory.mktemp("memory-site"))
    yield s
    s.reg.stop()


class Sampler(threading.Thread):
    """Samples a process's resident set every 10 ms; kills it past ``kill_at`` (the test then fails)."""

    def __init__(self, pid: int, kill_at: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.kill_at = pid, kill_at
        self.peak = 0
        self.killed = False
        self.stop = threading.Event()

    def status(self, field: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise KeyError(field)

    def run(self) -> None:
        while not self.stop.wait(0.01):
            try:
                rss = self.status("VmRSS")
            except (OSError, KeyError):
                return
            self.peak = max(self.peak, rss)
            if rss > self.kill_at:
                self.killed = True
                os.kill(self.pid, 9)
                return


@pytest.mark.slow
def test_hostile_signatures_keep_the_webhook_under_its_memory_limit(site: Site, tmp_path: Path) -> None:
    container = deployment(site, tmp_path)
    limit = quantity(container["resources"]["limits"]["memory"])
    env = dict(os.environ, **{e["name"]: e["value"] for e in container.get("env", [])})
    hostile = push_hostile(site)
    port = free_port()
    log = (tmp_path / "webhook.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "airgap.cli", "webhook", "serve", "--trust", str(site.trust),
                             "--tls-cert", str(site.tls.cert_pem), "--tls-key", str(site.tls.key_pem),
                             "--host", "127.0.0.1", "--port", str(port)], stderr=log, env=env)
    ctx = ssl.create_default_context(cafile=str(site.tls.ca_pem))
    sampler = Sampler(proc.pid, kill_at=2 * limit)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=5)
                conn.request("GET", "/readyz")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, (tmp_path / "webhook.log").read_text()
                time.sleep(0.1)
        baseline = sampler.status("VmRSS")
        sampler.start()
        results: list[tuple[Any, ...]] = []
        health: list[float] = []

        def review(k: int) -> None:
            images = hostile[k % len(hostile):] + hostile[:k % len(hostile)] + [site.signed]
            body = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
                "uid": str(uuid.uuid4()), "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "operation": "CREATE", "namespace": "apps", "name": f"p{k}",
                "object": {"kind": "Pod", "metadata": {"name": f"p{k}"}, "spec": pod_spec(images)}}})
            start = time.monotonic()
            try:
                c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=30)
                c.request("POST", "/validate", body=body, headers={"Content-Type": "application/json"})
                r = c.getresponse()
                results.append((r.status, json.loads(r.read())["response"], time.monotonic() - start))
            except (OSError, ValueError) as exc:
                results.append(("error", repr(exc), time.monotonic() - start))

        def probe() -> None:
            while len(results) < BURST * WAVES and proc.poll() is None:
                start = time.monotonic()
                try:
                    c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
                    c.request("GET", "/healthz")
                    ok = c.getresponse().status == 200
                except OSError:
                    ok = False
                health.append(time.monotonic() - start if ok else float("inf"))
                time.sleep(0.2)

        prober = threading.Thread(target=probe, daemon=True)
        prober.start()
        for wave in range(WAVES):
            threads = [threading.Thread(target=review, args=(wave * BURST + k,)) for k in range(BURST)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
        prober.join(15)
        sampler.stop.set()
        sampler.join(5)
        assert not sampler.killed, f"webhook killed at {sampler.peak / MiB:.0f} MiB (limit {limit / MiB:.0f} MiB)"
        high_water = sampler.status("VmHWM")
        print(f"\nwebhook RSS: baseline {baseline / MiB:.0f} MiB, sampled peak {sampler.peak / MiB:.0f} MiB, "
              f"high-water {high_water / MiB:.0f} MiB, limit {limit / MiB:.0f} MiB; "
              f"{len(results)} reviews, slowest {max(r[2] for r in results):.2f} s; "
              f"/healthz slowest {max(health):.3f} s")
        assert high_water < limit, f"peak {high_water / MiB:.0f} MiB over the Deployment's {limit / MiB:.0f} MiB"
        assert len(results) == BURST * WAVES
        for status, resp, elapsed in results:
            assert status == 200 and resp["allowed"] is False, (status, resp)
            message = resp["status"]["message"]
            for ref in hostile:
                why = message.split(f"{ref}: ", 1)[1]
                # the webhook's own budget, or verification's per-image caps (config.Limits), whichever is hit
                assert why.startswith(("signatures over the webhook's per-image limit",
                                       "manifests and signatures over the webhook's per-image limit",
                                       "more than 1000 signature layers", "webhook busy",
                                       "not verified within the webhook's 8s deadline")) or any(
                    f"(limit {cap})" in why for cap in ("max_signature_layers", "max_attached_bytes")), why
            if f"{site.signed}: " in message:  # the good image is only ever denied for want of time
                why = message.split(f"{site.signed}: ", 1)[1]
                assert why.startswith(("webhook busy", "not verified within the webhook's 8s deadline")), why
            assert elapsed < 8.0 + 1.5, elapsed
        assert health and max(health) < 2.0, health
        assert proc.poll() is None
    finally:
        sampler.stop.set()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
