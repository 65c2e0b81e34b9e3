"""cosign's verbs and flags as airgap spells them, on real registries (the comparisons with real cosign v2/v3 are
in tests/interop/test_verbs_cosign.py): ``verify -a``, ``--signature-dir``, ``--local-image``,
``--certificate-chain``, ``triangulate``, ``sign --output-dir`` / ``--output-signature FILE``, the cosign aliases
(``--allow-insecure-registry``, ``--registry-cacert``, ``import-key-pair``, ``--output-key-prefix``), and the usage
errors (exit 2, naming the flags) when flags conflict.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from support.fixtures_sigstore import push_keyless_signature
from support.images import Image, Pusher
from support.minisigstore import MiniSigstore, SigstoreFiles
from support.registries import Registry
from support.signing import KeyPair, sign_pushed, write_keypair
from support.trustdirs import cip, key_authority, write_trust

from airgap.cli import cli

IDENTITY = ("signer@airgap.test", "https://oidc.airgap.test")


@pytest.fixture
def keys(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., KeyPair]:
    """``keys(name="k1")``: a fresh key pair on disk (unencrypted PKCS#8, its public PEM, a signer)."""
    return lambda name="k1": write_keypair(tmp_path_factory.mktemp("keys"), name)


def run(args: list[str], **env: str | None) -> Result:
    return CliRunner().invoke(cli, args, env={"COSIGN_REPOSITORY": None, "SIGSTORE_ID_TOKEN": None, **env})


def verify_key(key: KeyPair, *args: str) -> Result:
    return run(["verify", "--key", str(key.public_path), "--insecure-ignore-tlog", *args])


def suffix(digest: str) -> str:
    return digest.replace(":", "-", 1)


# ---- verify -a ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["legacy", "bundle"])
def test_annotations_must_all_be_signed(fmt: str, registry_factory: Callable[..., Registry],
                                        make_image: Callable[..., Image], keys: Callable[..., KeyPair]) -> None:
    reg = registry_factory(kind="referrers" if fmt == "bundle" else "distribution2")
    key = keys()
    image = make_image(reg, "ann/app", "1.0")
    sign_pushed(reg, image, key, annotations={"env": "prod", "team": "web"}, fmt=fmt)
    ref = f"{reg.host}/ann/app:1.0"
    ok = verify_key(key, "-a", "env=prod", "--annotations", "team=web", "--json", ref)
    assert ok.exit_code == 0, ok.output
    (result,) = json.loads(ok.stdout)["results"]
    checks = [c for e in result["policies"][0]["authorities"][0]["evidence"] for c in e["checks"]]
    assert {"name": "annotations", "ok": True, "detail": "env=prod, team=web"} in checks
    # The evidence says what was required, and the policy digest covers it: the same key with other pairs
    # (or none) is another policy.
    assert result["required_annotations"] == {"env": "prod", "team": "web"}
    plain = verify_key(key, "--json", ref)
    assert plain.exit_code == 0  # no -a: annotations are not required
    (unannotated,) = json.loads(plain.stdout)["results"]
    assert unannotated["required_annotations"] == {}
    assert unannotated["policy_digest"] != result["policy_digest"]
    (again,) = json.loads(verify_key(key, "-a", "team=web", "-a", "env=prod", "--json", ref).stdout)["results"]
    assert again["policy_digest"] == result["policy_digest"]  # the pairs' order does not matter
    wrong = verify_key(key, "-a", "env=dev", ref)
    assert wrong.exit_code == 1
    assert "annotations: missing or different env=dev (signed: env=prod, team=web)" in wrong.stdout
    missing = verify_key(key, "-a", "owner=ops", ref)
    assert missing.exit_code == 1 and "owner=ops" in missing.stdout
    bad = verify_key(key, "-a", "novalue", ref)
    assert bad.exit_code == 2 and "-a/--annotations: annotation 'novalue' is not key=value" in bad.stderr


def test_annotations_apply_to_every_signature_of_a_policy_and_follow_its_mode(
        registry: Registry, make_image: Callable[..., Image], keys: Callable[..., KeyPair], tmp_path: Path) -> None:
    key = keys("release")
    image = make_image(registry, "ann/policy", "1.0")
    sign_pushed(registry, image, key)  # signed, without the annotation
    ref = f"{registry.host}/ann/policy:1.0"
    for mode, code, mark in (("warn", 0, "WARN"), ("enforce", 1, "FAIL")):
        trust = write_trust(tmp_path / mode, keys={"release": key.public_pem},
                            policy=cip("base", key_authority("release"), mode=mode))
        out = run(["verify", "--trust", str(trust), "-a", "base=cgr.dev/chainguard/static", ref])
        assert out.exit_code == code, out.output
        assert out.stdout.startswith(mark) and "annotations: missing or different base=" in out.stdout
    sign_pushed(registry, image, key, annotations={"base": "cgr.dev/chainguard/static"})
    assert run(["verify", "--trust", str(tmp_path / "enforce"), "-a", "base=cgr.dev/chainguard/static",
                ref]).exit_code == 0


# ---- sign --output-dir / --output-signature FILE, verify --signature-dir -------------------------------------

def test_output_dir_then_verify_signature_dir_without_registry_signatures(
        registry: Registry, make_image: Callable[..., Image], keys: Callable[..., KeyPair], tmp_path: Path) -> None:
    key, other = keys("k1"), keys("k2")
    image = make_image(registry, "dir/app", "1.0", platforms=("linux/amd64", "linux/arm64"))
    out_dir = tmp_path / "sigs"
    signed = run(["sign", "--key", str(key.private_path), "--recursive", "--upload=false", "-a", "env=prod",
                  "--output-dir", str(out_dir), f"{registry.host}/dir/app:1.0"])
    assert signed.exit_code == 0, signed.output
    assert Pusher(registry.url).tags("dir/app") == ["1.0"]  # nothing pushed
    for digest in (image.digest, *image.children.values()):
        ref = f"{registry.host}/dir/app@{digest}"
        assert verify_key(key, ref).exit_code == 1  # the registry has no signature
        ok = verify_key(key, "--signature-dir", str(out_dir), "-a", "env=prod", ref)
        assert ok.exit_code == 0, ok.output
        assert f"{out_dir}/signature-{suffix(digest)}" in ok.stdout
        assert verify_key(other, "--signature-dir", str(out_dir), ref).exit_code == 1
    # a payload edited on disk (another digest) fails; a missing payload is a failed candidate with the reason
    child = next(iter(image.children.values()))
    (out_dir / f"payload-{suffix(child)}").write_bytes((out_dir / f"payload-{suffix(image.digest)}").read_bytes())
    assert verify_key(key, "--signature-dir", str(out_dir), f"{registry.host}/dir/app@{child}").exit_code == 1
    (out_dir / f"payload-{suffix(image.digest)}").unlink()
    gone = verify_key(key, "--signature-dir", str(out_dir), f"{registry.host}/dir/app:1.0")
    assert gone.exit_code == 1 and f"payload-{suffix(image.digest)} is missing" in gone.stdout


def test_signature_dir_with_bundles(referrers_registry: Registry, make_image: Callable[..., Image],
                                    keys: Callable[..., KeyPair], tmp_path: Path) -> None:
    key = keys()
    make_image(referrers_registry, "dir/bundle", "1.0")
    ref = f"{referrers_registry.host}/dir/bundle:1.0"
    assert run(["sign", "--key", str(key.private_path), "--format", "bundle", "--upload=false", "-a", "k=v",
                "--output-dir", str(tmp_path), ref]).exit_code == 0
    ok = verify_key(key, "--signature-dir", str(tmp_path), "-a", "k=v", "--json", ref)
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["results"][0]["policies"][0]["authorities"][0]["evidence"][0]["kind"] == "bundle-key"


def test_single_output_files_as_cosign(registry: Registry, make_image: Callable[..., Image],
                                       keys: Callable[..., KeyPair], tmp_path: Path) -> None:
    from airgap.checks import cosign
    from airgap.keys.public import verify_signature

    key = keys()
    image = make_image(registry, "files/app", "1.0", platforms=("linux/amd64", "linux/arm64"))
    ref = f"{registry.host}/files/app:1.0"
    sig, payload, cert = tmp_path / "img.sig", tmp_path / "img.payload", tmp_path / "img.pem"
    out = run(["sign", "--key", str(key.private_path), "--upload=false", "--output-signature", str(sig),
               "--output-payload", str(payload), "--output-certificate", str(cert), ref])
    assert out.exit_code == 0, out.output
    assert cosign.SimpleSigning.from_bytes(payload.read_bytes()).manifest_digest == image.digest
    assert verify_signature(key.signer.public_key, base64.b64decode(sig.read_bytes()), payload.read_bytes())
    assert cert.read_bytes() == key.public_pem
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.payload", "img.pem", "img.sig"]
    # one digest only: usage errors naming the flags
    for extra, words in ((["--recursive"], "--output-signature and --recursive exclude each other"),
                         ([f"{registry.host}/files/app@{image.digest}"], "--output-signature hold one digest"),
                         (["--format", "bundle"], "--output-signature/--output-payload and --format bundle")):
        bad = run(["sign", "--key", str(key.private_path), "--upload=false", "--output-signature", str(sig),
                   *extra, ref])
        assert bad.exit_code == 2 and words in bad.stderr, bad.stderr
    as_dir = run(["sign", "--key", str(key.private_path), "--output-signature", str(tmp_path), ref])
    assert as_dir.exit_code == 2 and "with --output-dir DIR" in as_dir.stderr
    discard = run(["sign", "--key", str(key.private_path), "--upload=false", ref])
    assert discard.exit_code == 2 and "would discard" in discard.stderr


# ---- verify --local-image ----------------------------------------------------------------------------------

def test_local_image_from_an_oci_layout(registry: Registry, make_image: Callable[..., Image],
                                        keys: Callable[..., KeyPair], tmp_path: Path,
                                        network_guard: list[str]) -> None:
    key, other = keys("k1"), keys("k2")
    image = make_image(registry, "local/app", "1.0", platforms=("linux/amd64", "linux/arm64"))
    sign_pushed(registry, image, key, recursive=True, annotations={"env": "prod"})
    layout = tmp_path / "layout"
    assert run(["copy", f"{registry.host}/local/app:1.0", f"oci:{layout}:1.0"]).exit_code == 0
    registry.stop()  # no registry at all from here
    network_guard.clear()
    for text in (f"oci:{layout}:1.0", str(layout), f"oci:{layout}@{next(iter(image.children.values()))}"):
        ok = verify_key(key, "--local-image", "-a", "env=prod", text)
        assert ok.exit_code == 0, ok.output
    assert verify_key(other, "--local-image", str(layout)).exit_code == 1
    assert verify_key(key, "--local-image", "-a", "env=dev", str(layout)).exit_code == 1
    evidence = json.loads(verify_key(key, "--local-image", "--json", f"oci:{layout}:1.0").stdout)["results"][0]
    assert evidence["digest"] == image.digest and evidence["upstream"] is None
    assert not [a for a in network_guard if not a.startswith("dns:")]
    # signatures from a directory instead of the layout
    sigs = tmp_path / "sigs"
    sigs.mkdir()
    assert verify_key(key, "--local-image", "--signature-dir", str(sigs), str(layout)).exit_code == 1
    missing = verify_key(key, "--local-image", str(tmp_path / "nope"))
    assert missing.exit_code == 1 and "is not a directory" in missing.stdout


def test_local_image_usage_errors(keys: Callable[..., KeyPair], tmp_path: Path) -> None:
    key = keys()
    trust = write_trust(tmp_path / "trust", keys={"release": key.public_pem}, policy=cip("p", key_authority()))
    out = run(["verify", "--trust", str(trust), "--local-image", str(tmp_path)])
    assert out.exit_code == 2 and "--local-image with --trust" in out.stderr
    out = verify_key(key, "--local-image", "--signature-repo", "127.0.0.1:1/sigs", str(tmp_path))
    assert out.exit_code == 2 and "--local-image and --signature-repo conflict" in out.stderr
    out = verify_key(key, "--signature-dir", str(tmp_path), "--signature-repo", "127.0.0.1:1/sigs", "127.0.0.1:1/a")
    assert out.exit_code == 2 and "--signature-dir and --signature-repo conflict" in out.stderr


# ---- verify --certificate-chain ------------------------------------------------------------------------------

def test_certificate_chain_is_the_only_anchor(registry: Registry, make_image: Callable[..., Image],
                                              mini_sigstore: MiniSigstore, mini_sigstore_files: SigstoreFiles,
                                              tmp_path: Path) -> None:
    image = make_image(registry, "chain/app", "1.0")
    push_keyless_signature(registry, "chain/app", image.digest, mini_sigstore.issue(*IDENTITY), sigstore=mini_sigstore)
    ref = f"{registry.host}/chain/app:1.0"
    identity = ["--certificate-identity", IDENTITY[0], "--certificate-oidc-issuer", IDENTITY[1]]
    root = ["--trusted-root", str(mini_sigstore_files.trusted_root)]
    ok = run(["verify", *identity, *root, "--certificate-chain", str(mini_sigstore_files.fulcio_chain), ref])
    assert ok.exit_code == 0, ok.output
    # another CA's chain: the trusted root's own Fulcio CA no longer anchors the certificate
    other = MiniSigstore(name="other-ca").write_files(tmp_path / "other")
    out = run(["verify", *identity, *root, "--certificate-chain", str(other.fulcio_chain), ref])
    assert out.exit_code == 1 and "chain" in out.stdout
    # without the trusted root, the public-good root's logs cannot check this Rekor entry or SCT
    out = run(["verify", *identity, "--certificate-chain", str(mini_sigstore_files.fulcio_chain), ref])
    assert out.exit_code == 1
    ok = run(["verify", *identity, *root, "--certificate-chain", str(mini_sigstore_files.fulcio_chain),
              "--insecure-ignore-sct", "--json", ref])
    assert ok.exit_code == 0, ok.output
    checks = {c["name"] for e in json.loads(ok.stdout)["results"][0]["policies"][0]["authorities"][0]["evidence"]
              for c in e["checks"]}
    assert "chain" in checks and "sct" not in checks
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    out = run(["verify", *identity, "--certificate-chain", str(bad), ref])
    assert out.exit_code == 2 and "--certificate-chain: not a PEM certificate chain" in out.stderr


def test_certificate_chain_usage_errors(keys: Callable[..., KeyPair], tmp_path: Path,
                                        mini_sigstore_files: SigstoreFiles) -> None:
    key = keys()
    chain = str(mini_sigstore_files.fulcio_chain)
    out = verify_key(key, "--certificate-chain", chain, "127.0.0.1:1/x:1")
    assert out.exit_code == 2 and "--certificate-chain is for keyless verification" in out.stderr
    out = run(["verify", "--key", str(key.public_path), "--certificate-identity", "a@b", "--certificate-oidc-issuer",
               "https://i", "127.0.0.1:1/x:1"])
    assert out.exit_code == 2 and "--key and --certificate-identity" in out.stderr


# ---- triangulate -------------------------------------------------------------------------------------------

def test_triangulate(registry_factory: Callable[..., Registry], make_image: Callable[..., Image],
                     keys: Callable[..., KeyPair]) -> None:
    reg, refreg = registry_factory(), registry_factory(kind="referrers")
    key = keys()
    image = make_image(reg, "tri/app", "1.0")
    hexpart = image.digest.split(":")[1]
    for kind, ext in (("signature", "sig"), ("attestation", "att"), ("sbom", "sbom")):
        out = run(["triangulate", "--type", kind, f"{reg.host}/tri/app:1.0"])
        assert out.exit_code == 0 and out.stdout == f"{reg.host}/tri/app:sha256-{hexpart}.{ext}\n"
    assert run(["triangulate", f"{reg.host}/tri/app:1.0"]).stdout.endswith(".sig\n")
    out = run(["triangulate", f"{reg.host}/tri/app:1.0"], COSIGN_REPOSITORY=f"{reg.host}/sigs/app")
    assert out.stdout == f"{reg.host}/sigs/app:sha256-{hexpart}.sig\n"
    doc = json.loads(run(["triangulate", "--json", "--signature-repo", f"{reg.host}/other",
                          f"{reg.host}/tri/app:1.0"]).stdout)
    assert doc == {"reference": f"{reg.host}/tri/app:1.0", "digest": image.digest, "type": "signature",
                   "locations": [f"{reg.host}/other:sha256-{hexpart}.sig"]}
    # bundles: the referrers (API or fallback tag)
    for target in (reg, refreg):
        img = make_image(target, "tri/bundle", "1.0")
        ref = f"{target.host}/tri/bundle:1.0"
        none = run(["triangulate", "--type", "bundle", ref])
        assert none.exit_code == 1 and "no sigstore bundle refers to" in none.stderr
        entry = sign_pushed(target, img, key, fmt="bundle").signed[0]
        out = run(["triangulate", "--type", "bundle", ref])
        assert out.exit_code == 0 and out.stdout == f"{target.host}/tri/bundle@{entry.manifest}\n"
    missing = run(["triangulate", f"{reg.host}/tri/nothing:1.0"])
    assert missing.exit_code == 1 and missing.stderr.startswith("error: ")


# ---- cosign's names for registry flags and key commands -----------------------------------------------------

def test_allow_insecure_registry_and_registry_cacert(tls_auth_registry: Registry, make_image: Callable[..., Image],
                                                     keys: Callable[..., KeyPair], tmp_path: Path,
                                                     monkeypatch: Any) -> None:
    reg = tls_auth_registry
    key = keys()
    make_image(reg, "tls/app", "1.0")
    config = tmp_path / "docker"
    config.mkdir()
    auth = base64.b64encode(f"{reg.username}:{reg.password}".encode()).decode()
    (config / "config.json").write_text(json.dumps({"auths": {reg.host: {"auth": auth}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    ref = f"{reg.host}/tls/app:1.0"
    assert run(["sign", "--key", str(key.private_path), ref]).exit_code == 1  # self-signed: refused
    assert run(["sign", "--key", str(key.private_path), "--allow-insecure-registry", ref]).exit_code == 0
    assert verify_key(key, ref).exit_code == 1
    assert verify_key(key, "--allow-insecure-registry", ref).exit_code == 0
    assert verify_key(key, "--registry-cacert", str(reg.tls.ca_pem), ref).exit_code == 0
    assert run(["triangulate", "--allow-insecure-registry", ref]).exit_code == 0


def test_key_command_aliases(tmp_path: Path, monkeypatch: Any) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    monkeypatch.chdir(tmp_path)
    env = {"COSIGN_PASSWORD": "pw"}
    out = run(["generate-key-pair", "--output-key-prefix", "gen"], **env)
    assert out.exit_code == 0 and (tmp_path / "gen.key").exists() and (tmp_path / "gen.pub").exists()
    out = run(["key", "generate", "--output-key-prefix", "gen2"], **env)
    assert out.exit_code == 0 and (tmp_path / "gen2.key").exists()
    plain = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (tmp_path / "plain.pem").write_bytes(plain)
    out = run(["import-key-pair", "--key", "plain.pem", "--output-key-prefix", "imp"], **env)
    assert out.exit_code == 0, out.output
    assert (tmp_path / "imp.key").read_bytes().startswith(b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----")
    again = run(["import-key-pair", "-k", "plain.pem", "-o", "imp"], **env)
    assert again.exit_code == 2 and "--force" in again.stderr
    assert run(["import-key-pair", "-k", "plain.pem", "-o", "imp", "-y"], **env).exit_code == 0
    assert run(["key", "import", "plain.pem", "--output-prefix", "imp2"], **env).exit_code == 0
    both = run(["import-key-pair", "plain.pem", "-k", "plain.pem"], **env)
    assert both.exit_code == 2 and "once" in both.stderr
