"""Webhook faults: registry stopped mid-run, a registry slower than the deadline, garbage, huge and deeply
nested bodies.

Enforce denies with a clear message; warn and audit allow with a warning (audit: an annotation); every
review is answered HTTP 200 with an AdmissionReview (never a 500), the server stays up and answers within
its deadline (never hangs).
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_webhook import Client, Site, admission, make_site, pod_spec, serve

from airgap.admission.server import Running

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


# ---- guarantee 7: depth bombs and huge reviews get a denial, in bounded time, never a 500 -------------------

def nested(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


def bomb_review(site: Site, where: str, *, depth: int = 100_000, pad: int = 0) -> bytes:
    """A review of a signed pod with a depth bomb (or ``pad`` bytes of junk) ``where`` in it."""
    doc = admission("Pod", pod_spec([site.signed]), uid="bomb-" + where.replace(" ", "-"))
    obj = doc["request"]["object"]
    if where == "annotation":
        obj["metadata"]["annotations"] = {"x": "@BOMB@"}
    elif where == "pod spec":
        obj["spec"]["containers"][0]["env"] = "@BOMB@"
    elif where == "oldObject":
        doc["request"]["oldObject"] = {"metadata": {"labels": "@BOMB@"}}
    obj["metadata"]["annotations"] = {**obj["metadata"].get("annotations", {}), "pad": "p" * pad}
    return json.dumps(doc).replace('"@BOMB@"', nested(depth)).encode()


def answer(running: Running, ca: Path, body: bytes, *,
           chunked: bool = False) -> tuple[int, dict[str, Any], bool, float]:
    """POST ``body`` on a fresh connection: status, the review's response, whether the server closed, seconds."""
    ctx = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection(("127.0.0.1", running.port), timeout=30) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as sock:
        head = b"POST /validate HTTP/1.1\r\nHost: webhook\r\nContent-Type: application/json\r\n"
        start = time.monotonic()
        if chunked:
            sock.sendall(head + b"Transfer-Encoding: chunked\r\n\r\n")
            for i in range(0, len(body), 65536):
                part = body[i:i + 65536]
                try:
                    sock.sendall(b"%x\r\n%s\r\n" % (len(part), part))
                except OSError:
                    break  # the server answered and closed before the end: that is the point
            else:
                sock.sendall(b"0\r\n\r\n")
        else:
            try:
                sock.sendall(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
            except OSError:
                pass
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        header, rest = data.split(b"\r\n\r\n", 1)
        length = int(next(line.split(b":")[1] for line in header.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")))
        while len(rest) < length:
            rest += sock.recv(65536)
        elapsed = time.monotonic() - start
        closed = b"connection: close" in header.lower()
        return int(header.split()[1]), json.loads(rest[:length])["response"], closed, elapsed


@pytest.mark.parametrize("mode", MODES)
def test_depth_bombs_are_denied_not_crashed(site: Site, mode: str) -> None:
    running = serve(site, mode)
    try:
        for where in ("annotation", "pod spec", "oldObject"):
            for pad in (0, 1024 * 1024):  # a small body (parsed on the loop) and a large one (parser thread)
                status, resp, _, elapsed = answer(running, site.tls.ca_pem, bomb_review(site, where, pad=pad))
                assert status == 200 and resp["uid"] == "bomb-" + where.replace(" ", "-"), (where, pad, resp)
                expect(mode, resp, "AdmissionReview: line 1: nested deeper than 100 levels")
                assert elapsed < 2.0, (where, pad, elapsed)
        client = Client(running, site.tls.ca_pem)
        assert client.review(admission("Pod", pod_spec([site.signed])))[1]["allowed"] is True
        assert client.call("GET", "/healthz")[0] == 200
        assert "airgap_webhook_decisions_total" in client.call("GET", "/metrics")[1].decode()
    finally:
        running.stop()


def test_huge_reviews_are_denied_with_their_uid_and_not_read(site: Site) -> None:
    running = serve(site)
    cap = running.service.config.max_body
    assert cap == 3 * 1024 * 1024  # the API server writes at most 3 MiB
    try:
        huge = bomb_review(site, "none", pad=cap)  # uid first, as the API server encodes it
        for chunked in (False, True):
            status, resp, closed, elapsed = answer(running, site.tls.ca_pem, huge, chunked=chunked)
            assert status == 200 and closed and elapsed < 3.0, (chunked, status, closed, elapsed)
            assert resp["uid"] == "bomb-none" and resp["allowed"] is False, resp
            assert f"request body is over the {cap}-byte limit" in resp["status"]["message"]
            assert resp["status"]["code"] == 413
        # Just under the cap, and as costly to parse as JSON gets (3 MiB of empty lists): answered on its own
        # merits, in bounded time, while a small review on another connection is not held up behind it.
        junk = json.loads(bomb_review(site, "none"))
        junk["request"]["object"]["metadata"]["annotations"]["pad"] = [[]] * ((cap - 4096) // 3)
        body = json.dumps(junk, separators=(",", ":")).encode()
        assert cap - 8192 < len(body) <= cap
        results: list[Any] = []
        heavy = threading.Thread(target=lambda: results.append(answer(running, site.tls.ca_pem, body)))
        heavy.start()
        time.sleep(0.05)
        small = Client(running, site.tls.ca_pem)
        start = time.monotonic()
        assert small.review(admission("Pod", pod_spec([site.signed])))[1]["allowed"] is True
        small_elapsed = time.monotonic() - start
        heavy.join(30)
        status, resp, _, elapsed = results[0]
        assert status == 200 and resp["uid"] == "bomb-none" and resp["allowed"] is True, resp
        # Bounded by the deadline (the parse costs ~0.4 s on a quiet machine); the small review, parsed on
        # the event loop, does not queue behind it.
        assert elapsed < running.service.config.deadline and small_elapsed < 2.0, (elapsed, small_elapsed)
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
