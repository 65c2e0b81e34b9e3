"""Keyless signing end to end, airgap only: `airgap sign`/`attest --identity-token` against the Mini Sigstore's
Fulcio and Rekor over HTTP on loopback (the public-good Sigstore cannot be reached from tests), then `airgap verify`
offline against the mini root. Failures are one line and leave the registry untouched.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from support.fixtures_sigstore import mini_oidc, mini_sigstore_server, sigstore_server  # noqa: F401  (fixtures)
from support.images import Image, Pusher
from support.minisigstore import MiniSigstore, SigstoreFiles
from support.registries import Registry
from support.sigstoreserver import MiniOIDC, SigstoreServer
from support.trustdirs import cip, write_trust

from airgap.cli import cli

ALICE = "alice@airgap.test"
CI_URI = "https://ci.airgap.test/workflows/release@refs/heads/main"


def run(args: list[str], env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, args, env={"SIGSTORE_ID_TOKEN": None, **(env or {})})


def keyless_flags(server: SigstoreServer, files: SigstoreFiles, token: str) -> list[str]:
    return ["--identity-token", token, "--fulcio-url", server.url, "--rekor-url", server.url,
            "--trusted-root", str(files.trusted_root)]


def verify(ref: str, files: SigstoreFiles, identity: str, issuer: str) -> Result:
    return run(["verify", "--certificate-identity", identity, "--certificate-oidc-issuer", issuer,
                "--trusted-root", str(files.trusted_root), "--json", ref])


def one_line_error(out: Result) -> bool:
    """stderr ends with one ``error:`` line (after the ``keyless:`` line, once a certificate was obtained)."""
    lines = out.stderr.splitlines()
    return bool(lines) and lines[-1].startswith("error: ") and all(ln.startswith("keyless: ") for ln in lines[:-1])


def tags(registry: Registry, repo: str) -> list[str]:
    return sorted(Pusher(registry.url).tags(repo))


@pytest.mark.parametrize("fmt", ["legacy", "bundle"])
def test_sign_keyless_then_verify_offline(fmt: str, registry: Registry, make_image: Callable[..., Image],
                                          sigstore_server: SigstoreServer,  # noqa: F811
                                          mini_oidc: MiniOIDC, mini_sigstore_files: SigstoreFiles) -> None:  # noqa: F811
    image = make_image(registry, f"keyless/{fmt}", "1.0")
    ref = f"{registry.host}/keyless/{fmt}:1.0"
    out = run(["sign", "--format", fmt, "--json", *keyless_flags(sigstore_server, mini_sigstore_files,
                                                                   mini_oidc.token(email=ALICE)), ref])
    assert out.exit_code == 0, out.stderr
    assert f"keyless: token for {ALICE} from {mini_oidc.issuer} (expires " in out.stderr  # before Fulcio is asked
    assert f"keyless: {ALICE} from {mini_oidc.issuer} (certificate from {sigstore_server.url}" in out.stderr
    (summary,) = json.loads(out.stdout)["images"]
    assert (summary["identity"], summary["issuer"]) == (ALICE, mini_oidc.issuer)
    (entry,) = summary["signed"]
    assert entry["digest"] == image.digest and isinstance(entry["log_index"], int)

    ok = verify(ref, mini_sigstore_files, ALICE, mini_oidc.issuer)
    assert ok.exit_code == 0, ok.output
    evidence = json.loads(ok.stdout)["results"][0]
    assert ALICE in json.dumps(evidence)
    checks = [c for p in evidence["policies"] for a in p["authorities"] for e in a["evidence"]
              for c in e["checks"] if c["ok"]]
    assert {"signature", "identity"} <= {c["name"] for c in checks}
    assert any("Rekor" in c["detail"] for c in checks)  # the log entry was checked, SET (legacy) or proof (bundle)
    assert verify(ref, mini_sigstore_files, "mallory@airgap.test", mini_oidc.issuer).exit_code == 1
    assert verify(ref, mini_sigstore_files, ALICE, "https://other.issuer.test").exit_code == 1
    foreign = MiniSigstore(name="foreign").write_files(registry.root / "foreign-root")
    assert verify(ref, foreign, ALICE, mini_oidc.issuer).exit_code == 1


def test_sign_keyless_legacy_writes_what_cosign_v2_writes(registry: Registry, make_image: Callable[..., Image],
                                                          sigstore_server: SigstoreServer,  # noqa: F811
                                                          mini_oidc: MiniOIDC,  # noqa: F811
                                                          mini_sigstore_files: SigstoreFiles) -> None:
    image = make_image(registry, "keyless/layout", "1.0")
    out = run(["sign", "-a", "team=web", *keyless_flags(sigstore_server, mini_sigstore_files,
                                                         mini_oidc.token(email=ALICE)),
               f"{registry.host}/keyless/layout:1.0"])
    assert out.exit_code == 0, out.stderr
    manifest, _ = Pusher(registry.url).get_manifest("keyless/layout", image.digest.replace(":", "-") + ".sig")
    (layer,) = json.loads(manifest)["layers"]
    ann = layer["annotations"]
    assert sorted(ann) == ["dev.cosignproject.cosign/signature", "dev.sigstore.cosign/bundle",
                           "dev.sigstore.cosign/certificate", "dev.sigstore.cosign/chain"]
    assert ann["dev.sigstore.cosign/certificate"].startswith("-----BEGIN CERTIFICATE-----")
    assert ann["dev.sigstore.cosign/chain"].count("BEGIN CERTIFICATE") == 2  # intermediate, root
    rekor = json.loads(ann["dev.sigstore.cosign/bundle"])
    assert list(rekor) == ["SignedEntryTimestamp", "Payload"]
    assert list(rekor["Payload"]) == ["body", "integratedTime", "logIndex", "logID"]
    body = json.loads(__import__("base64").b64decode(rekor["Payload"]["body"]))
    assert body["kind"] == "hashedrekord"


@pytest.mark.parametrize("fmt, entry_type", [("legacy", "dsse"), ("legacy", "intoto"), ("bundle", "dsse")])
def test_attest_keyless_then_verify_with_a_policy(fmt: str, entry_type: str, registry: Registry,
                                                  make_image: Callable[..., Image],
                                                  sigstore_server: SigstoreServer,  # noqa: F811
                                                  mini_oidc: MiniOIDC,  # noqa: F811
                                                  mini_sigstore_files: SigstoreFiles, tmp_path: Path) -> None:
    repo = f"keyless/att-{fmt}-{entry_type}"
    make_image(registry, repo, "1.0")
    ref = f"{registry.host}/{repo}:1.0"
    predicate = tmp_path / "prov.json"
    predicate.write_text(json.dumps({"builder": {"id": "https://ci.airgap.test"}}))
    token = mini_oidc.token(email=None, sub=CI_URI)
    flags = keyless_flags(sigstore_server, mini_sigstore_files, token)
    for args in (["sign", "--format", fmt], ["attest", "--format", fmt, "--rekor-entry-type", entry_type,
                                              "--type", "slsaprovenance", "--predicate", str(predicate)]):
        out = run([*args, *flags, ref])
        assert out.exit_code == 0, out.stderr
        assert f"keyless: {CI_URI} from {mini_oidc.issuer}" in out.stderr
    authority = f"""\
    - name: ci
      keyless:
        identities:
          - issuer: {mini_oidc.issuer}
            subject: {CI_URI}
      attestations:
        - name: provenance
          predicateType: slsaprovenance
"""
    trust = write_trust(tmp_path / "trust", trusted_root=mini_sigstore_files.trusted_root.read_bytes(),
                        policy=cip("keyless-attested", authority))
    ok = run(["verify", "--trust", str(trust), ref])
    assert ok.exit_code == 0, ok.output
    wanted = authority.replace("slsaprovenance", "https://example.com/other/v1")
    other = write_trust(tmp_path / "other", trusted_root=mini_sigstore_files.trusted_root.read_bytes(),
                        policy=cip("other-attestation", wanted))
    assert run(["verify", "--trust", str(other), ref]).exit_code == 1


def test_signing_config_env_token_token_file_and_recursive(registry: Registry, make_image: Callable[..., Image],
                                                          sigstore_server: SigstoreServer,  # noqa: F811
                                                          mini_oidc: MiniOIDC,  # noqa: F811
                                                          mini_sigstore_files: SigstoreFiles, tmp_path: Path) -> None:
    image = make_image(registry, "keyless/multi", "1.0", platforms=("linux/amd64", "linux/arm64"))
    config = tmp_path / "signing_config.json"
    config.write_text(json.dumps(sigstore_server.signing_config()))
    ref = f"{registry.host}/keyless/multi:1.0"
    common = ["--signing-config", str(config), "--trusted-root", str(mini_sigstore_files.trusted_root)]
    before = len(sigstore_server.requests)
    out = run(["sign", "--recursive", "--json", *common, ref], env={"SIGSTORE_ID_TOKEN": mini_oidc.token(email=ALICE)})
    assert out.exit_code == 0, out.stderr
    assert len(json.loads(out.stdout)["images"][0]["signed"]) == 3
    posts = [path for method, path in sigstore_server.requests[before:] if method == "POST"]
    assert posts.count("/api/v2/signingCert") == 1 and posts.count("/api/v1/log/entries") == 3  # one certificate
    for digest in (image.digest, *image.children.values()):
        assert verify(f"{registry.host}/keyless/multi@{digest}", mini_sigstore_files, ALICE,
                      mini_oidc.issuer).exit_code == 0

    token_file = tmp_path / "token"
    token_file.write_text(mini_oidc.token(email="bob@airgap.test") + "\n")
    out = run(["sign", "--format", "bundle", "--identity-token", f"@{token_file}", *common, ref])
    assert out.exit_code == 0, out.stderr
    assert verify(ref, mini_sigstore_files, "bob@airgap.test", mini_oidc.issuer).exit_code == 0


def test_rs256_issuer_and_output_files(registry: Registry, make_image: Callable[..., Image],
                                       sigstore_server: SigstoreServer,  # noqa: F811
                                       mini_sigstore_files: SigstoreFiles, tmp_path: Path) -> None:
    image = make_image(registry, "keyless/files", "1.0")
    rsa_issuer = sigstore_server.issuers["https://rsa.oidc.airgap.test"]
    out = run(["sign", "--upload=false", "--output-dir", str(tmp_path / "out"),
               *keyless_flags(sigstore_server, mini_sigstore_files, rsa_issuer.token(email=ALICE)),
               f"{registry.host}/keyless/files:1.0"])
    assert out.exit_code == 0, out.stderr
    suffix = image.digest.replace(":", "-")
    assert {p.name for p in (tmp_path / "out").iterdir()} == {
        f"signature-{suffix}", f"payload-{suffix}", f"certificate-{suffix}.pem", f"rekor-bundle-{suffix}.json"}
    assert tags(registry, "keyless/files") == ["1.0"]


# ---- failures: one line, nothing pushed ------------------------------------------------------------------

def _closed_port_url() -> str:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("case", ["expired", "audience", "malformed", "untrusted-issuer", "unverified-signature"])
def test_bad_tokens_are_one_line_errors(case: str, registry: Registry, make_image: Callable[..., Image],
                                        sigstore_server: SigstoreServer, mini_oidc: MiniOIDC,  # noqa: F811
                                        mini_sigstore_files: SigstoreFiles) -> None:
    make_image(registry, "keyless/badtoken", "1.0")
    token = {
        "expired": lambda: mini_oidc.token(issued=time.time() - 3600, lifetime=600),
        "audience": lambda: mini_oidc.token(audience="not-sigstore"),
        "malformed": lambda: "not.a-jwt",
        "untrusted-issuer": lambda: MiniOIDC("https://evil.oidc.test").token(),
        "unverified-signature": lambda: MiniOIDC(mini_oidc.issuer).token(),  # same issuer name, another key
    }[case]()
    out = run(["sign", *keyless_flags(sigstore_server, mini_sigstore_files, token),
               f"{registry.host}/keyless/badtoken:1.0"])
    assert out.exit_code != 0
    assert one_line_error(out), out.stderr
    expected = {"expired": "identity token expired at", "audience": "audience 'not-sigstore', not 'sigstore'",
                "malformed": "identity token: not a JWT",
                "untrusted-issuer": "refused the request (HTTP 401: untrusted OIDC issuer",
                "unverified-signature": "refused the request (HTTP 401: invalid identity token"}
    assert expected[case] in out.stderr
    assert tags(registry, "keyless/badtoken") == ["1.0"]


@pytest.mark.parametrize("fault", ["fulcio-down", "fulcio-500", "rekor-down", "rekor-500", "rekor-other-body",
                                   "rekor-bad-set", "foreign-root"])
@pytest.mark.parametrize("fmt", ["legacy", "bundle"])
def test_sigstore_failures_push_nothing(fault: str, fmt: str, registry: Registry, make_image: Callable[..., Image],
                                        sigstore_server: SigstoreServer, mini_oidc: MiniOIDC,  # noqa: F811
                                        mini_sigstore_files: SigstoreFiles, tmp_path: Path) -> None:
    repo = f"keyless/fault-{fmt}"
    make_image(registry, repo, "1.0", platforms=("linux/amd64", "linux/arm64"))
    fulcio = rekor = sigstore_server.url
    root = mini_sigstore_files.trusted_root
    if fault == "fulcio-down":
        fulcio = _closed_port_url()
    elif fault == "rekor-down":
        rekor = _closed_port_url()
    elif fault == "fulcio-500":
        sigstore_server.fulcio_status = 500
    elif fault == "rekor-500":
        sigstore_server.rekor_fail_after = 1  # the first digest is logged, the second is not: still nothing pushed
    elif fault.startswith("rekor-"):
        sigstore_server.rekor_fault = fault.removeprefix("rekor-")
    else:
        root = MiniSigstore(name="foreign").write_files(tmp_path / "foreign").trusted_root
    out = run(["sign", "--format", fmt, "--recursive", "--identity-token", mini_oidc.token(), "--fulcio-url", fulcio,
               "--rekor-url", rekor, "--trusted-root", str(root), f"{registry.host}/{repo}:1.0"])
    assert out.exit_code == 1, out.output
    assert one_line_error(out), out.stderr
    expected = {"fulcio-down": f"Fulcio at {fulcio} is unreachable",
                "fulcio-500": "Fulcio at", "rekor-down": f"Rekor at {rekor} is unreachable",
                "rekor-500": "Rekor at", "rekor-other-body": "Rekor at", "rekor-bad-set": "Rekor at",
                "foreign-root": "the trusted root does not verify"}
    assert expected[fault] in out.stderr, out.stderr
    assert out.stderr.startswith("keyless: token for signer@airgap.test from https://oidc.airgap.test")
    if fault in ("fulcio-500", "rekor-500"):
        assert "HTTP 500" in out.stderr or "HTTP 503" in out.stderr
    if fault in ("rekor-other-body", "rekor-bad-set"):
        assert "does not verify" in out.stderr and "nothing was pushed" in out.stderr
    assert tags(registry, repo) == ["1.0"]  # no .sig tag, no referrers fallback tag


def test_a_silent_fulcio_fails_within_the_deadline(sigstore_server: SigstoreServer, mini_oidc: MiniOIDC,  # noqa: F811
                                                   mini_sigstore_files: SigstoreFiles) -> None:
    from airgap.errors import TransportError
    from airgap.signing.keyless import KeylessSigner
    from airgap.signing.services import resolve_services

    sigstore_server.hang = 3
    services = resolve_services(fulcio_url=sigstore_server.url, rekor_url=sigstore_server.url,
                                trusted_root=str(mini_sigstore_files.trusted_root), read_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(TransportError, match="did not answer in time"):
        KeylessSigner(mini_oidc.token(), services)
    assert time.monotonic() - started < 2.5
    overall = resolve_services(fulcio_url=sigstore_server.url, rekor_url=sigstore_server.url,
                               trusted_root=str(mini_sigstore_files.trusted_root), timeout=0.4)
    with pytest.raises(TransportError, match="0.4s in all"):
        KeylessSigner(mini_oidc.token(), overall)


@pytest.mark.parametrize("args, message", [
    (["--key", "k.key", "--identity-token", "x"], "--key and --identity-token exclude each other"),
    (["--fulcio-url", "http://127.0.0.1:1"], "give its root with --trusted-root"),
    (["--fulcio-url", "http://fulcio.example.com", "--trusted-root", "ROOT"], "plain HTTP is only allowed"),
    (["--tlog-upload=false"], "--tlog-upload=false is not supported keyless"),
    (["--rekor-url", "ftp://x", "--trusted-root", "ROOT"], "is not an http(s) URL"),
])
def test_misuse_is_refused_before_any_request(args: list[str], message: str, registry: Registry,
                                              sigstore_server: SigstoreServer,  # noqa: F811
                                              mini_oidc: MiniOIDC,  # noqa: F811
                                              mini_sigstore_files: SigstoreFiles) -> None:
    args = [str(mini_sigstore_files.trusted_root) if a == "ROOT" else a for a in args]
    before = len(sigstore_server.requests)
    out = run(["sign", *args, f"{registry.host}/keyless/misuse:1.0"],
              env={"SIGSTORE_ID_TOKEN": mini_oidc.token()})
    assert out.exit_code == 2, out.output
    assert message in out.stderr
    assert len(sigstore_server.requests) == before


def test_signing_config_is_read_by_sigstores_parser(tmp_path: Path, sigstore_server: SigstoreServer,  # noqa: F811
                                                    mini_sigstore_files: SigstoreFiles) -> None:
    from airgap.errors import ConfigError
    from airgap.signing.services import resolve_services

    doc: dict[str, Any] = sigstore_server.signing_config(rekor="http://127.0.0.1:9")
    doc["rekorTlogUrls"].insert(0, {**doc["rekorTlogUrls"][0], "url": "http://127.0.0.1:8", "majorApiVersion": 2,
                                    "operator": "v2-only"})
    path = tmp_path / "config.json"
    path.write_text(json.dumps(doc))
    services = resolve_services(signing_config=str(path), trusted_root=str(mini_sigstore_files.trusted_root))
    assert (services.fulcio_url, services.rekor_url) == (sigstore_server.url, "http://127.0.0.1:9")  # Rekor v1
    assert resolve_services(signing_config=str(path), rekor_url="http://127.0.0.1:7",
                            trusted_root=str(mini_sigstore_files.trusted_root)).rekor_url == "http://127.0.0.1:7"
    path.write_text(json.dumps({**doc, "caUrls": []}))
    with pytest.raises(ConfigError, match="not a usable signing config"):
        resolve_services(signing_config=str(path), trusted_root=str(mini_sigstore_files.trusted_root))
    public = resolve_services()  # no network: the public-good services and root shipped with sigstore-python
    assert (public.fulcio_url, public.rekor_url) == ("https://fulcio.sigstore.dev", "https://rekor.sigstore.dev")
