"""Sigstore bundles (v0.1-v0.3; message signatures and DSSE), offline.

Certificate bundles go through sigstore-python's ``Verifier(trusted_root=...)`` built from our parsed
trusted root (never a TUF/online constructor). On top of it airgap is stricter where the Sigstore client
spec is: a chain that embeds a root certificate is rejected (sigstore-python only warns), and a DSSE
envelope must carry exactly one signature. Two shapes sigstore-python 4.x cannot verify are handled
here with the same steps: Rekor v1 ``intoto`` entries (their integrated time is accepted like a
``dsse`` entry's, bound by the verified SET) and managed-key bundles (``publicKey`` hint, including
cosign v3 ``--tlog-upload=false`` bundles with no log entry at all).

RFC 3161 timestamps in ``timestampVerificationData`` are verified by airgap too (:mod:`airgap.checks.tsa`,
over the signature bytes as the Sigstore client spec says), for key bundles (which sigstore-python never
sees) and certificate bundles alike: one that does not verify fails the bundle (sigstore-python would only
skip it), and ``require_timestamp`` (a policy's ``rfc3161timestamp``) demands at least one that does.

For an image, ``expected_digest`` must be named by the DSSE statement's subject or, for a message
signature, by the simple-signing payload (``artifact``) or the bundle's message digest.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import TYPE_CHECKING, Any

from airgap.checks import cosign
from airgap.checks.outcome import Authority, Failed, KeyAuthority, KeylessAuthority, Outcome, Run
from airgap.checks.steps import check_statement, key_signed, timestamps_check
from airgap.checks.verifiers import verifier as _verifier
from airgap.errors import Error
from airgap.jsondoc import load_json

if TYPE_CHECKING:
    from cryptography.x509 import Certificate
    from sigstore.models import Bundle

    from airgap.checks.roots import TrustedRoot

MEDIA_TYPES = (
    "application/vnd.dev.sigstore.bundle+json;version=0.1",
    "application/vnd.dev.sigstore.bundle+json;version=0.2",
    "application/vnd.dev.sigstore.bundle+json;version=0.3",
    "application/vnd.dev.sigstore.bundle.v0.3+json",
)


def check_sigstore_bundle(raw: bytes, *, expected_digest: str | None, authority: Authority,
                          artifact: bytes | None = None, require_tlog: bool = True, predicate_type: str | None = None,
                          trusted_root: TrustedRoot | None = None, require_timestamp: bool = False,
                          tsa_root: TrustedRoot | None = None) -> Outcome:
    """Check a sigstore bundle (v0.1-v0.3; message signature or DSSE) against one authority (see the module
    docstring); ``artifact`` is the signed payload of a message signature when it is at hand."""
    keyed = isinstance(authority, KeyAuthority)
    run = Run("bundle-key" if keyed else "bundle-keyless")
    try:
        doc = _parse(run, raw)
        vm = doc["verificationMaterial"]
        env = None
        if doc.get("dsseEnvelope") is not None:
            try:
                env = cosign.Envelope.from_json(doc["dsseEnvelope"], "bundle DSSE envelope")
                env.require_intoto("bundle DSSE envelope")
            except Error as exc:
                raise run.fail("bundle", str(exc)) from None
            if len(env.signatures) != 1:
                raise run.fail("bundle", f"DSSE envelope must carry exactly one signature, not {len(env.signatures)}")
        root = trusted_root if trusted_root is not None else (
            authority.trusted_root if isinstance(authority, KeylessAuthority) else None)
        _timestamps(run, doc, env, tsa_root or root or (
            authority.trusted_root if isinstance(authority, KeylessAuthority) else None), require_timestamp)
        if "publicKey" in vm:
            if not isinstance(authority, KeyAuthority):
                raise run.fail("authority", "the bundle is signed with a key, the authority is keyless")
            _key_bundle(run, raw, doc, env, authority, root, require_tlog, expected_digest, artifact)
        else:
            if not isinstance(authority, KeylessAuthority):
                raise run.fail("authority", "the bundle carries a certificate, the authority wants a key")
            _cert_bundle(run, raw, doc, env, authority, root or authority.trusted_root, expected_digest, artifact)
        if env is not None:
            check_statement(run, env.payload, expected_digest, predicate_type)
    except Failed:
        pass
    return run.finish()


def _parse(run: Run, raw: bytes) -> dict[str, Any]:
    try:
        doc = load_json(raw, "sigstore bundle")
    except Error as exc:
        raise run.fail("bundle", exc.message) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("verificationMaterial"), dict):
        raise run.fail("bundle", "no verificationMaterial")
    if doc.get("mediaType") not in MEDIA_TYPES:
        raise run.fail("bundle", f"unsupported bundle mediaType {str(doc.get('mediaType'))[:80]!r}")
    if (doc.get("dsseEnvelope") is None) == (doc.get("messageSignature") is None):
        raise run.fail("bundle", "needs exactly one of messageSignature and dsseEnvelope")
    return doc


def _timestamps(run: Run, doc: dict[str, Any], env: cosign.Envelope | None, root: TrustedRoot | None,
                require: bool) -> None:
    """Verify every RFC 3161 timestamp in the bundle over its signature; demand one when ``require``."""
    tvd = doc["verificationMaterial"].get("timestampVerificationData") or {}
    stamps = (tvd.get("rfc3161Timestamps") or []) if isinstance(tvd, dict) else []
    if not isinstance(stamps, list):
        raise run.fail("bundle", "timestampVerificationData.rfc3161Timestamps is not a list")
    if not stamps and not require:
        return
    responses = [_b64(run, item.get("signedTimestamp") if isinstance(item, dict) else None,
                      f"rfc3161Timestamps[{i}].signedTimestamp") for i, item in enumerate(stamps)]
    if env is not None:
        signature = env.signatures[0][1]
    else:
        msg = doc["messageSignature"]
        signature = _b64(run, msg.get("signature") if isinstance(msg, dict) else None, "messageSignature.signature")
    timestamps_check(run, responses, signature, root, require)


def _b64(run: Run, value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise run.fail("bundle", f"{what}: missing")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise run.fail("bundle", f"{what}: not valid base64") from None


def _message(run: Run, doc: dict[str, Any], artifact: bytes | None, expected_digest: str | None
             ) -> tuple[bytes, bytes | None, str]:
    """(signature, artifact bytes or None, sha256 hex of what was signed) of a message-signature bundle;
    also checks the message names ``expected_digest``."""
    msg = doc["messageSignature"]
    signature = _b64(run, msg.get("signature") if isinstance(msg, dict) else None, "messageSignature.signature")
    md = msg.get("messageDigest") if isinstance(msg, dict) else None
    bundle_hex = None
    if isinstance(md, dict) and md.get("digest") is not None:
        if md.get("algorithm") not in ("SHA2_256", None):
            raise run.fail("bundle", f"unsupported messageDigest algorithm {md.get('algorithm')}")
        bundle_hex = _b64(run, md.get("digest"), "messageDigest.digest").hex()
    if artifact is not None:
        hexdigest = hashlib.sha256(artifact).hexdigest()
        if bundle_hex is not None and bundle_hex != hexdigest:
            raise run.fail("digest", "the bundle's messageDigest is not the artifact's digest")
    elif bundle_hex is not None:
        hexdigest = bundle_hex
    else:
        raise run.fail("digest", "no artifact and no messageDigest to check the signature against")
    if expected_digest is not None:
        named = "sha256:" + hexdigest
        if artifact is not None:
            try:
                named = cosign.SimpleSigning.from_bytes(artifact).manifest_digest
            except Error:
                pass  # not a simple-signing payload: the artifact itself is the subject
        if named != expected_digest:
            raise run.fail("digest", f"the signed message names {named}, not {expected_digest}")
        run.outcome.signed_digest = expected_digest
        run.ok("digest", f"signed message names {expected_digest}")
    return signature, artifact, hexdigest


def _key_bundle(run: Run, raw: bytes, doc: dict[str, Any], env: cosign.Envelope | None, authority: KeyAuthority,
                root: TrustedRoot | None, require_tlog: bool, expected_digest: str | None,
                artifact: bytes | None) -> None:
    """A managed-key bundle: signature with an authority key, then the log entry when there is one."""
    from airgap.keys.public import spki_der

    if env is not None:
        signature, signed_hex = env.signatures[0][1], ""
        key = key_signed(run, authority.keys, signature, env.pae)
        body_data: bytes | str = env.payload
    else:
        signature, data, signed_hex = _message(run, doc, artifact, expected_digest)
        if data is not None:
            key = key_signed(run, authority.keys, signature, data)
        else:
            key = _prehashed_key(run, authority, signature, bytes.fromhex(signed_hex))
        body_data = signed_hex
    entries = doc["verificationMaterial"].get("tlogEntries") or []
    if not entries:
        if require_tlog:
            raise run.fail("tlog", "no transparency log entry, and the log is required")
        return
    if root is None:
        if require_tlog:
            raise run.fail("tlog", "no trusted root to check the log entry with")
        run.ok("tlog", "log entry present but not checked (no trusted root given; tlog not required)")
        return
    _tlog_entry(run, raw, root, data=body_data, signature=signature, spki=spki_der(key))


def _prehashed_key(run: Run, authority: KeyAuthority, signature: bytes, digest: bytes) -> Any:
    """Like key_signed, for a bundle that carries only the SHA-256 of the message (ECDSA/RSA keys)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

    from airgap.keys.public import algorithm, key_id

    for key in authority.keys:
        try:
            if isinstance(key, ec.EllipticCurvePublicKey):
                key.verify(signature, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
            elif isinstance(key, rsa.RSAPublicKey):
                key.verify(signature, digest, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
            else:
                continue
        except (InvalidSignature, ValueError):
            continue
        run.outcome.key_id = key_id(key)
        run.ok("signature", f"{algorithm(key)} key {run.outcome.key_id}")
        return key
    raise run.fail("signature", f"does not verify with any of {len(authority.keys)} authority key(s)")


def _tlog_entry(run: Run, raw: bytes, root: TrustedRoot, *, data: bytes | str, signature: bytes,
                spki: bytes) -> None:
    """Inclusion proof, checkpoint and SET (sigstore-python), then the body names this signature."""
    from sigstore.errors import Error as SigstoreError
    from sigstore.models import TransparencyLogEntry
    from sigstore_models.bundle.v1 import Bundle as _Bundle

    from airgap.checks.tlog import TlogEntry, TlogError, check_body

    try:
        inner = _Bundle.from_json(raw).verification_material.tlog_entries
        if len(inner) != 1:
            raise run.fail("tlog", f"expected one log entry, got {len(inner)}")
        entry = TransparencyLogEntry(inner[0])
        entry._verify(root.to_sigstore().rekor_keyring(_verify_purpose()))
        body = load_json(entry._inner.canonicalized_body, "Rekor entry body", TlogError)
        kv = entry._inner.kind_version
        tlog = TlogEntry(int(entry._inner.integrated_time or 0), int(entry._inner.log_index),
                         entry._inner.log_id.key_id.hex(), f"{kv.kind}/{kv.version}", body)
        check_body(tlog, data=data, signature=signature, spki=spki)
    except (SigstoreError, TlogError, ValueError, TypeError, KeyError) as exc:
        raise run.fail("tlog", str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    if tlog.integrated_time:
        run.outcome.integrated_time = tlog.integrated_time
    run.ok("tlog", f"Rekor {tlog.kind} logIndex {tlog.log_index}: inclusion proof and checkpoint verified")


def _verify_purpose() -> Any:
    from sigstore._internal.trust import KeyringPurpose

    return KeyringPurpose.VERIFY


def _cert_bundle(run: Run, raw: bytes, doc: dict[str, Any], env: cosign.Envelope | None,
                 authority: KeylessAuthority, root: TrustedRoot, expected_digest: str | None,
                 artifact: bytes | None) -> None:
    from sigstore.errors import Error as SigstoreError
    from sigstore.models import Bundle

    from airgap.checks.keyless import CertError, issuer_of, subject_of
    from airgap.keys.public import parse_errors

    _reject_embedded_root(run, doc)
    malformed: tuple[type[Exception], ...] = (SigstoreError, Error, *parse_errors())
    try:
        bundle = Bundle.from_json(raw)
        verifier = _verifier(root)
    except malformed as exc:
        raise run.fail("bundle", str(exc).splitlines()[0]) from None
    leaf: Certificate = bundle.signing_certificate
    try:
        subject, issuer = subject_of(leaf), issuer_of(leaf)
    except CertError as exc:
        raise run.fail("identity", str(exc)) from None
    run.outcome.identity, run.outcome.issuer = subject, issuer
    entry = bundle.log_entry._inner
    kind = f"{entry.kind_version.kind}/{entry.kind_version.version}"
    try:
        if env is not None:
            if entry.kind_version.kind == "intoto":
                _verify_intoto(verifier, bundle, env)
            else:
                verifier.verify_dsse(bundle, _AnyCert())
        else:
            from sigstore.hashes import Hashed
            from sigstore_models.common.v1 import HashAlgorithm

            _, data, hexdigest = _message(run, doc, artifact, expected_digest)
            verifier.verify_artifact(data if data is not None else
                                     Hashed(algorithm=HashAlgorithm.SHA2_256, digest=bytes.fromhex(hexdigest)),
                                     bundle, _AnyCert())
    except malformed + (CertError,) as exc:
        raise run.fail("signature", str(exc).splitlines()[0] or type(exc).__name__) from None
    if entry.integrated_time:
        run.outcome.integrated_time = int(entry.integrated_time)
    run.ok("signature", f"certificate chain, SCT, Rekor {kind} entry and signature verified (sigstore)")
    match = next((i for i in authority.identities if i.matches(subject, issuer)), None)
    if match is None:
        raise run.fail("identity", f"{subject} from {issuer} matches none of {len(authority.identities)} identities")
    run.ok("identity", f"{subject} from {issuer} matches {match}")


def _reject_embedded_root(run: Run, doc: dict[str, Any]) -> None:
    """Client spec: a bundle's chain must not carry a root (it would let the bundle pick its anchor)."""
    holder = doc["verificationMaterial"].get("x509CertificateChain") or {}
    chain = holder.get("certificates") or [] if isinstance(holder, dict) else None
    if not isinstance(chain, list):
        raise run.fail("bundle", "x509CertificateChain is not an object with a list of certificates")
    if len(chain) < 2:
        return  # a leaf alone (or a v0.3 ``certificate``): nothing above it to check
    from cryptography import x509

    from airgap.keys.public import parse_errors

    for i, entry in enumerate(chain[1:], start=1):
        try:
            raw = entry.get("rawBytes") if isinstance(entry, dict) else None
            cert = x509.load_der_x509_certificate(_b64(run, raw, f"certificate {i}"))
        except parse_errors():
            raise run.fail("bundle", f"certificate {i} is not DER X.509") from None
        if cert.issuer == cert.subject:
            raise run.fail("chain", "the bundle's certificate chain embeds a root certificate")


class _AnyCert:
    """A sigstore VerificationPolicy that accepts any certificate: airgap matches identities itself
    (policy-controller semantics, whole-string regexps) after sigstore verified everything else."""

    def verify(self, cert: Certificate) -> None:
        return None


def _verify_intoto(verifier: Any, bundle: Bundle, env: cosign.Envelope) -> None:
    """Steps 1-6 by sigstore; then the DSSE signature and the ``intoto`` body (payload hash, logged
    envelope signature and certificate) by airgap."""
    from sigstore.errors import VerificationError as SigstoreVerificationError

    from airgap.checks.tlog import TlogEntry, TlogError, check_body
    from airgap.keys.public import spki_der, verify_signature

    verifier._verify_common_signing_cert(bundle, _AnyCert())
    leaf = bundle.signing_certificate
    signature = env.signatures[0][1]
    if not verify_signature(leaf.public_key(), signature, env.pae):  # type: ignore[arg-type]
        raise SigstoreVerificationError("DSSE signature does not verify with the certificate key")
    inner = bundle.log_entry._inner
    try:
        body = load_json(inner.canonicalized_body, "Rekor entry body", TlogError)
        tlog = TlogEntry(int(inner.integrated_time or 0), int(inner.log_index), inner.log_id.key_id.hex(),
                         f"{inner.kind_version.kind}/{inner.kind_version.version}", body)
        check_body(tlog, data=env.payload, signature=signature, spki=spki_der(leaf.public_key()))  # type: ignore[arg-type]
    except TlogError as exc:
        raise SigstoreVerificationError(str(exc)) from None
