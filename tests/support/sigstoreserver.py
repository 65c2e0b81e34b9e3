"""The Mini Sigstore over HTTP (test-only): a Fulcio v2 and a Rekor v1 on loopback, and an OIDC issuer minting JWTs.

The public-good Sigstore cannot be reached from a test run, so keyless *signing* is proven against this: a real
HTTP server (stdlib ``http.server``, one thread per request) speaking the two APIs signing clients use, with the
keys of a :class:`~support.minisigstore.MiniSigstore`:

- ``POST /api/v2/signingCert`` (Fulcio v2): the OIDC token as ``Authorization: Bearer`` (sigstore-python) or
  ``credentials.oidcIdentityToken`` (cosign); proof of possession as a signed CSR (``certificateSigningRequest``)
  or ``publicKeyRequest`` (a signature over the token's email or subject). The token must be a JWT signed by a
  trusted issuer's key (its JWKS; RS256 or ES256), for audience ``sigstore``, within its validity. The
  certificate binds the ``email`` claim (an email SAN) or else the ``sub`` claim (a URI SAN) and the token's
  ``iss`` (issuer extensions), with an embedded SCT. Answers ``signedCertificateEmbeddedSct.chain``. The legacy
  ``POST /api/v1/signingCert`` (cosign v2: ``publicKey`` + ``signedEmailAddress``) answers the PEM chain.
- ``POST /api/v1/log/entries`` (Rekor v1): hashedrekord, intoto and dsse 0.0.1 proposals; signatures are checked
  and the entry canonicalized as Rekor does; answers ``201 {uuid: entry}`` with SET and inclusion proof.
- ``GET /oidc/.well-known/openid-configuration`` and ``/oidc/jwks``: the issuer's discovery documents.

Faults for failure tests: ``fulcio_status``/``rekor_status`` (answer that HTTP status), ``hang`` (sleep that
many seconds before answering anything), ``rekor_fail_after`` (log that many entries, then 503),
``rekor_fault="other-body"`` (a validly signed entry about something
else) or ``"bad-set"`` (a broken SET). ``requests`` records ``(method, path)`` of every request.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from support.minirekor import LogEntry, ProposalError, canonicalize
from support.minisigstore import MiniSigstore, cert_pem

AUDIENCE = "sigstore"
DEFAULT_ISSUER = "https://oidc.airgap.test"


class MiniOIDC:
    """An OIDC issuer's signing side: one key (ES256 or RS256), its JWKS, and tokens minted on demand."""

    def __init__(self, issuer: str = DEFAULT_ISSUER, *, algorithm: str = "ES256") -> None:
        self.issuer = issuer
        self.algorithm = algorithm
        self.key: Any = (ec.generate_private_key(ec.SECP256R1()) if algorithm == "ES256"
                         else rsa.generate_private_key(public_exponent=65537, key_size=2048))
        self.kid = f"mini-{algorithm.lower()}"

    def jwks(self) -> dict[str, Any]:
        jwk = json.loads(jwt.algorithms.get_default_algorithms()[self.algorithm].to_jwk(self.key.public_key()))
        return {"keys": [{**jwk, "kid": self.kid, "use": "sig", "alg": self.algorithm}]}

    def token(self, *, email: str | None = "signer@airgap.test", sub: str | None = None,
              audience: str = AUDIENCE, lifetime: float = 300, issued: float | None = None,
              issuer: str | None = None, **claims: Any) -> str:
        """A signed ID token; ``email`` becomes an email SAN, else ``sub`` a URI SAN. ``issued`` in the past
        with a short ``lifetime`` makes an expired token."""
        now = int(issued if issued is not None else time.time())
        doc: dict[str, Any] = {"iss": issuer or self.issuer, "aud": audience, "iat": now, "nbf": now,
                               "exp": int(now + lifetime), "sub": sub or email or "subject"}
        if email is not None:
            doc.update(email=email, email_verified=True)
        doc.update(claims)
        return jwt.encode(doc, self.key, algorithm=self.algorithm, headers={"kid": self.kid})


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class SigstoreServer:
    """Fulcio v2 + Rekor v1 + the OIDC discovery documents on ``127.0.0.1:<free port>``."""

    def __init__(self, sigstore: MiniSigstore, issuers: list[MiniOIDC]) -> None:
        self.sigstore = sigstore
        self.issuers = {i.issuer: i for i in issuers}
        self.fulcio_status: int | None = None
        self.rekor_status: int | None = None
        self.rekor_fault: str | None = None
        self.hang = 0.0
        self.rekor_fail_after: int | None = None  # entries logged before Rekor starts failing (503)
        self.requests: list[tuple[str, str]] = []
        self.entries: list[LogEntry] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="mini-sigstore", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> SigstoreServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def reset(self) -> None:
        """Clear the faults (not the log)."""
        self.fulcio_status = self.rekor_status = None
        self.rekor_fault = None
        self.rekor_fail_after = None
        self.hang = 0.0

    def signing_config(self, *, fulcio: str | None = None, rekor: str | None = None) -> dict[str, Any]:
        """A sigstore ``signing_config.json`` (v0.2, what cosign v3 reads) naming this server's services."""
        def service(url: str) -> dict[str, Any]:
            return {"url": url, "majorApiVersion": 1, "validFor": {"start": "2020-01-01T00:00:00Z"},
                    "operator": "airgap.test"}

        return {"mediaType": "application/vnd.dev.sigstore.signingconfig.v0.2+json",
                "caUrls": [service(fulcio or self.url)], "oidcUrls": [service(f"{self.url}/oidc")],
                "rekorTlogUrls": [service(rekor or self.url)], "tsaUrls": [],
                "rekorTlogConfig": {"selector": "ANY"}, "tsaConfig": {"selector": "ANY"}}

    # ---- Fulcio ------------------------------------------------------------------------------------------

    def _claims(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise _Refused(401, "malformed identity token") from None
        issuer = self.issuers.get(str(unverified.get("iss")))
        if issuer is None:
            raise _Refused(401, f"untrusted OIDC issuer {unverified.get('iss')!r}")
        keys = {k["kid"]: jwt.PyJWK(k) for k in issuer.jwks()["keys"]}
        if header.get("kid") not in keys:
            raise _Refused(401, "identity token signed with an unknown key")
        try:
            return jwt.decode(token, keys[header["kid"]].key, algorithms=[issuer.algorithm], audience=AUDIENCE,
                              issuer=issuer.issuer, options={"require": ["iss", "sub", "aud", "iat", "exp"]})
        except jwt.ExpiredSignatureError:
            raise _Refused(401, "identity token has expired") from None
        except jwt.InvalidAudienceError:
            raise _Refused(401, "identity token audience is not sigstore") from None
        except jwt.PyJWTError as exc:
            raise _Refused(401, f"invalid identity token: {exc}") from None

    def _signing_cert(self, headers: Any, body: dict[str, Any]) -> dict[str, Any]:
        auth = str(headers.get("Authorization") or "")
        token = auth[7:] if auth.startswith("Bearer ") else (body.get("credentials") or {}).get("oidcIdentityToken")
        if not token:
            raise _Refused(401, "no identity token")
        claims = self._claims(str(token))
        if claims.get("email"):
            if claims.get("email_verified") is False:
                raise _Refused(400, "email not verified")
            identity, san_kind = str(claims["email"]), "email"
        else:
            identity, san_kind = str(claims["sub"]), "uri"
            if "://" not in identity:
                raise _Refused(400, "subject is neither an email nor a URI")
        public_key = self._proof_of_possession(body, identity)
        cert = self.sigstore.certify(public_key, identity, str(claims["iss"]), san_kind=san_kind)
        chain = [cert, self.sigstore.intermediate_cert, self.sigstore.root_cert]
        return {"signedCertificateEmbeddedSct": {"chain": {"certificates": [cert_pem(c).decode() for c in chain]}}}

    def _signing_cert_v1(self, headers: Any, body: dict[str, Any]) -> bytes:
        """Fulcio's legacy v1 API (what cosign v2 calls): a PEM public key and a signature over the token's
        email or subject in, the PEM chain (leaf first) out."""
        try:
            key = body["publicKey"]["content"]
            request = {"publicKeyRequest": {"publicKey": {"content": base64.b64decode(key).decode()},
                                            "proofOfPossession": body["signedEmailAddress"]}}
        except (KeyError, TypeError, ValueError):
            raise _Refused(400, "needs publicKey.content and signedEmailAddress") from None
        chain = self._signing_cert(headers, request)["signedCertificateEmbeddedSct"]["chain"]["certificates"]
        return "".join(chain).encode()

    @staticmethod
    def _proof_of_possession(body: dict[str, Any], identity: str) -> Any:
        try:
            if "certificateSigningRequest" in body:
                csr = x509.load_pem_x509_csr(base64.b64decode(body["certificateSigningRequest"]))
                if not csr.is_signature_valid:
                    raise _Refused(400, "CSR signature does not verify")
                return csr.public_key()
            request = body["publicKeyRequest"]
            key = serialization.load_pem_public_key(request["publicKey"]["content"].encode())
            proof = base64.b64decode(request["proofOfPossession"])
        except (KeyError, TypeError, ValueError):
            raise _Refused(400, "needs a certificateSigningRequest or a publicKeyRequest") from None
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise _Refused(400, "only ECDSA keys")
        try:
            key.verify(proof, identity.encode(), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise _Refused(400, "proof of possession does not verify") from None
        return key

    # ---- Rekor -------------------------------------------------------------------------------------------

    def _log_entry(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            kind, version, spec = canonicalize(body)
        except ProposalError as exc:
            raise _Refused(400, str(exc)) from None
        with self._lock:
            entry = self.sigstore.rekor.append(kind, version, spec, int(time.time()))
            self.entries.append(entry)
            if self.rekor_fault == "other-body":  # a real entry, validly signed, about another signature
                other = self.sigstore.rekor.append("hashedrekord", "0.0.1", {
                    "data": {"hash": {"algorithm": "sha256", "value": "00" * 32}},
                    "signature": {"content": "AAAA", "publicKey": {"content": "AAAA"}}}, int(time.time()))
                entry = other
        response = entry.v1_response()
        if self.rekor_fault == "bad-set":
            record = next(iter(response.values()))
            record["verification"]["signedEntryTimestamp"] = base64.b64encode(b"\x30\x00" * 8).decode()
        return response

    # ---- HTTP --------------------------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  (quiet)
                return

            def _send(self, status: int, doc: Any, content_type: str = "application/json",
                      headers: dict[str, str] | None = None) -> None:
                data = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> dict[str, Any]:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    doc = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    raise _Refused(400, "body is not JSON") from None
                if not isinstance(doc, dict):
                    raise _Refused(400, "body is not a JSON object")
                return doc

            def _serve(self, method: str) -> None:
                server.requests.append((method, self.path))
                if server.hang:
                    time.sleep(server.hang)
                try:
                    if method == "GET" and self.path == "/oidc/.well-known/openid-configuration":
                        base = f"{server.url}/oidc"
                        self._send(200, {"issuer": base, "jwks_uri": f"{base}/jwks",
                                         "authorization_endpoint": f"{base}/auth", "token_endpoint": f"{base}/token"})
                    elif method == "GET" and self.path == "/oidc/jwks":
                        self._send(200, {"keys": [k for i in server.issuers.values() for k in i.jwks()["keys"]]})
                    elif method == "POST" and self.path == "/api/v2/signingCert":
                        body = self._body()
                        if server.fulcio_status:
                            raise _Refused(server.fulcio_status, "fulcio is failing (test fault)")
                        self._send(200, server._signing_cert(self.headers, body))
                    elif method == "POST" and self.path == "/api/v1/signingCert":
                        body = self._body()
                        if server.fulcio_status:
                            raise _Refused(server.fulcio_status, "fulcio is failing (test fault)")
                        pem = server._signing_cert_v1(self.headers, body)
                        self.send_response(201)
                        self.send_header("Content-Type", "application/pem-certificate-chain")
                        self.send_header("Content-Length", str(len(pem)))
                        self.end_headers()
                        self.wfile.write(pem)
                    elif method == "POST" and self.path == "/api/v1/log/entries":
                        body = self._body()
                        if server.rekor_status:
                            raise _Refused(server.rekor_status, "rekor is failing (test fault)")
                        if server.rekor_fail_after is not None:
                            if server.rekor_fail_after <= 0:
                                raise _Refused(503, "rekor is failing (test fault)")
                            server.rekor_fail_after -= 1
                        response = server._log_entry(body)
                        uuid = next(iter(response))  # sigstore-go reads the entry named by the ETag, as Rekor sets it
                        self._send(201, response, headers={"ETag": uuid,
                                                           "Location": f"/api/v1/log/entries/{uuid}"})
                    else:
                        raise _Refused(404, f"no route {method} {self.path}")
                except _Refused as exc:
                    self._send(exc.status, {"code": exc.status, "message": str(exc)})

            def do_GET(self) -> None:  # noqa: N802
                self._serve("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._serve("POST")

        return Handler


@contextmanager
def running(sigstore: MiniSigstore, issuers: list[MiniOIDC]) -> Iterator[SigstoreServer]:
    server = SigstoreServer(sigstore, issuers).start()
    try:
        yield server
    finally:
        server.stop()
