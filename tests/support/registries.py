"""Start real registries for tests and benchmarks: Debian's ``docker-registry`` (distribution 2.8) and
distribution v3's ``registry`` (serves the OCI Referrers API), plain or with TLS + htpasswd basic auth."""

from __future__ import annotations

import datetime
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

PEER_BIN = Path(os.environ.get("AIRGAP_PEERS", Path.home() / ".cache" / "airgap" / "peers")) / "bin"


def find_tool(name: str) -> str | None:
    """A peer binary: the pinned build install-peers.sh put in the peers dir first (a machine may have another
    version on PATH, e.g. a cloud SDK's older kubectl), else on PATH."""
    candidate = PEER_BIN / name
    if candidate.exists():
        return str(candidate)
    return shutil.which(name)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class TLSMaterial:
    ca_pem: Path
    cert_pem: Path
    key_pem: Path


def make_tls(directory: Path, hostnames: tuple[str, ...] = ("localhost",),
             ips: tuple[str, ...] = ("127.0.0.1",)) -> TLSMaterial:
    """A self-signed CA and a server certificate for loopback, made with cryptography."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "airgap test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(h) for h in hostnames]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    out = TLSMaterial(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    out.ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    out.cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    out.key_pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
    return out


@dataclass
class Registry:
    """A running registry process on 127.0.0.1."""

    host: str  # "127.0.0.1:PORT"
    root: Path
    process: subprocess.Popen[bytes]
    tls: TLSMaterial | None = None
    username: str | None = None
    password: str | None = None
    log: Path = field(default=Path("/dev/null"))

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


BINARIES = {"distribution2": "docker-registry", "distribution3": "registry", "referrers": "referrers-registry"}


def start_registry(root: Path, *, kind: str = "distribution2", tls: bool = False,
                   auth: tuple[str, str] | None = None, port: int | None = None) -> Registry:
    """Start a registry on 127.0.0.1: ``distribution2`` (Debian's docker-registry), ``distribution3``
    (distribution v3), or ``referrers`` (go-containerregistry's registry with the Referrers API on)."""
    binary = find_tool(BINARIES[kind])
    if binary is None:
        raise FileNotFoundError(f"registry binary for {kind} not found (run scripts/install-peers.sh)")
    root.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    if kind == "referrers":
        assert not tls and not auth, "the referrers registry serves plain HTTP without auth"
        (root / "blobs").mkdir(exist_ok=True)
        return _wait_ready(_spawn([binary, "--address", f"127.0.0.1:{port}", "--disk", str(root / "blobs")],
                                  root, port, None, None))
    lines = [
        "version: 0.1",
        "log:",
        "  level: error",
        "  accesslog:",
        "    disabled: true",
        "storage:",
        "  cache:",  # as in Debian's shipped /etc/docker/registry/config.yml
        "    blobdescriptor: inmemory",
        "  filesystem:",
        f"    rootdirectory: {root / 'data'}",
        "  delete:",
        "    enabled: true",
        "  maintenance:",
        "    uploadpurging:",
        "      enabled: false",
        "http:",
        f"  addr: 127.0.0.1:{port}",
    ]
    material = None
    if tls:
        material = make_tls(root / "tls")
        lines += ["  tls:", f"    certificate: {material.cert_pem}", f"    key: {material.key_pem}"]
    if auth:
        import bcrypt

        htpasswd = root / "htpasswd"
        hashed = bcrypt.hashpw(auth[1].encode(), bcrypt.gensalt(rounds=4)).decode()
        htpasswd.write_text(f"{auth[0]}:{hashed}\n")
        lines += ["auth:", "  htpasswd:", "    realm: airgap-test", f"    path: {htpasswd}"]
    config = root / "config.yml"
    config.write_text("\n".join(lines) + "\n")
    return _wait_ready(_spawn([binary, "serve", str(config)], root, port, material, auth))


def _spawn(argv: list[str], root: Path, port: int, material: TLSMaterial | None,
           auth: tuple[str, str] | None) -> Registry:
    log = root / "registry.log"
    env = dict(os.environ, OTEL_TRACES_EXPORTER="none", OTEL_SDK_DISABLED="true")
    with log.open("wb") as logf:
        proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, env=env)
    return Registry(f"127.0.0.1:{port}", root, proc, material, *(auth or (None, None)), log=log)


def _wait_ready(reg: Registry) -> Registry:
    proc, material, log, binary = reg.process, reg.tls, reg.log, reg.process.args[0]  # type: ignore[index]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{binary} exited: {log.read_text()[-2000:]}")
        try:
            ctx = None
            if material:
                import ssl

                ctx = ssl.create_default_context(cafile=str(material.ca_pem))
            urllib.request.urlopen(f"{reg.url}/v2/", timeout=1, context=ctx)  # noqa: S310 - loopback
            return reg
        except urllib.error.HTTPError as exc:
            if exc.code == 401:
                return reg
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.05)
    reg.stop()
    raise RuntimeError(f"{binary} did not answer on {reg.url}/v2/: {log.read_text()[-2000:]}")
