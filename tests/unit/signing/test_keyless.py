"""Keyless signing's pure parts: where the identity token comes from, what is wrong with a bad one, which URLs
are acceptable, and the cosign v2 Rekor annotation made from a bundle's log entry. No network."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from airgap.errors import ConfigError, IntegrityError
from airgap.signing.keyless import LoggedEntry
from airgap.signing.services import (
    IdentityTokenError,
    _check_url,
    parse_identity_token,
    read_identity_token,
    token_info,
)

KEY = ec.generate_private_key(ec.SECP256R1())


def token(**claims: object) -> str:
    now = int(time.time())
    doc = {"iss": "https://issuer.test", "aud": "sigstore", "sub": "subject", "iat": now, "exp": now + 300,
           "email": "alice@airgap.test"}
    doc.update(claims)
    return jwt.encode({k: v for k, v in doc.items() if v is not None}, KEY, algorithm="ES256")


def test_token_from_flag_file_path_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIGSTORE_ID_TOKEN", raising=False)
    assert read_identity_token(None) is None
    assert read_identity_token("abc.def.ghi") == "abc.def.ghi"
    path = tmp_path / "tok"
    path.write_text("from.a.file\n")
    assert read_identity_token(f"@{path}") == "from.a.file"
    assert read_identity_token(str(path)) == "from.a.file"  # cosign's form: a path to a file
    monkeypatch.setenv("SIGSTORE_ID_TOKEN", "from.the.env")
    assert read_identity_token(None) == "from.the.env"
    assert read_identity_token("flag.wins.x") == "flag.wins.x"
    with pytest.raises(IdentityTokenError, match="identity token file .*missing"):
        read_identity_token(f"@{tmp_path / 'missing'}")
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(IdentityTokenError, match="is empty"):
        read_identity_token(f"@{tmp_path / 'empty'}")


def test_token_identity_is_the_email_fulcio_binds() -> None:
    info = token_info(parse_identity_token(token()))
    assert (info.identity, info.issuer) == ("alice@airgap.test", "https://issuer.test")
    assert token_info(parse_identity_token(token(email=None, sub="https://ci/wf"))).identity == "https://ci/wf"


# Tokens are made when the test runs (their clock starts then), not at collection: a long suite run would
# otherwise let the "valid" claims expire before the test reads them.
@pytest.mark.parametrize("make, message", [
    (lambda: token(exp=int(time.time()) - 60, iat=int(time.time()) - 600), "identity token expired at"),
    (lambda: token(aud="other"), "for audience 'other', not 'sigstore'"),
    (lambda: token(iss=None), "lacks the 'iss' claim"),
    (lambda: token(nbf=int(time.time()) + 600), "not valid yet"),
    (lambda: "garbage", "not a JWT"),
])
def test_bad_tokens_say_what_is_wrong(make: Callable[[], str], message: str) -> None:
    raw = make()
    with pytest.raises(IdentityTokenError, match=message) as err:
        parse_identity_token(raw)
    assert "\n" not in str(err.value) and raw not in str(err.value)  # one line, and never the token itself


@pytest.mark.parametrize("url, ok", [
    ("https://fulcio.example.com", True), ("http://127.0.0.1:5555/", True), ("http://localhost:1", True),
    ("http://[::1]:1", True), ("http://fulcio.example.com", False), ("ftp://x", False), ("fulcio", False),
])
def test_urls(url: str, ok: bool) -> None:
    if ok:
        assert _check_url(url, "Fulcio URL") == url.rstrip("/")
    else:
        with pytest.raises(ConfigError):
            _check_url(url, "Fulcio URL")


def test_cosign_annotation_from_a_bundle_tlog_entry() -> None:
    body = base64.b64encode(b'{"kind":"hashedrekord"}').decode()
    entry = LoggedEntry({"logIndex": "7", "logId": {"keyId": base64.b64encode(b"\x01\xab").decode()},
                         "integratedTime": "1700000000", "inclusionPromise": {"signedEntryTimestamp": "U0VU"},
                         "canonicalizedBody": body})
    text = entry.cosign_annotation()
    assert text == ('{"SignedEntryTimestamp":"U0VU","Payload":{"body":"' + body +
                    '","integratedTime":1700000000,"logIndex":7,"logID":"01ab"}}')
    assert entry.log_index == 7
    with pytest.raises(IntegrityError, match="without SET"):  # a Rekor answer missing its promise
        LoggedEntry({"logIndex": "1"}).cosign_annotation()
    assert json.loads(text)["Payload"]["logID"] == "01ab"
