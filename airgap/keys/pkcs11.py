"""PKCS#11 keys as cosign names them: ``pkcs11:`` URIs (RFC 7512), a signer whose key stays on the token,
reading a token's public key and generating a key pair on it.

``python-pkcs11`` (a compiled module) is imported only when a token is actually used.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, cast

from airgap.errors import ConfigError
from airgap.keys.passwords import WrongPasswordError, prompt_secret, read_secret_file
from airgap.keys.public import check_public_key, ec_hash, verify_signature

if TYPE_CHECKING:
    import pkcs11
    from pkcs11 import Session

    from airgap.keys.public import PublicKey



@dataclass(frozen=True)
class Pkcs11URI:
    """An RFC 7512 ``pkcs11:`` URI as cosign reads it: path attributes ``token``, ``slot-id``, ``object``,
    ``id`` (``;``-separated, percent-encoded); query attributes ``module-path``, ``pin-value``,
    ``pin-source`` (a file path or ``file:`` URI). The module falls back to ``COSIGN_PKCS11_MODULE_PATH``
    and the PIN to ``COSIGN_PKCS11_PIN``. Other attributes (``type``, ``serial`` ...) are ignored."""

    module_path: str
    token: str | None = None
    slot_id: int | None = None
    object: str | None = None
    id: bytes | None = None
    pin_value: str | None = field(default=None, repr=False)
    pin_source: str | None = None

    @classmethod
    def parse(cls, uri: str) -> Pkcs11URI:
        if not uri.startswith("pkcs11:"):
            raise ConfigError("not a pkcs11: URI")
        path, _, query = uri.removeprefix("pkcs11:").partition("?")
        attrs = _uri_attrs(path, ";") | _uri_attrs(query.replace(";", "&"), "&")
        text = {k: v.decode("utf-8", "replace") for k, v in attrs.items() if k != "id"}
        module = text.get("module-path") or os.environ.get("COSIGN_PKCS11_MODULE_PATH", "")
        if not module:
            raise ConfigError("pkcs11: URI needs module-path= (or set COSIGN_PKCS11_MODULE_PATH)")
        if not (text.get("token") or text.get("slot-id")):
            raise ConfigError("pkcs11: URI needs token= or slot-id=")
        if not (text.get("object") or attrs.get("id")):
            raise ConfigError("pkcs11: URI needs object= or id=")
        slot = text.get("slot-id")
        if slot is not None and not slot.isdigit():
            raise ConfigError(f"pkcs11: URI slot-id {slot!r} is not a number")
        return cls(module_path=module, token=text.get("token"), slot_id=int(slot) if slot else None,
                   object=text.get("object"), id=attrs.get("id"), pin_value=text.get("pin-value"),
                   pin_source=text.get("pin-source"))

    def __str__(self) -> str:
        from urllib.parse import quote

        parts = [f"token={quote(self.token, safe='')}" if self.token else "",
                 f"slot-id={self.slot_id}" if self.slot_id is not None else "",
                 f"object={quote(self.object, safe='')}" if self.object else "",
                 "id=" + "".join(f"%{b:02x}" for b in self.id) if self.id else ""]
        return "pkcs11:" + ";".join(p for p in parts if p) + "?module-path=" + quote(self.module_path, safe="/")

    def describe(self) -> str:
        key = f"object={self.object}" if self.object else f"id={self.id.hex() if self.id else ''}"
        where = f"token {self.token!r}" if self.token else f"slot {self.slot_id}"
        return f"pkcs11 key {key} on {where}"

    def pin(self, *, ask: bool) -> str | None:
        """The user PIN: pin-value, pin-source, COSIGN_PKCS11_PIN, then (when ``ask``) a prompt."""

        if self.pin_value is not None:
            return self.pin_value
        if self.pin_source:
            path = self.pin_source.removeprefix("file://") if self.pin_source.startswith("file:") else self.pin_source
            return read_secret_file(path, "PIN file").decode()
        env = os.environ.get("COSIGN_PKCS11_PIN")
        if env is not None or not ask:
            return env
        return prompt_secret(f"Enter PIN for {self.describe()}: ", what=f"a PIN for {self.describe()}",
                             hint="add pin-value=/pin-source= to the URI or set COSIGN_PKCS11_PIN").decode()


def _uri_attrs(text: str, sep: str) -> dict[str, bytes]:
    from urllib.parse import unquote_to_bytes

    attrs: dict[str, bytes] = {}
    for part in filter(None, text.split(sep)):
        name, eq, value = part.partition("=")
        if not eq or not name:
            raise ConfigError(f"pkcs11: URI attribute {part!r} has no value")
        if name in attrs:
            raise ConfigError(f"pkcs11: URI repeats attribute {name!r}")
        attrs[name] = unquote_to_bytes(value)
    return attrs


def _open_session(uri: Pkcs11URI, pin: str | None, *, rw: bool = False) -> Session:
    import pkcs11

    if not os.path.isfile(uri.module_path):
        raise ConfigError(f"PKCS#11 module not found: {uri.module_path}")
    try:
        lib = pkcs11.lib(uri.module_path)
    except Exception as exc:  # the Cython loader raises several types  # noqa: BLE001
        raise ConfigError(f"cannot load PKCS#11 module {uri.module_path}: {exc}") from None
    tokens = _matching_tokens(lib, uri)
    if not tokens:
        # Tokens created after the module was initialised (softhsm2-util, another process) appear only
        # after C_Finalize/C_Initialize. Only done when nothing matched, so open sessions are rarely hit.
        lib.reinitialize()
        tokens = _matching_tokens(lib, uri)
    where = f"token {uri.token!r}" if uri.token else f"slot {uri.slot_id}"
    if len(tokens) != 1:
        raise ConfigError(f"{'no' if not tokens else 'more than one'} PKCS#11 {where} in {uri.module_path}")
    try:
        try:
            return tokens[0].open(rw=rw, user_pin=pin)
        except pkcs11.UserAlreadyLoggedIn:
            # Login is per application, not per session: another open session (a live signer) already
            # logged this process in, so a new session shares that login.
            return tokens[0].open(rw=rw)
    except pkcs11.PinIncorrect:

        raise WrongPasswordError(f"wrong PIN for {where}") from None
    except pkcs11.PKCS11Error as exc:
        raise ConfigError(f"cannot open a session on {where}: {type(exc).__name__} {exc}".strip()) from None


def _matching_tokens(lib: object, uri: Pkcs11URI) -> list[pkcs11.Token]:
    found = []
    for slot in lib.get_slots(token_present=True):  # type: ignore[attr-defined]
        if uri.slot_id is not None and slot.slot_id != uri.slot_id:
            continue
        token = slot.get_token()
        if uri.token is None or token.label == uri.token:
            found.append(token)
    return found


def _find_key(session: Session, uri: Pkcs11URI, private: bool) -> pkcs11.Key:
    import pkcs11

    kind = pkcs11.ObjectClass.PRIVATE_KEY if private else pkcs11.ObjectClass.PUBLIC_KEY
    try:
        return session.get_key(object_class=kind, label=uri.object, id=uri.id)
    except pkcs11.NoSuchKey:
        hint = "" if private or session.rw else " (or it needs a PIN to be visible)"
        raise ConfigError(f"no {'private' if private else 'public'} key object for {uri.describe()}{hint}") from None
    except pkcs11.MultipleObjectsReturned:
        raise ConfigError(f"more than one key matches {uri.describe()}: add id= to the URI") from None


def _public_key_of(session: Session, uri: Pkcs11URI) -> PublicKey:
    import pkcs11
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa


    obj = _find_key(session, uri, private=False)
    if obj.key_type == pkcs11.KeyType.EC:
        key: object = serialization.load_der_public_key(
            pkcs11.util.ec.encode_ec_public_key(cast("pkcs11.PublicKey", obj)))
    elif obj.key_type == pkcs11.KeyType.RSA:
        n, e = (int.from_bytes(obj[a], "big") for a in (pkcs11.Attribute.MODULUS, pkcs11.Attribute.PUBLIC_EXPONENT))
        key = rsa.RSAPublicNumbers(e, n).public_key()
    else:
        raise ConfigError(f"{uri.describe()}: unsupported key type {obj.key_type!r}")
    return check_public_key(key, uri.describe())


def read_pkcs11_public_key(uri: Pkcs11URI) -> PublicKey:
    """The public key object on the token (read with a PIN when one is given; never prompts)."""
    with _open_session(uri, uri.pin(ask=False)) as session:
        return _public_key_of(session, uri)


class Pkcs11Signer:
    """A :class:`~airgap.keys.private.Signer` whose private key never leaves the token. ECDSA hashes here and
    signs the digest with CKM_ECDSA, turning the raw r||s into DER (as cosign does); RSA uses
    CKM_SHA256_RSA_PKCS. Each signature is checked against the token's public key before it is returned,
    so a mismatched public/private pair fails here, not at a verifier. Holds one session (thread-safe)."""

    def __init__(self, uri: Pkcs11URI) -> None:
        self.uri = uri
        self._lock = threading.Lock()
        self._pin = uri.pin(ask=True)
        self._connect()

    def _connect(self) -> None:
        self._session = _open_session(self.uri, self._pin)
        self._private = cast("pkcs11.SignMixin", _find_key(self._session, self.uri, private=True))
        self._public = _public_key_of(self._session, self.uri)

    @property
    def public_key(self) -> PublicKey:
        return self._public

    def _sign_on_token(self, data: bytes) -> bytes:
        import pkcs11
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, rsa, utils


        if isinstance(self._public, ec.EllipticCurvePublicKey):
            digest = hashes.Hash(ec_hash(self._public))
            digest.update(data)
            raw = self._private.sign(digest.finalize(), mechanism=pkcs11.Mechanism.ECDSA)
            half = len(raw) // 2
            return utils.encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))
        if isinstance(self._public, rsa.RSAPublicKey):
            return self._private.sign(data, mechanism=pkcs11.Mechanism.SHA256_RSA_PKCS)
        raise ConfigError(f"{self.uri.describe()}: signing with this key type is not supported")

    def sign(self, data: bytes) -> bytes:
        import pkcs11


        lost = (pkcs11.SessionHandleInvalid, pkcs11.SessionClosed, pkcs11.KeyHandleInvalid,
                pkcs11.ObjectHandleInvalid, pkcs11.UserNotLoggedIn)
        with self._lock:
            try:
                try:
                    signature = self._sign_on_token(data)
                except lost:
                    # The module was re-initialised (another URI named a token created after we opened
                    # ours), another session's close logged the application out (login is per process),
                    # or the token was re-inserted: open a fresh session once and retry.
                    self._connect()
                    signature = self._sign_on_token(data)
            except pkcs11.PKCS11Error as exc:
                raise ConfigError(f"{self.uri.describe()}: signing failed ({type(exc).__name__})") from None
        if not verify_signature(self._public, signature, data):
            raise ConfigError(f"{self.uri.describe()}: the token's signature does not match its public key")
        return signature

    def close(self) -> None:
        self._session.close()


def generate_pkcs11_keypair(uri: Pkcs11URI) -> tuple[PublicKey, Pkcs11URI]:
    """Create an ECDSA P-256 key pair ON the token (private key sensitive, not extractable), labelled
    ``object=`` with ``id=`` (16 random bytes when the URI has none). Refuses to shadow an existing key.
    Returns the public key and the URI naming the new pair."""
    import pkcs11
    from pkcs11.util.ec import encode_named_curve_parameters

    if not uri.object:
        raise ConfigError("pkcs11: URI needs object= to label the new key")
    with _open_session(uri, uri.pin(ask=True), rw=True) as session:
        existing = list(session.get_objects({pkcs11.Attribute.LABEL: uri.object}))
        if uri.id:
            existing += list(session.get_objects({pkcs11.Attribute.ID: uri.id}))
        if existing:
            raise ConfigError(f"{uri.describe()} already exists; pick another object= label")
        new_uri = replace(uri, id=uri.id or os.urandom(16))
        params = session.create_domain_parameters(
            pkcs11.KeyType.EC, {pkcs11.Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")},
            local=True)
        params.generate_keypair(store=True, label=uri.object, id=new_uri.id, private_template={
            pkcs11.Attribute.SENSITIVE: True, pkcs11.Attribute.EXTRACTABLE: False})
        return _public_key_of(session, new_uri), new_uri
