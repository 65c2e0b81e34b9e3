"""A test-only RFC 3161 Time-Stamp Authority made of real parts.

A generated CA and a TSA leaf (EKU id-kp-timeStamping, critical) are written to files, and the Debian
``openssl ts -reply`` command signs the TimeStampResps: nothing here encodes a timestamp token by hand, so
what airgap verifies is what a real TSA (and real cosign) produce. :meth:`MiniTSA.serve` puts it on
loopback HTTP at ``/api/v1/timestamp`` (POST ``application/timestamp-query``, the path sigstore's
timestamp-authority serves), so ``cosign sign --timestamp-server-url`` can use it;
:meth:`MiniTSA.timestamp` timestamps bytes directly. :func:`add_tsa` puts a TSA into a ``trusted_root.json``
document (e.g. one from :meth:`support.minisigstore.MiniSigstore.trusted_root`).
"""

from __future__ import annotations

import base64
import datetime
import json
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["TIMESTAMP_PATH", "MiniTSA", "add_tsa", "add_tsa_to_file", "annotation"]

TIMESTAMP_PATH = "/api/v1/timestamp"
SIGSTORE_TIME = "%Y-%m-%dT%H:%M:%SZ"

_OPENSSL_CNF = """\
[ tsa ]
default_tsa = tsa_config

[ tsa_config ]
dir = {dir}
serial = $dir/serial
crypto_device = builtin
signer_cert = $dir/tsa.pem
signer_key = $dir/tsa.key
signer_digest = sha256
default_policy = 1.3.6.1.4.1.57264.2
other_policies = 1.2.3.4.1
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = no
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _der_b64(cert: x509.Certificate) -> str:
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def annotation(response: bytes) -> str:
    """The ``dev.sigstore.cosign/rfc3161timestamp`` layer annotation cosign v2 writes for a TimeStampResp."""
    return json.dumps({"SignedRFC3161Timestamp": base64.b64encode(response).decode()})


class MiniTSA:
    """A CA plus a TSA leaf on disk, signing with ``openssl ts -reply``. Thread-safe; one per session is enough.

    ``directory`` receives ``ca.pem``, ``tsa.pem``, ``tsa.key``, ``chain.pem`` (leaf then root: what cosign's
    ``--timestamp-certificate-chain`` takes) and the openssl config.
    """

    def __init__(self, directory: Path, *, name: str = "airgap-test-tsa", days: int = 30) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
        self.valid_from = now - datetime.timedelta(days=days)
        self.valid_until = now + datetime.timedelta(days=days)
        self.ca_key = ec.generate_private_key(ec.SECP384R1())
        self.key = ec.generate_private_key(ec.SECP256R1())
        org = x509.NameAttribute(NameOID.ORGANIZATION_NAME, "airgap.test")
        ca_name = x509.Name([org, x509.NameAttribute(NameOID.COMMON_NAME, f"{name}-root")])
        self.subject = x509.Name([org, x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.ca_cert = (
            x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
            .public_key(self.ca_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(self.valid_from).not_valid_after(self.valid_until)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.ca_key.public_key()), critical=False)
            .sign(self.ca_key, hashes.SHA384())
        )
        self.cert = (
            x509.CertificateBuilder().subject_name(self.subject).issuer_name(ca_name)
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(self.valid_from).not_valid_after(self.valid_until)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key()),
                           critical=False)
            .sign(self.ca_key, hashes.SHA384())
        )
        self.ca_pem = directory / "ca.pem"
        self.cert_pem = directory / "tsa.pem"
        self.chain_pem = directory / "chain.pem"
        self.ca_pem.write_bytes(_pem(self.ca_cert))
        self.cert_pem.write_bytes(_pem(self.cert))
        self.chain_pem.write_bytes(_pem(self.cert) + _pem(self.ca_cert))
        (directory / "tsa.key").write_bytes(self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        (directory / "serial").write_text("01\n")
        self.config = directory / "openssl-tsa.cnf"
        self.config.write_text(_OPENSSL_CNF.format(dir=directory))
        self._lock = threading.Lock()  # openssl updates the serial file

    # ---- signing ---------------------------------------------------------------------------------------

    def respond(self, query: bytes) -> bytes:
        """A DER TimeStampResp for a DER TimeStampReq, signed by ``openssl ts -reply``."""
        with self._lock, tempfile.TemporaryDirectory(dir=self.directory) as tmp:
            qf, rf = Path(tmp) / "q.tsq", Path(tmp) / "r.tsr"
            qf.write_bytes(query)
            subprocess.run(["openssl", "ts", "-reply", "-config", str(self.config), "-queryfile", str(qf),
                            "-out", str(rf)], check=True, capture_output=True)  # noqa: S603, S607
            return rf.read_bytes()

    def query(self, data: bytes, *, digest: str = "sha256", certs: bool = True) -> bytes:
        """A DER TimeStampReq over ``data`` made by ``openssl ts -query`` (with a nonce)."""
        with tempfile.TemporaryDirectory(dir=self.directory) as tmp:
            df = Path(tmp) / "data"
            df.write_bytes(data)
            args = ["openssl", "ts", "-query", "-data", str(df), f"-{digest}"] + (["-cert"] if certs else [])
            return subprocess.run(args, check=True, capture_output=True).stdout  # noqa: S603

    def timestamp(self, data: bytes, *, digest: str = "sha256", certs: bool = True) -> bytes:
        """A DER TimeStampResp over ``data`` (``certs``: embed the TSA certificate, as cosign asks)."""
        return self.respond(self.query(data, digest=digest, certs=certs))

    # ---- trust material -------------------------------------------------------------------------------

    def authority(self, *, start: datetime.datetime | None = None,
                  end: datetime.datetime | None = None) -> dict[str, Any]:
        """This TSA as a ``trusted_root.json`` ``timestampAuthorities`` entry (leaf first, then root)."""
        valid: dict[str, str] = {"start": (start or self.valid_from).strftime(SIGSTORE_TIME)}
        if end is not None:
            valid["end"] = end.strftime(SIGSTORE_TIME)
        return {"subject": {"organization": "airgap.test", "commonName": self.subject.rfc4514_string()},
                "uri": "http://tsa.airgap.test" + TIMESTAMP_PATH,
                "certChain": {"certificates": [{"rawBytes": _der_b64(c)} for c in (self.cert, self.ca_cert)]},
                "validFor": valid}

    # ---- HTTP ----------------------------------------------------------------------------------------

    @contextmanager
    def serve(self) -> Iterator[str]:
        """Serve on ``127.0.0.1``; yields the timestamp URL (``http://127.0.0.1:P/api/v1/timestamp``)."""
        tsa = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if self.path.rstrip("/") != TIMESTAMP_PATH or \
                        self.headers.get("Content-Type") != "application/timestamp-query":
                    self.send_error(400 if self.path.rstrip("/") == TIMESTAMP_PATH else 404)
                    return
                try:
                    reply = tsa.respond(body)
                except subprocess.CalledProcessError:
                    self.send_error(400)
                    return
                self.send_response(201)
                self.send_header("Content-Type", "application/timestamp-reply")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def do_GET(self) -> None:
                if self.path != TIMESTAMP_PATH + "/certchain":
                    self.send_error(404)
                    return
                chain = tsa.chain_pem.read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", "application/pem-certificate-chain")
                self.send_header("Content-Length", str(len(chain)))
                self.end_headers()
                self.wfile.write(chain)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}{TIMESTAMP_PATH}"
        finally:
            server.shutdown()
            server.server_close()
            thread.join(5)


def add_tsa(root: dict[str, Any], tsa: MiniTSA, **validity: datetime.datetime | None) -> dict[str, Any]:
    """``root`` (a trusted_root.json document) with ``tsa`` appended to its ``timestampAuthorities``."""
    doc = json.loads(json.dumps(root))
    doc.setdefault("timestampAuthorities", []).append(tsa.authority(**validity))
    return doc


def add_tsa_to_file(path: Path, tsa: MiniTSA, **validity: datetime.datetime | None) -> None:
    """Rewrite the trusted_root.json at ``path`` (e.g. from ``MiniSigstore.write_files``) to trust ``tsa``."""
    path.write_text(json.dumps(add_tsa(json.loads(path.read_bytes()), tsa, **validity), indent=2))


@pytest.fixture(scope="session")
def tsa(tmp_path_factory: pytest.TempPathFactory) -> MiniTSA:
    """A mini TSA the tests' trusted roots name (see :func:`add_tsa`)."""
    return MiniTSA(tmp_path_factory.mktemp("tsa"))


@pytest.fixture(scope="session")
def other_tsa(tmp_path_factory: pytest.TempPathFactory) -> MiniTSA:
    """A second, separate TSA: trusted only where a test adds it too (a rogue one everywhere else)."""
    return MiniTSA(tmp_path_factory.mktemp("other-tsa"), name="other-tsa")
