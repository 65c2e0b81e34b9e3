"""Webhook faults: registry stopped mid-run, a registry slower than the deadline, garbage and huge bodies.

Enforce denies with a clear message; warn and audit allow with a warning (audit: an annotation); every
review is answered HTTP 200 with an AdmissionReview, the server stays up and answers within its deadline
(never hangs).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_webhook import Client, Site, admission, make_site, pod_spec, serve

MODES = ("enforce", "warn", "audit")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    s = make_site(tmp_path_factory.mktemp("faults-site"))
    yield s
    s.reg.stop()


class BlackHole:
    """A 'registry' that accepts connections and never answers: slower than any deadline."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.sock.getsockname()[1]}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


def expect(mode: str, resp: dict[str, object], text: str) -> None:
    if mode == "enforce":
        assert resp["allowed"] is False and text in resp["status"]["message"], resp  # type: ignore[index]
    else:
        assert resp["allowed"] is True, resp
        where = resp["warnings"] if mode == "warn" else resp["auditAnnotations"].values()  # type: ignore[union-attr]
        assert any(text in w for w in where), resp  # type: ignore[union-attr]


@pytest.mark.parametrize("mode", MODES)
def test_garbage_and_huge_bodies(site: Site, mode: str) -> None:
    running = serve(site, mode, max_body=64 * 1024)
    try:
        client = Client(running, site.tls.ca_pem)
        status, resp = client.review(b"\x00\xffnot json at all")
        assert status == 200 and resp["uid"] == ""
        expect(mode, resp, "not JSON")
        status, resp = client.review(b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", '
                                     b'"request": {"uid": "u9", "kind": {"group": "", "version": "v1", "kind": "Pod"}, '
                                     b'"operation": "CREATE", "object": {"spec": {"containers": "nope"}}}}')
        assert status == 200 and resp["uid"] == "u9"
        expect(mode, resp, "containers is not a list")
        big = Client(running, site.tls.ca_pem)
        status, resp = big.review(b'{"pad": "' + b"x" * (512 * 1024) + b'"}')
        assert status == 200
        expect(mode, resp, "over the 65536-byte limit")
        # Still up, still right.
        assert client.review(admission("Pod", pod_spec([site.signed])))[1]["allowed"] is True
        assert client.call("GET", "/healthz")[0] == 200
    finally:
        running.stop()


def test_slow_registry_beyond_the_deadline(site: Site) -> None:
    hole = BlackHole()
    alias = (f"{site.reg.host}={hole.host}",)
    servers = {mode: serve(site, mode, deadline=0.5, aliases=alias) for mode in MODES}
    try:
        for mode, running in servers.items():
            client = Client(running, site.tls.ca_pem)
            start = time.monotonic()
            resp = client.review(admission("Pod", pod_spec([site.signed, site.unsigned])))[1]
            assert time.monotonic() - start < 2.0, "the webhook waited past its deadline"
            expect(mode, resp, "not verified within the webhook's 0.5s deadline")
            assert client.call("GET", "/healthz")[0] == 200
            metrics = client.call("GET", "/metrics")[1].decode()
            assert "airgap_webhook_deadline_exceeded_total 1" in metrics
    finally:
        for running in servers.values():
            running.stop()
        hole.close()


def test_registry_stopped_mid_run(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    servers = {mode: serve(site, mode) for mode in MODES}
    try:
        clients = {mode: Client(r, site.tls.ca_pem) for mode, r in servers.items()}
        for client in clients.values():
            assert client.review(admission("Pod", pod_spec([site.signed])))[1]["allowed"] is True
        site.reg.stop()
        for mode, client in clients.items():
            start = time.monotonic()
            resp = client.review(admission("Pod", pod_spec([site.signed])))[1]  # cached, but the tag cannot resolve
            assert time.monotonic() - start < 5.0
            expect(mode, resp, site.signed)
            text = resp["status"]["message"] if mode == "enforce" else str(resp)
            assert "failed after" in text or "ConnectionError" in text or "refused" in text, text
            assert client.call("GET", "/healthz")[0] == 200
    finally:
        for running in servers.values():
            running.stop()
