#!/usr/bin/env python3
"""Check the image scripts/build-image.sh built, the way a cluster runs it, and time its start.

    python3 scripts/check_image.py [--image localhost/airgap:0.1.0 | --archive airgap.oci.tar] [--runs 3] [--json]

With podman (confined as in tests/support/podman.py), always ``--read-only`` and as user 65532:65532:
1. ``--help`` (network none): the entrypoint is ``airgap``;
2. ``webhook certs`` into a mounted directory: the image makes its own serving certificate;
3. the image is pushed (``podman push``) to Debian's ``docker-registry`` on loopback as ``tools/airgap`` and
   ``app/airgap`` (when ``docker-registry`` is installed; scripts/install-peers.sh);
4. ``webhook serve --trust ... --tls-cert ... --tls-key ...`` on a free loopback port (network host), with a
   trust directory whose policy allow-lists ``tools/**`` and denies what no policy matches: cold start until
   ``/healthz`` answers over HTTPS (measured ``--runs`` times; the CA from step 2 is verified), ``/readyz``,
   one AdmissionReview admitted (``tools/airgap:TAG``, resolved at the registry) and one denied
   (``app/airgap``), and that SIGTERM stops it.
Exit 0 when every check passed; the measurements are printed (``--json`` for a machine).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import ssl
import statistics
import sys
import tempfile
import time
import tomllib
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.podman import Podman, running_container, unavailable  # noqa: E402
from support.registries import find_tool, start_registry  # noqa: E402

USER = "65532:65532"
SERVICE, NAMESPACE = "airgap-webhook", "airgap-system"
POLICY = """\
apiVersion: airgap.dev/v1alpha1
kind: AirgapPolicy
metadata: {name: settings}
spec:
  noMatchPolicy: deny
  allow: ["{host}/tools/**"]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def https(port: int, ca: Path, method: str, path: str, body: bytes | None = None,
          timeout: float = 5.0) -> tuple[int, bytes]:
    """One HTTPS request to 127.0.0.1:port, verifying the webhook's certificate against ``ca`` for its
    Service name (what the API server does)."""
    context = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw, \
            context.wrap_socket(raw, server_hostname=f"{SERVICE}.{NAMESPACE}.svc") as tls:
        head = f"{method} {path} HTTP/1.1\r\nHost: {SERVICE}\r\nConnection: close\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        tls.sendall(head.encode() + b"\r\n" + (body or b""))
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[1]


def healthy(port: int, ca: Path) -> bool:
    try:
        return https(port, ca, "GET", "/healthz", timeout=1.0)[0] == 200
    except (OSError, ValueError, IndexError):
        return False


def review(image: str) -> bytes:
    spec = {"containers": [{"name": "c", "image": image}]}
    return json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": str(uuid.uuid4()), "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"}, "operation": "CREATE",
        "namespace": "apps", "name": "p", "userInfo": {"username": "check"},
        "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "apps"},
                   "spec": spec}}}).encode()


def check(condition: bool, what: str, results: dict[str, Any]) -> None:
    results.setdefault("checks", {})[what] = bool(condition)
    if not condition:
        raise SystemExit(f"check_image: FAILED: {what}\n{json.dumps(results, indent=2)}")


def main() -> int:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", default=f"localhost/airgap:{version}")
    parser.add_argument("--archive", type=Path, help="load this OCI archive first (podman load)")
    parser.add_argument("--state", type=Path, help="podman state directory [build-image.sh's]")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    opts = parser.parse_args()
    if reason := unavailable():
        print(f"check_image: {reason}", file=sys.stderr)
        return 1
    podman = Podman.create(opts.state)
    results: dict[str, Any] = {"image": opts.image}
    if opts.archive:
        out = podman.run("load", "-q", "-i", str(opts.archive.resolve())).stdout.decode()
        results["loaded"] = out.strip()
        opts.image = out.strip().rsplit(" ", 1)[-1]  # "Loaded image: NAME"
        results["image"] = opts.image
    info = json.loads(podman.run("image", "inspect", opts.image).stdout)[0]
    results["digest"] = info.get("Digest")
    results["config"] = {k: info["Config"].get(k) for k in ("User", "Entrypoint", "Cmd")}
    check(info["Config"].get("User") == USER, f"runs as {USER}", results)
    common = ["--read-only", "--user", USER]

    # 1. --help: the entrypoint is airgap, and the CLI's cold start
    help_times = []
    for _ in range(max(1, opts.runs)):
        t0 = time.monotonic()
        proc = podman.run("run", "--rm", "--network=none", *common, opts.image, "--help", check=False)
        help_times.append(time.monotonic() - t0)
        check(proc.returncode == 0 and b"webhook" in proc.stdout, "--help lists the commands", results)
    results["help_seconds"] = {"min": round(min(help_times), 3), "median": round(statistics.median(help_times), 3)}

    with tempfile.TemporaryDirectory(prefix="check-image-", dir=podman.state / "tmp") as tmp:
        work = Path(tmp)
        # 2. the image makes its own serving certificate (a directory the user 65532 may write)
        certs = work / "certs"
        certs.mkdir()
        os.chown(certs, 65532, 65532)
        proc = podman.run("run", "--rm", "--network=none", *common, "-v", f"{certs}:/out", opts.image,
                          "webhook", "certs", "--service", SERVICE, "--namespace", NAMESPACE, "-o", "/out",
                          check=False)
        check(proc.returncode == 0 and (certs / "tls.key").exists(), "webhook certs writes ca/tls", results)
        # 3. a registry holding the image under an allow-listed and an unmatched repository
        registry = None
        host = "127.0.0.1:9"  # nothing listens there: without a registry, both reviews must be denied
        if find_tool("docker-registry"):
            registry = start_registry(work / "registry")
            host = registry.host
            for repo in ("tools", "app"):
                t0 = time.monotonic()
                podman.run("push", "-q", "--tls-verify=false", "--digestfile", str(work / "digest"), opts.image,
                           f"docker://{host}/{repo}/airgap:{version}")
                results.setdefault("push_seconds", []).append(round(time.monotonic() - t0, 2))
            results["pushed_digest"] = (work / "digest").read_text().strip()
        else:
            results["note"] = "docker-registry not installed: reviews checked against a registry that is down"
        trust = work / "trust"
        trust.mkdir()
        (trust / "policy.yaml").write_text(POLICY.replace("{host}", host))

        # 4. webhook serve: cold start to /healthz, then a review allowed and one denied
        ready_times = []
        for run in range(max(1, opts.runs)):
            port = free_port()
            options = ["--network=host", *common, "-v", f"{trust}:/etc/airgap/trust:ro",
                       "-v", f"{certs}:/etc/airgap/tls:ro"]
            args = ["webhook", "serve", "--trust", "/etc/airgap/trust", "--tls-cert", "/etc/airgap/tls/tls.crt",
                    "--tls-key", "/etc/airgap/tls/tls.key", "--host", "127.0.0.1", "--port", str(port)]
            ca = certs / "ca.crt"
            with running_container(podman, opts.image, args, options=options, timeout=60,
                                   ready=lambda port=port, ca=ca: healthy(port, ca)) as ctr:
                assert ctr.ready_after is not None
                ready_times.append(ctr.ready_after)
                if run == 0:
                    status, _ = https(port, ca, "GET", "/readyz")
                    check(status == 200, "/readyz answers 200", results)
                    status, body = https(port, ca, "POST", "/validate", review(f"{host}/tools/airgap:{version}"))
                    allowed = json.loads(body)["response"]
                    results["allowed_response"] = allowed
                    check(status == 200 and allowed["allowed"] is (registry is not None),
                          "an allow-listed image is admitted" if registry else "registry down: denied", results)
                    status, body = https(port, ca, "POST", "/validate", review(f"{host}/app/airgap:{version}"))
                    denied = json.loads(body)["response"]
                    check(status == 200 and denied["allowed"] is False, "an unmatched image is denied", results)
                    results["denied_message"] = denied.get("status", {}).get("message")
                    results["log_first_line"] = ctr.output().splitlines()[:1]
            check(ctr.process.returncode == 0, f"SIGTERM stops the webhook cleanly (exit {ctr.process.returncode})",
                  results)
        if registry is not None:
            registry.stop()
        results["ready_seconds"] = {"min": round(min(ready_times), 3),
                                    "median": round(statistics.median(ready_times), 3),
                                    "all": [round(t, 3) for t in ready_times]}

    if opts.json:
        print(json.dumps(results, indent=2))
    else:
        for what in results["checks"]:
            print(f"ok    {what}")
        print(f"image {results['image']} {results['digest']}")
        print(f"cold start to /healthz: {results['ready_seconds']}")
        print(f"`--help` in a container: {results['help_seconds']}")
        print(f"denied: {results['denied_message']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
