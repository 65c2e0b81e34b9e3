"""A real Kubernetes API server for tests: etcd + kube-apiserver on loopback, nothing else.

There is no kubelet, scheduler or controller-manager: the API server stores objects and calls admission
webhooks, which is all an admission test needs (Deployments are stored but never produce pods). The recipe
behind the flags is /work/shared/recipes/kube-apiserver.md; ``scripts/install-peers.sh`` installs Debian's
``etcd`` and builds ``kube-apiserver`` and ``kubectl`` (both v1.37.2).

Usage, as a context manager::

    with KubeCluster(tmp_path / "kube") as cluster:
        cluster.kubectl("create", "namespace", "demo")
        cluster.kubectl("apply", "-f", "-", input=manifest_yaml)

or as a fixture in a test module (skips when the binaries are missing, fails under ``CI=true``)::

    kube_cluster = kube_cluster_fixture(scope="module")

    def test_something(kube_cluster: KubeCluster) -> None: ...

What :meth:`KubeCluster.start` does: generates the PKI with ``cryptography`` (a cluster CA; a serving cert for
``IP:127.0.0.1``; an admin client cert with ``O=system:masters``; a service-account RSA key pair), starts etcd
(temp data dir, free loopback ports) and waits for its ``/health``, starts kube-apiserver and waits for
``/readyz``, and writes a kubeconfig for the admin. Every wait has a deadline; a failed start stops whatever it
started and raises :class:`ClusterError` with the tail of the failing process's log. The processes are also
stopped at interpreter exit and, through ``setpriv --pdeathsig``, killed by the kernel if the thread that started
them dies: start a cluster from a thread that outlives it (pytest's main thread does).

:func:`make_webhook_tls` makes a CA and a serving certificate for a webhook server; ``WebhookTLS.ca_bundle`` is
what goes into a webhook configuration's ``clientConfig.caBundle``. The API server reaches webhooks through
``clientConfig.url: https://127.0.0.1:PORT/...`` (no kube-proxy runs, so a ``service`` reference cannot work).

Binaries are looked up in ``$AIRGAP_PEERS/bin`` (default ``~/.cache/airgap/peers/bin``) first, then on PATH:
peers first, because an unrelated ``kubectl`` may be on PATH (e.g. Google Cloud SDK's) at another version.
"""

from __future__ import annotations

import atexit
import base64
import datetime
import ipaddress
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "BINARIES",
    "ClusterError",
    "KubeCluster",
    "KubectlError",
    "WebhookTLS",
    "find_binary",
    "kube_cluster_fixture",
    "make_webhook_tls",
    "missing_binaries",
]

PEER_BIN = Path(os.environ.get("AIRGAP_PEERS", Path.home() / ".cache" / "airgap" / "peers")) / "bin"
BINARIES = ("etcd", "kube-apiserver", "kubectl")
SERVICE_CIDR = "10.0.0.0/24"
ADMIN_GROUP = "system:masters"


class ClusterError(RuntimeError):
    """etcd or kube-apiserver did not start (the message carries the tail of its log)."""


class KubectlError(subprocess.CalledProcessError):
    """A kubectl call failed; unlike CalledProcessError its message includes kubectl's stderr."""

    def __str__(self) -> str:
        return f"{super().__str__()}\nstderr: {(self.stderr or '').strip()}\nstdout: {(self.output or '').strip()}"


def find_binary(name: str) -> str | None:
    """``name`` in ``$AIRGAP_PEERS/bin`` (where install-peers.sh links it), else on PATH, else None."""
    candidate = PEER_BIN / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return shutil.which(name)


def missing_binaries() -> list[str]:
    """Which of etcd, kube-apiserver and kubectl cannot be found."""
    return [name for name in BINARIES if find_binary(name) is None]


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago (start-up retries if someone takes it meanwhile)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- PKI -----------------------------------------------------------------------------------------

def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(path: Path, data: bytes, *, private: bool = False) -> Path:
    path.write_bytes(data)
    if private:
        path.chmod(0o600)
    return path


class _CA:
    """A throw-away certificate authority (EC P-256), valid for two days."""

    def __init__(self, common_name: str) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder().subject_name(self.name).issuer_name(self.name)
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )

    def issue(self, common_name: str, *, organizations: Sequence[str] = (), dns: Sequence[str] = (),
              ips: Sequence[str] = (), server: bool = False,
              client: bool = False) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        """A leaf certificate and its new key: serverAuth with SANs ``dns``/``ips``, and/or clientAuth."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
        subject.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
        usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + (
            [ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder().subject_name(x509.Name(subject)).issuer_name(self.name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
        )
        sans: list[x509.GeneralName] = [x509.DNSName(name) for name in dns]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(self.key, hashes.SHA256()), key


@dataclass(frozen=True)
class WebhookTLS:
    """A webhook server's TLS material: serve with ``cert``/``key``; put ``ca_bundle`` into ``caBundle``."""

    ca: Path
    cert: Path
    key: Path

    @property
    def ca_bundle(self) -> str:
        """The CA certificate, PEM then base64: the value of ``webhooks[].clientConfig.caBundle``."""
        return base64.b64encode(self.ca.read_bytes()).decode("ascii")

    def ssl_context(self) -> ssl.SSLContext:
        """A server-side TLS context with the serving certificate loaded."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context


def make_webhook_tls(directory: Path, *, ips: Sequence[str] = ("127.0.0.1",),
                     dns: Sequence[str] = ("localhost",)) -> WebhookTLS:
    """A new CA (separate from any cluster's) and a serving certificate for ``ips``/``dns``, written to
    ``directory`` as ca.pem, tls.crt, tls.key. Give the names the API server will dial: for
    ``clientConfig.url: https://127.0.0.1:PORT/...`` that is ``IP:127.0.0.1`` (the default); for an in-cluster
    ``service`` reference it would be ``NAME.NAMESPACE.svc``."""
    if not ips and not dns:
        raise ValueError("a webhook serving certificate needs at least one IP or DNS name")
    directory.mkdir(parents=True, exist_ok=True)
    ca = _CA("airgap test webhook CA")
    cert, key = ca.issue((list(dns) or list(ips))[0], dns=dns, ips=ips, server=True)
    return WebhookTLS(
        ca=_write(directory / "ca.pem", _pem_cert(ca.cert)),
        cert=_write(directory / "tls.crt", _pem_cert(cert)),
        key=_write(directory / "tls.key", _pem_key(key), private=True),
    )


@dataclass(frozen=True)
class _ClusterPKI:
    ca: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path
    sa_public: Path
    sa_private: Path


def _cluster_pki(directory: Path) -> _ClusterPKI:
    directory.mkdir(parents=True, exist_ok=True)
    ca = _CA("airgap test cluster CA")
    serving, serving_key = ca.issue(
        "kube-apiserver", server=True, ips=("127.0.0.1", str(next(ipaddress.ip_network(SERVICE_CIDR).hosts()))),
        dns=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"))
    admin, admin_key = ca.issue("airgap-test-admin", organizations=(ADMIN_GROUP,), client=True)
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return _ClusterPKI(
        ca=_write(directory / "ca.pem", _pem_cert(ca.cert)),
        serving_cert=_write(directory / "apiserver.crt", _pem_cert(serving)),
        serving_key=_write(directory / "apiserver.key", _pem_key(serving_key), private=True),
        admin_cert=_write(directory / "admin.crt", _pem_cert(admin)),
        admin_key=_write(directory / "admin.key", _pem_key(admin_key), private=True),
        sa_public=_write(directory / "sa.pub", sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)),
        sa_private=_write(directory / "sa.key", _pem_key(sa_key), private=True),
    )


# ---- processes -----------------------------------------------------------------------------------

def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"


@dataclass
class _Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; always reaps the process."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=timeout)


def _spawn(name: str, argv: list[str], log: Path) -> _Process:
    """Start ``argv`` with stdout+stderr appended to ``log``. Through util-linux ``setpriv --pdeathsig KILL``
    when there is one: the kernel then kills the process if the thread that started it dies (a test run killed
    with SIGKILL, or pytest-timeout's os._exit), which neither ``finally`` nor atexit can cover. (Not a
    preexec_fn: that can deadlock in a process with threads, e.g. one serving a webhook.)"""
    setpriv = shutil.which("setpriv")
    if setpriv:
        argv = [setpriv, "--pdeathsig", "KILL", "--", *argv]
    with log.open("ab") as out:
        popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    return _Process(name, popen, log)


_PORT_TAKEN = ("address already in use",)
_live: set[KubeCluster] = set()


@atexit.register
def _stop_all() -> None:
    for cluster in list(_live):
        cluster.stop()


@dataclass(eq=False)
class KubeCluster:
    """etcd + kube-apiserver under ``workdir`` (created; kept after :meth:`stop` for post-mortems).

    ``start_timeout`` bounds each start-up wait (etcd health, apiserver readiness), ``kubectl_timeout`` each
    kubectl call. ``apiserver_args`` are appended to the recipe's flags (a later flag wins), e.g.
    ``("--enable-admission-plugins=...",)``. After :meth:`start`: ``url``, ``kubeconfig``, ``ca`` (the cluster
    CA), ``admin_cert``/``admin_key``, and ``timings`` (seconds to etcd healthy / apiserver ready).
    """

    workdir: Path
    start_timeout: float = 90.0
    kubectl_timeout: float = 60.0
    apiserver_args: Sequence[str] = ()
    etcd_binary: str | None = None
    apiserver_binary: str | None = None
    kubectl_binary: str | None = None
    url: str = field(default="", init=False)
    kubeconfig: Path = field(default=Path(), init=False)
    timings: dict[str, float] = field(default_factory=dict, init=False)
    _pki: _ClusterPKI | None = field(default=None, init=False, repr=False)
    _etcd: _Process | None = field(default=None, init=False, repr=False)
    _apiserver: _Process | None = field(default=None, init=False, repr=False)

    # -- lifecycle

    def start(self) -> KubeCluster:
        """Start etcd and kube-apiserver and wait until ``/readyz`` says ok; on any failure stop both, raise."""
        if self._apiserver is not None:
            raise RuntimeError("cluster already started")
        binaries = {"etcd": self.etcd_binary, "kube-apiserver": self.apiserver_binary, "kubectl": self.kubectl_binary}
        for name, given in binaries.items():
            binaries[name] = given or find_binary(name)
        missing = [name for name, path in binaries.items() if path is None]
        if missing:
            raise FileNotFoundError(f"not found: {', '.join(missing)} (run scripts/install-peers.sh)")
        self.etcd_binary, self.apiserver_binary, self.kubectl_binary = (
            binaries["etcd"], binaries["kube-apiserver"], binaries["kubectl"])
        self.workdir.mkdir(parents=True, exist_ok=True)
        _live.add(self)
        try:
            self._pki = _cluster_pki(self.workdir / "pki")
            began = time.monotonic()
            etcd_url = self._start_etcd()
            self.timings["etcd"] = time.monotonic() - began
            began = time.monotonic()
            self._start_apiserver(etcd_url)
            self.timings["apiserver"] = time.monotonic() - began
            self.kubeconfig = self._write_kubeconfig()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop kube-apiserver, then etcd (SIGTERM, SIGKILL after 10 s). Idempotent; keeps ``workdir``.
        etcd is stopped even if stopping the apiserver fails; the first failure is raised afterwards."""
        errors: list[BaseException] = []
        for proc in (self._apiserver, self._etcd):
            if proc is not None:
                try:
                    proc.stop()
                except BaseException as exc:  # stop the other one too, then re-raise
                    errors.append(exc)
        _live.discard(self)
        if errors:
            raise errors[0]

    def __enter__(self) -> KubeCluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def processes(self) -> dict[str, subprocess.Popen[bytes]]:
        """The started processes by name (``etcd``, ``kube-apiserver``), running or not."""
        return {p.name: p.popen for p in (self._etcd, self._apiserver) if p is not None}

    @property
    def running(self) -> bool:
        """Both etcd and kube-apiserver are alive."""
        return all(p is not None and p.popen.poll() is None for p in (self._etcd, self._apiserver))

    @property
    def ca(self) -> Path:
        return self._need_pki().ca

    @property
    def admin_cert(self) -> Path:
        return self._need_pki().admin_cert

    @property
    def admin_key(self) -> Path:
        return self._need_pki().admin_key

    @property
    def apiserver_log(self) -> Path:
        return self.workdir / "kube-apiserver.log"

    @property
    def etcd_log(self) -> Path:
        return self.workdir / "etcd.log"

    # -- use

    def kubectl(self, *args: str, input: str | bytes | None = None, check: bool = True,
                timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``kubectl --kubeconfig=<admin kubeconfig> ARGS`` (text in and out). With ``check`` a non-zero
        exit raises :class:`KubectlError` (stderr in the message). ``input`` goes to stdin (``-f -``)."""
        if not self.kubeconfig.is_file() or self.kubectl_binary is None:
            raise RuntimeError("cluster not started")
        if isinstance(input, bytes):
            input = input.decode("utf-8")
        argv = [self.kubectl_binary, f"--kubeconfig={self.kubeconfig}",
                f"--cache-dir={self.workdir / 'kubectl-cache'}", *args]
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        result = subprocess.run(argv, input=input, capture_output=True, text=True, env=env,
                                timeout=timeout or self.kubectl_timeout, check=False)
        if check and result.returncode != 0:
            raise KubectlError(result.returncode, argv, result.stdout, result.stderr)
        return result

    def get_json(self, *args: str) -> Any:
        """``kubectl get ARGS -o json``, parsed."""
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def ssl_context(self) -> ssl.SSLContext:
        """A client TLS context trusting the cluster CA and presenting the admin certificate."""
        context = ssl.create_default_context(cafile=str(self.ca))
        context.load_cert_chain(self.admin_cert, self.admin_key)
        return context

    # -- internals

    def _need_pki(self) -> _ClusterPKI:
        if self._pki is None:
            raise RuntimeError("cluster not started")
        return self._pki

    @staticmethod
    def _failure(proc: _Process, what: str, probe: str) -> ClusterError:
        return ClusterError(f"{proc.name} {what}; last probe: {probe}\nlast lines of {proc.log}:\n{_tail(proc.log)}")

    def _start_with_free_ports(self, launch: Callable[[], tuple[_Process, Callable[[], str | None]]],
                               attempts: int = 3) -> _Process:
        """``launch()`` picks ports, spawns, and returns the process and its probe (None when ready, else why
        not); the probe is polled until ``start_timeout``. A process that exits because a port was taken
        between ``free_port()`` and its bind is retried with new ports (up to ``attempts`` times)."""
        for attempt in range(1, attempts + 1):
            proc, probe = launch()
            deadline = time.monotonic() + self.start_timeout
            why: str | None = "not probed yet"
            while True:
                if proc.popen.poll() is not None:
                    if attempt < attempts and any(s in _tail(proc.log).lower() for s in _PORT_TAKEN):
                        break  # try new ports
                    raise self._failure(proc, f"exited with {proc.popen.returncode} during start-up", str(why))
                why = probe()
                if why is None:
                    return proc
                if time.monotonic() > deadline:
                    error = self._failure(proc, f"not ready within {self.start_timeout:.0f} s", why)
                    proc.stop()
                    raise error
                time.sleep(0.1)
        raise AssertionError("unreachable")

    def _start_etcd(self) -> str:
        data = self.workdir / "etcd-data"
        holder: dict[str, str] = {}

        def launch() -> tuple[_Process, Callable[[], str | None]]:
            shutil.rmtree(data, ignore_errors=True)
            client, peer = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
            holder["url"] = client
            argv = [str(self.etcd_binary), "--name", "airgap-test", "--data-dir", str(data),
                    "--listen-client-urls", client, "--advertise-client-urls", client,
                    "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                    "--initial-cluster", f"airgap-test={peer}", "--initial-cluster-state", "new"]
            self._etcd = _spawn("etcd", argv, self.etcd_log)
            return self._etcd, lambda: _etcd_healthy(client)

        self._start_with_free_ports(launch)
        return holder["url"]

    def _start_apiserver(self, etcd_url: str) -> None:
        pki = self._need_pki()
        cert_dir = self.workdir / "apiserver-certs"
        context = ssl.create_default_context(cafile=str(pki.ca))
        context.load_cert_chain(pki.admin_cert, pki.admin_key)

        def launch() -> tuple[_Process, Callable[[], str | None]]:
            port = free_port()
            self.url = f"https://127.0.0.1:{port}"
            argv = [
                str(self.apiserver_binary),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={port}",
                "--endpoint-reconciler-type=none",
                f"--tls-cert-file={pki.serving_cert}",
                f"--tls-private-key-file={pki.serving_key}",
                f"--client-ca-file={pki.ca}",
                f"--service-account-key-file={pki.sa_public}",
                f"--service-account-signing-key-file={pki.sa_private}",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=RBAC",
                "--disable-admission-plugins=ServiceAccount",
                f"--cert-dir={cert_dir}",
                "--profiling=false",
                *self.apiserver_args,
            ]
            self._apiserver = _spawn("kube-apiserver", argv, self.apiserver_log)
            return self._apiserver, lambda: _readyz(self.url, context)

        self._start_with_free_ports(launch)

    def _write_kubeconfig(self) -> Path:
        pki = self._need_pki()

        def b64(path: Path) -> str:
            return base64.b64encode(path.read_bytes()).decode("ascii")

        config = {  # JSON is YAML: kubectl reads it as is
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "airgap-test", "cluster": {
                "server": self.url, "certificate-authority-data": b64(pki.ca)}}],
            "users": [{"name": "admin", "user": {
                "client-certificate-data": b64(pki.admin_cert), "client-key-data": b64(pki.admin_key)}}],
            "contexts": [{"name": "airgap-test", "context": {"cluster": "airgap-test", "user": "admin"}}],
            "current-context": "airgap-test",
        }
        path = self.workdir / "kubeconfig"
        _write(path, json.dumps(config, indent=2).encode(), private=True)
        return path


def _etcd_healthy(url: str) -> str | None:
    """None when etcd's ``/health`` says ``{"health": "true"}``, else what it said."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:  # noqa: S310 - loopback
            body = response.read()
        return None if json.loads(body).get("health") == "true" else body.decode(errors="replace")[:300]
    except (OSError, ValueError) as exc:
        return repr(exc)


def _readyz(url: str, context: ssl.SSLContext) -> str | None:
    """None when kube-apiserver's ``/readyz`` answers ``ok``, else the error (a 500 lists the failing checks)."""
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=2, context=context) as response:  # noqa: S310
            body = response.read()
        return None if body.strip() == b"ok" else body.decode(errors="replace")[-500:]
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}: {exc.read().decode(errors='replace')[-500:]}"
    except OSError as exc:  # URLError (refused while starting), ssl.SSLError, timeouts
        return repr(exc)


# ---- pytest --------------------------------------------------------------------------------------

def kube_cluster_fixture(*, scope: Literal["session", "package", "module", "class", "function"] = "module",
                         **options: Any) -> Any:
    """A pytest fixture giving a started :class:`KubeCluster` (``options`` go to its constructor), stopped at
    the end of ``scope``. Assign it to a module-level name; that name is the fixture's name::

        kube_cluster = kube_cluster_fixture(scope="module", apiserver_args=("--v=2",))

    Missing binaries skip the test, or fail it under ``CI=true`` (conftest's ``require_tool``)."""
    import pytest

    @pytest.fixture(scope=scope)
    def fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
        from conftest import require_tool

        for name in BINARIES:
            require_tool(name)
        with KubeCluster(tmp_path_factory.mktemp("kube"), **options) as cluster:
            yield cluster

    return fixture
