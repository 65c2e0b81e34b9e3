"""The verbs and flags cosign users reach for, run with real cosign v2.4.1 (`cosign`) and v3.1.3 (`cosign3`) on the
same images as airgap: the verdicts (and, where cosign prints something machine-readable, the output) must agree.

- ``verify -a``: cosign v2's payload ``optional`` check and cosign v3's bundle-subject check, pair by pair;
- ``triangulate``: the same line for signatures, attestations and SBOMs, with and without ``COSIGN_REPOSITORY``;
- ``verify --signature-dir``: the files cosign ``sign --recursive --output-signature/--output-payload`` writes,
  against cosign's own ``verify --signature/--payload``;
- ``sign --output-signature/--output-payload/--output-certificate FILE``: the files cosign writes (same payload
  bytes, same certificate file), each tool verifying the other's;
- ``verify --local-image``: what ``cosign save`` (v2: legacy signatures; v3: bundle referrers) writes;
- ``verify --certificate-chain``: a keyless signature anchored by a chain file (and refused under another CA's);
- ``--allow-insecure-registry``: a self-signed TLS registry refused without it, accepted with it, by both;
- ``import-key-pair``: the same public key from the same PEM, and each tool signs with the other's key file.

cosign runs with HOME in a temporary directory and no TUF lookups (``--insecure-ignore-tlog``, the SIGSTORE_*
overrides, ``--trusted-root``), so nothing leaves loopback.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from conftest import require_tool
from support.fixtures_sigstore import push_keyless_signature
from support.images import Image, Pusher
from support.minisigstore import MiniSigstore, SigstoreFiles
from support.registries import Registry

from airgap.cli import cli

pytestmark = pytest.mark.peer("cosign")

PASSWORD = "verbs-pass"
IDENTITY = ("signer@airgap.test", "https://oidc.airgap.test")


def airgap(args: list[str], **env: str | None) -> Result:
    return CliRunner().invoke(cli, args, env={"COSIGN_PASSWORD": PASSWORD, "COSIGN_REPOSITORY": None,
                                              "SIGSTORE_ID_TOKEN": None, **env})


def cosign(tool: str, home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "TUF_ROOT": str(home / "tuf"),
            "COSIGN_YES": "true", "COSIGN_PASSWORD": PASSWORD, "NO_PROXY": "*", **env}
    return subprocess.run([require_tool(tool), *args], env=full, capture_output=True, text=True, timeout=120,  # noqa: S603
                          cwd=home, check=False)


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, f"{proc.args}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cosign's HOME, with a cosign-made key pair (release.key/.pub) and another public key (other.pub)."""
    home = tmp_path_factory.mktemp("cosign-verbs")
    for prefix in ("release", "other"):
        ok(cosign("cosign", home, "generate-key-pair", "--output-key-prefix", prefix))
    return home


def cosign_sign(tool: str, home: Path, ref: str, *extra: str, **env: str) -> None:
    args = ["sign", "--key", str(home / "release.key"), "--tlog-upload=false", "--allow-http-registry", *extra]
    if tool == "cosign3":
        args[1:1] = ["--use-signing-config=false"]
    ok(cosign(tool, home, *args, ref, **env))


def cosign_verify(tool: str, home: Path, ref: str, *extra: str, key: str = "release.pub",
                  **env: str) -> subprocess.CompletedProcess[str]:
    return cosign(tool, home, "verify", "--key", str(home / key), "--insecure-ignore-tlog",
                  "--allow-http-registry", *extra, ref, **env)


def airgap_verify(home: Path, ref: str, *extra: str, key: str = "release.pub") -> Result:
    return airgap(["verify", "--key", str(home / key), "--insecure-ignore-tlog", *extra, ref])


def suffix(digest: str) -> str:
    return digest.replace(":", "-", 1)


# ---- verify -a ----------------------------------------------------------------------------------------------

ANNOTATION_CASES = [("env=prod",), ("env=prod", "team=web"), ("team=web",), ("env=dev",), ("owner=ops",),
                    ("env=prod", "owner=ops")]


def test_annotations_verdicts_match_cosign(registry: Registry, referrers_registry: Registry,
                                           make_image: Callable[..., Image], home: Path) -> None:
    legacy = make_image(registry, "verbs/ann", "1.0")
    legacy_ref = f"{registry.host}/verbs/ann@{legacy.digest}"
    cosign_sign("cosign", home, legacy_ref, "-a", "env=prod", "-a", "team=web")
    bundle = make_image(referrers_registry, "verbs/ann", "1.0")
    bundle_ref = f"{referrers_registry.host}/verbs/ann@{bundle.digest}"
    cosign_sign("cosign3", home, bundle_ref, "-a", "env=prod", "-a", "team=web")
    verdicts = []
    for ref, tools in ((legacy_ref, ("cosign", "cosign3")), (bundle_ref, ("cosign3",))):
        for pairs in ANNOTATION_CASES:
            flags = [f for p in pairs for f in ("-a", p)]
            ours = airgap_verify(home, ref, *flags).exit_code == 0
            for tool in tools:
                theirs = cosign_verify(tool, home, ref, *flags).returncode == 0
                assert ours == theirs, (tool, ref, pairs)
            verdicts.append(ours)
    assert verdicts.count(True) == 3 * 2 and verdicts.count(False) == 3 * 2  # both outcomes were exercised


# ---- triangulate ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("tool", ["cosign", "cosign3"])
def test_triangulate_prints_what_cosign_prints(tool: str, registry: Registry, make_image: Callable[..., Image],
                                               home: Path) -> None:
    image = make_image(registry, "verbs/tri", "1.0")
    sigrepo = f"{registry.host}/verbs/signatures"
    for ref in (f"{registry.host}/verbs/tri:1.0", f"{registry.host}/verbs/tri@{image.digest}"):
        for kind in ("signature", "attestation", "sbom"):
            for env in ({}, {"COSIGN_REPOSITORY": sigrepo}):
                theirs = ok(cosign(tool, home, "triangulate", "--type", kind, ref, **env)).stdout
                ours = airgap(["triangulate", "--type", kind, ref], **env)
                assert ours.exit_code == 0 and ours.stdout == theirs, (kind, env, ours.output)


def test_triangulate_bundle_finds_what_cosign3_wrote(referrers_registry: Registry, make_image: Callable[..., Image],
                                                     home: Path) -> None:
    image = make_image(referrers_registry, "verbs/tri-bundle", "1.0")
    ref = f"{referrers_registry.host}/verbs/tri-bundle@{image.digest}"
    cosign_sign("cosign3", home, ref)
    out = airgap(["triangulate", "--type", "bundle", "--json", ref])
    assert out.exit_code == 0, out.output
    (location,) = json.loads(out.stdout)["locations"]
    data, _ = Pusher(referrers_registry.url).get_manifest("verbs/tri-bundle", location.split("@")[1])
    manifest = json.loads(data)
    assert manifest["subject"]["digest"] == image.digest
    assert manifest["artifactType"].startswith("application/vnd.dev.sigstore.bundle")


# ---- verify --signature-dir and sign's single output files --------------------------------------------------

def test_signature_dir_reads_what_cosign_writes(registry: Registry, make_image: Callable[..., Image], home: Path,
                                                tmp_path: Path) -> None:
    image = make_image(registry, "verbs/dir", "1.0", platforms=("linux/amd64", "linux/arm64"))
    out = tmp_path / "sigs"
    out.mkdir()
    cosign_sign("cosign", home, f"{registry.host}/verbs/dir:1.0", "--recursive", "--upload=false",
                "--output-signature", str(out / "signature"), "--output-payload", str(out / "payload"))
    digests = [image.digest, *image.children.values()]
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{n}-{suffix(d)}" for d in digests
                                                           for n in ("signature", "payload"))
    assert not [t for t in Pusher(registry.url).tags("verbs/dir") if t.endswith(".sig")]

    def both(digest: str, key: str = "release.pub") -> tuple[bool, bool]:
        ref = f"{registry.host}/verbs/dir@{digest}"
        theirs = cosign_verify("cosign", home, ref, "--signature", str(out / f"signature-{suffix(digest)}"),
                               "--payload", str(out / f"payload-{suffix(digest)}"), key=key).returncode == 0
        return airgap_verify(home, ref, "--signature-dir", str(out), key=key).exit_code == 0, theirs

    for digest in digests:
        assert both(digest) == (True, True)
        assert both(digest, "other.pub") == (False, False)
    child = digests[1]  # a signature over another digest's payload is refused by both
    shutil.copy(out / f"payload-{suffix(digests[0])}", out / f"payload-{suffix(child)}")
    shutil.copy(out / f"signature-{suffix(digests[0])}", out / f"signature-{suffix(child)}")
    assert both(child) == (False, False)


def test_output_files_are_cosigns(registry: Registry, make_image: Callable[..., Image], home: Path,
                                  tmp_path: Path) -> None:
    image = make_image(registry, "verbs/files", "1.0")
    ref = f"{registry.host}/verbs/files:1.0"
    files: dict[str, dict[str, Path]] = {}
    for who in ("cosign", "airgap"):
        files[who] = {n: tmp_path / f"{who}.{n}" for n in ("signature", "payload", "certificate")}
        flags = [f"--output-{n}={p}" for n, p in files[who].items()]
        if who == "cosign":
            cosign_sign("cosign", home, ref, "--upload=false", "-a", "env=prod", *flags)
        else:
            signed = airgap(["sign", "--key", str(home / "release.key"), "--upload=false", "-a", "env=prod",
                             *flags, ref])
            assert signed.exit_code == 0, signed.output
    assert files["airgap"]["payload"].read_bytes() == files["cosign"]["payload"].read_bytes()
    assert files["airgap"]["certificate"].read_bytes() == files["cosign"]["certificate"].read_bytes()
    assert json.loads(files["cosign"]["payload"].read_bytes())["critical"]["image"]["docker-manifest-digest"] \
        == image.digest
    for who in ("cosign", "airgap"):  # each tool verifies the other's signature file
        sig = base64.b64decode(files[who]["signature"].read_bytes(), validate=True)
        assert sig
        theirs = cosign_verify("cosign", home, ref, "--signature", str(files[who]["signature"]),
                               "--payload", str(files[who]["payload"]), "-a", "env=prod")
        assert theirs.returncode == 0, theirs.stderr
        sigdir = tmp_path / f"{who}-dir"
        sigdir.mkdir()
        shutil.copy(files[who]["signature"], sigdir / f"signature-{suffix(image.digest)}")
        shutil.copy(files[who]["payload"], sigdir / f"payload-{suffix(image.digest)}")
        assert airgap_verify(home, ref, "--signature-dir", str(sigdir), "-a", "env=prod").exit_code == 0
    refused = airgap(["sign", "--key", str(home / "release.key"), "--recursive", "--output-signature",
                      str(tmp_path / "x.sig"), ref])
    assert refused.exit_code == 2 and "--recursive" in refused.stderr


# ---- verify --local-image --------------------------------------------------------------------------------

@pytest.mark.parametrize("tool, platforms", [("cosign", ("linux/amd64", "linux/arm64")),
                                             ("cosign3", ("linux/amd64",))])
def test_local_image_of_cosign_save(tool: str, platforms: tuple[str, ...], registry_factory: Callable[..., Registry],
                                    make_image: Callable[..., Image], home: Path, tmp_path: Path) -> None:
    reg = registry_factory(kind="referrers" if tool == "cosign3" else "distribution2")
    image = make_image(reg, f"verbs/save-{tool}", "1.0", platforms=platforms)
    ref = f"{reg.host}/verbs/save-{tool}@{image.digest}"
    cosign_sign(tool, home, ref, "-a", "env=prod")
    layout = tmp_path / "saved"
    ok(cosign(tool, home, "save", "--dir", str(layout), "--allow-http-registry", ref))
    if tool == "cosign3":  # an index with a bundle: cosign v3.1.3 --local-image finds no signature, airgap does
        index = make_image(reg, "verbs/save-index", "1.0", platforms=("linux/amd64", "linux/arm64"))
        index_ref = f"{reg.host}/verbs/save-index@{index.digest}"
        cosign_sign(tool, home, index_ref)
        ok(cosign(tool, home, "save", "--dir", str(tmp_path / "index"), "--allow-http-registry", index_ref))
    reg.stop()  # offline from here: both read the layout only
    cases = [((), "release.pub", True), ((), "other.pub", False), (("-a", "env=prod"), "release.pub", True),
             (("-a", "env=dev"), "release.pub", False)]
    for extra, key, expected in cases:
        theirs = cosign(tool, home, "verify", "--key", str(home / key), "--insecure-ignore-tlog", "--local-image",
                        *extra, str(layout))
        ours = airgap(["verify", "--key", str(home / key), "--insecure-ignore-tlog", "--local-image", *extra,
                       str(layout)])
        assert (ours.exit_code == 0, theirs.returncode == 0) == (expected, expected), (extra, key, ours.output,
                                                                                        theirs.stderr)
    if tool == "cosign3":
        saved = airgap(["verify", "--key", str(home / "release.pub"), "--insecure-ignore-tlog", "--local-image",
                        str(tmp_path / "index")])
        assert saved.exit_code == 0 and "bundle-key signature" in saved.stdout, saved.output


# ---- verify --certificate-chain ------------------------------------------------------------------------------

def test_certificate_chain_verdicts_match_cosign(registry: Registry, make_image: Callable[..., Image],
                                                 mini_sigstore: MiniSigstore, mini_sigstore_files: SigstoreFiles,
                                                 home: Path, tmp_path: Path) -> None:
    image = make_image(registry, "verbs/chain", "1.0")
    push_keyless_signature(registry, "verbs/chain", image.digest, mini_sigstore.issue(*IDENTITY),
                           sigstore=mini_sigstore)
    ref = f"{registry.host}/verbs/chain@{image.digest}"
    other = MiniSigstore(name="other-ca").write_files(tmp_path / "other")
    identity = ["--certificate-identity", IDENTITY[0], "--certificate-oidc-issuer", IDENTITY[1]]
    # cosign v2: the chain file anchors the certificate; the Rekor and CT log keys come from the env overrides
    logs = {"SIGSTORE_REKOR_PUBLIC_KEY": str(mini_sigstore_files.rekor_pub),
            "SIGSTORE_CT_LOG_PUBLIC_KEY_FILE": str(mini_sigstore_files.ctlog_pub)}
    for chain, expected in ((mini_sigstore_files.fulcio_chain, True), (other.fulcio_chain, False)):
        theirs = cosign("cosign", home, "verify", "--allow-http-registry", *identity, "--certificate-chain",
                        str(chain), ref, **logs)
        ours = airgap(["verify", *identity, "--trusted-root", str(mini_sigstore_files.trusted_root),
                       "--certificate-chain", str(chain), ref])
        assert (ours.exit_code == 0, theirs.returncode == 0) == (expected, expected), (ours.output, theirs.stderr)
    wrong = [identity[0], "mallory@airgap.test", *identity[2:]]
    assert cosign("cosign", home, "verify", "--allow-http-registry", *wrong, "--certificate-chain",
                  str(mini_sigstore_files.fulcio_chain), ref, **logs).returncode != 0
    assert airgap(["verify", *wrong, "--trusted-root", str(mini_sigstore_files.trusted_root), "--certificate-chain",
                   str(mini_sigstore_files.fulcio_chain), ref]).exit_code == 1


# ---- --allow-insecure-registry and import-key-pair ------------------------------------------------------------

def test_allow_insecure_registry_as_cosign(tls_auth_registry: Registry, make_image: Callable[..., Image],
                                           home: Path, tmp_path: Path, monkeypatch: Any) -> None:
    reg = tls_auth_registry
    make_image(reg, "verbs/tls", "1.0")
    config = tmp_path / "docker"
    config.mkdir()
    auth = base64.b64encode(f"{reg.username}:{reg.password}".encode()).decode()
    (config / "config.json").write_text(json.dumps({"auths": {reg.host: {"auth": auth}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    ref = f"{reg.host}/verbs/tls:1.0"
    env = {"DOCKER_CONFIG": str(config)}
    assert cosign("cosign", home, "sign", "--key", str(home / "release.key"), "--tlog-upload=false",
                  ref, **env).returncode != 0
    assert airgap(["sign", "--key", str(home / "release.key"), ref]).exit_code == 1
    ok(cosign("cosign", home, "sign", "--key", str(home / "release.key"), "--tlog-upload=false",
              "--allow-insecure-registry", ref, **env))
    signed = airgap(["sign", "--key", str(home / "release.key"), "--allow-insecure-registry", ref])
    assert signed.exit_code == 0, signed.output
    for flags, expected in (((), False), (("--allow-insecure-registry",), True)):
        theirs = cosign("cosign", home, "verify", "--key", str(home / "release.pub"), "--insecure-ignore-tlog",
                        *flags, ref, **env).returncode == 0
        ours = airgap(["verify", "--key", str(home / "release.pub"), "--insecure-ignore-tlog", *flags,
                       "--json", ref])
        assert (ours.exit_code == 0, theirs) == (expected, expected), ours.output


def test_import_key_pair_as_cosign(registry: Registry, make_image: Callable[..., Image], home: Path,
                                   tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    work = tmp_path / "keys"
    work.mkdir()
    plain = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (work / "plain.pem").write_bytes(plain)
    ok(cosign("cosign", work, "import-key-pair", "--key", "plain.pem", "--output-key-prefix", "theirs"))
    out = airgap(["import-key-pair", "--key", str(work / "plain.pem"), "--output-key-prefix", str(work / "ours")])
    assert out.exit_code == 0, out.output
    assert (work / "ours.pub").read_bytes() == (work / "theirs.pub").read_bytes()
    image = make_image(registry, "verbs/imported", "1.0")
    ref = f"{registry.host}/verbs/imported@{image.digest}"
    ok(cosign("cosign", work, "sign", "--key", "ours.key", "--tlog-upload=false", "--allow-http-registry", ref))
    assert airgap(["sign", "--key", str(work / "theirs.key"), ref]).exit_code == 0
    ours = airgap(["verify", "--key", str(work / "ours.pub"), "--insecure-ignore-tlog", "--json", ref])
    assert ours.exit_code == 0
    assert len(json.loads(ours.stdout)["results"][0]["policies"][0]["authorities"][0]["evidence"]) >= 1
    ok(cosign("cosign", work, "verify", "--key", "theirs.pub", "--insecure-ignore-tlog", "--allow-http-registry",
              ref))
