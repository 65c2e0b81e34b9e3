"""`airgap verify` and `verify_image` end to end on a real registry: airgap signs, airgap verifies.

Real cosign's signatures and keyless signatures from the mini-Sigstore are verified in tests/interop.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric import ec
from support.trustdirs import airgap_policy, cip, key_authority, write_trust

from airgap.cli import cli
from airgap.keys.private import KeySigner
from airgap.keys.public import key_id, public_pem
from airgap.oci.registry import RegistryClient
from airgap.signing.sign import sign_image
from airgap.verification.trust import Trust


def _signer() -> KeySigner:
    return KeySigner(ec.generate_private_key(ec.SECP256R1()))


RELEASE = _signer()
OTHER = _signer()


def policy_yaml(glob: str, *, extra: str = "", no_match: str = "deny", mode: str = "enforce") -> str:
    return cip("team", key_authority("release"), glob, mode=mode) + airgap_policy(no_match, extra)


def make_trust(tmp: Path, policy: str) -> Path:
    return write_trust(tmp / "trust", keys={"release": public_pem(RELEASE.public_key)}, policy=policy)


def run(args: list[str], **kwargs: Any) -> Any:
    return CliRunner().invoke(cli, args, catch_exceptions=False, **kwargs)


@pytest.fixture
def signed(registry: Any, make_image: Any) -> Any:
    image = make_image(registry, "team/app", "1.0", platforms=("linux/amd64", "linux/arm64"))
    sign_image(f"{registry.host}/team/app:1.0", RELEASE, client=RegistryClient(), recursive=True)
    return image


def test_signed_image_is_allowed_with_evidence(registry: Any, signed: Any, tmp_path: Path) -> None:
    from airgap import verify_image

    trust = Trust.load(make_trust(tmp_path, policy_yaml(f"{registry.host}/team/**")))
    result = verify_image(f"{registry.host}/team/app:1.0", trust)
    assert result, result.reasons
    assert result.digest == signed.digest
    auth = result.policies[0].authorities[0]
    winner = next(e for e in auth.evidence if e.ok)
    assert winner.key_id == key_id(RELEASE.public_key)
    assert result.evidence["policies"][0]["name"] == "team"


def test_cli_verify_prints_checks_and_json(registry: Any, signed: Any, tmp_path: Path) -> None:
    trust = make_trust(tmp_path, policy_yaml(f"{registry.host}/team/**"))
    ref = f"{registry.host}/team/app:1.0"
    out = run(["verify", "--trust", str(trust), ref])
    assert out.exit_code == 0, out.output
    assert key_id(RELEASE.public_key) in out.stdout and "OK" in out.stdout
    out = run(["verify", "--trust", str(trust), "--json", ref])
    doc = json.loads(out.stdout)  # the same shape for one image as for many
    assert doc["summary"] == {"images": 1, "allow": 1, "warn": 0, "deny": 0, "ok": True}
    assert doc["results"][0]["allowed"] is True and doc["results"][0]["digest"] == signed.digest


def test_child_digest_needs_its_own_signature(registry: Any, make_image: Any, tmp_path: Path) -> None:
    image = make_image(registry, "team/multi", "1.0", platforms=("linux/amd64", "linux/arm64"))
    client = RegistryClient()
    sign_image(f"{registry.host}/team/multi:1.0", RELEASE, client=client)  # index only
    trust = make_trust(tmp_path, policy_yaml(f"{registry.host}/team/**"))
    child = image.children["linux/arm64"]
    assert run(["verify", "--trust", str(trust), f"{registry.host}/team/multi:1.0"]).exit_code == 0
    out = run(["verify", "--trust", str(trust), f"{registry.host}/team/multi@{child}"])
    assert out.exit_code == 1 and "no signatures found" in out.stdout
    sign_image(f"{registry.host}/team/multi:1.0", RELEASE, client=client, recursive=True)
    assert run(["verify", "--trust", str(trust), f"{registry.host}/team/multi@{child}"]).exit_code == 0


def test_unsigned_and_wrongly_signed_images_are_denied(registry: Any, make_image: Any, tmp_path: Path) -> None:
    make_image(registry, "team/unsigned", "1")
    make_image(registry, "team/other", "1")
    sign_image(f"{registry.host}/team/other:1", OTHER, client=RegistryClient())
    trust = make_trust(tmp_path, policy_yaml(f"{registry.host}/team/**"))
    out = run(["verify", "--trust", str(trust), f"{registry.host}/team/unsigned:1", f"{registry.host}/team/other:1"])
    assert out.exit_code == 1
    assert "no signatures found" in out.stdout
    assert "no signature verified" in out.stdout
    assert "2 of 2 image(s) failed verification" in out.stderr


def test_signature_copied_from_another_digest_is_rejected(registry: Any, make_image: Any, tmp_path: Path) -> None:
    from support.images import Pusher

    a = make_image(registry, "team/a", "1")
    b = make_image(registry, "team/a", "2")
    sign_image(f"{registry.host}/team/a:1", RELEASE, client=RegistryClient())
    pusher = Pusher(registry.url)
    data, mtype = pusher.get_manifest("team/a", a.digest.replace(":", "-") + ".sig")
    pusher.manifest("team/a", b.digest.replace(":", "-") + ".sig", data, mtype)
    trust = make_trust(tmp_path, policy_yaml(f"{registry.host}/team/**"))
    out = run(["verify", "--trust", str(trust), f"{registry.host}/team/a:2"])
    assert out.exit_code == 1
    assert a.digest in out.stdout  # the reason names the digest the payload was really signed for


def test_tampered_payload_is_rejected(registry: Any, make_image: Any, tmp_path: Path) -> None:
    from support.images import Pusher, canonical, sha256

    image = make_image(registry, "team/t", "1")
    sign_image(f"{registry.host}/team/t:1", RELEASE, client=RegistryClient())
    pusher = Pusher(registry.url)
    tag = image.digest.replace(":", "-") + ".sig"
    data, mtype = pusher.get_manifest("team/t", tag)
    manifest = json.loads(data)
    layer = manifest["layers"][0]
    payload = json.loads(pusher.session.get(f"{registry.url}/v2/team/t/blobs/{layer['digest']}").content)
    payload["optional"] = {"tampered": "yes"}
    forged = canonical(payload)
    layer["digest"], layer["size"] = pusher.blob("team/t", forged), len(forged)
    assert layer["digest"] == sha256(forged)
    pusher.manifest("team/t", tag, canonical(manifest), mtype)
    trust = make_trust(tmp_path, policy_yaml(f"{registry.host}/team/**"))
    out = run(["verify", "--trust", str(trust), f"{registry.host}/team/t:1"])
    assert out.exit_code == 1 and "signature" in out.stdout


def test_payload_cosign_writes_is_known_without_downloading_it(registry: Any, make_image: Any,
                                                                tmp_path: Path) -> None:
    """A payload with no annotations is fully determined by the image's name and digest: its hash matching
    the layer digest makes it the layer's content, so verification skips the download. Proven by deleting
    the payload blobs: the plain signature still verifies, the annotated one (unpredictable) cannot."""
    from support.images import Pusher

    plain = make_image(registry, "team/p", "1")
    annotated = make_image(registry, "team/p", "2")
    sign_image(f"{registry.host}/team/p:1", RELEASE, client=RegistryClient())
    sign_image(f"{registry.host}/team/p:2", RELEASE, client=RegistryClient(), annotations={"run": "42"})
    pusher = Pusher(registry.url)
    for image in (plain, annotated):
        data, _ = pusher.get_manifest("team/p", image.digest.replace(":", "-") + ".sig")
        layer = json.loads(data)["layers"][0]["digest"]
        assert pusher.session.delete(f"{registry.url}/v2/team/p/blobs/{layer}").status_code == 202
        assert pusher.session.get(f"{registry.url}/v2/team/p/blobs/{layer}").status_code == 404
    trust = make_trust(tmp_path, policy_yaml(f"{registry.host}/team/**"))
    assert run(["verify", "--trust", str(trust), f"{registry.host}/team/p:1"]).exit_code == 0
    out = run(["verify", "--trust", str(trust), f"{registry.host}/team/p:2"])
    assert out.exit_code == 1 and "BLOB_UNKNOWN" in out.stdout, out.stdout


def test_global_settings_no_match_allow_list_and_approved_registries(registry: Any, make_image: Any,
                                                                     tmp_path: Path) -> None:
    from airgap import verify_image

    make_image(registry, "elsewhere/tool", "1")
    host = registry.host
    deny = Trust.load(make_trust(tmp_path / "a", policy_yaml(f"{host}/team/**")))
    result = verify_image(f"{host}/elsewhere/tool:1", deny)
    assert not result and "no policy matches" in result.reasons[0]
    warn = Trust.load(make_trust(tmp_path / "b", policy_yaml(f"{host}/team/**", no_match="warn")))
    result = verify_image(f"{host}/elsewhere/tool:1", warn)
    assert result and result.decision == "warn" and result.warnings
    allow = Trust.load(make_trust(tmp_path / "c", policy_yaml(
        f"{host}/team/**", extra=f'  allow:\n    - "{host}/elsewhere/**"\n')))
    result = verify_image(f"{host}/elsewhere/tool:1", allow)
    assert result and result.decision == "allow"
    approved = Trust.load(make_trust(tmp_path / "d", policy_yaml(
        f"{host}/team/**", no_match="allow", extra="  approvedRegistries:\n    - registry1.dso.mil\n")))
    result = verify_image(f"{host}/elsewhere/tool:1", approved)
    assert not result and "registry1.dso.mil" in result.reasons[0]


def test_warn_mode_policy_allows_with_a_warning(registry: Any, make_image: Any, tmp_path: Path) -> None:
    from airgap import verify_image

    make_image(registry, "team/unsigned", "1")
    trust = Trust.load(make_trust(tmp_path, policy_yaml(f"{registry.host}/team/**", mode="warn")))
    result = verify_image(f"{registry.host}/team/unsigned:1", trust)
    assert result and result.decision == "warn" and "no signatures found" in result.warnings[0]


def test_signature_repository(registry: Any, make_image: Any, tmp_path: Path, monkeypatch: Any) -> None:
    make_image(registry, "team/sep", "1")
    sign_image(f"{registry.host}/team/sep:1", RELEASE, client=RegistryClient(),
               signature_repo=f"{registry.host}/sigs/sep")
    trust = make_trust(tmp_path, policy_yaml(f"{registry.host}/team/**"))
    ref = f"{registry.host}/team/sep:1"
    assert run(["verify", "--trust", str(trust), ref]).exit_code == 1
    assert run(["verify", "--trust", str(trust), "--signature-repo", f"{registry.host}/sigs/sep", ref]).exit_code == 0
    monkeypatch.setenv("COSIGN_REPOSITORY", f"{registry.host}/sigs/sep")
    assert run(["verify", "--trust", str(trust), ref]).exit_code == 0


def test_translated_ref_is_checked_against_its_upstream_policy(registry: Any, make_image: Any,
                                                               tmp_path: Path) -> None:
    """A Zarf-style local name maps back (map.json) to its upstream name, which the policy names."""
    from airgap.refs.translate import zarf_forward
    from airgap.refs.translation_map import TranslationMap

    upstream = "registry1.dso.mil/ironbank/app:1.0"
    local = zarf_forward(upstream, registry.host)
    image = make_image(registry, local.repository, local.tag)
    sign_image(str(local), RELEASE, client=RegistryClient())
    root = make_trust(tmp_path, policy_yaml("registry1.dso.mil/ironbank/**"))
    tmap = TranslationMap()
    tmap.add(upstream, local, image.digest)
    tmap.save(root / "map.json")
    out = run(["verify", "--trust", str(root), str(local)])
    assert out.exit_code == 0, out.output
    assert "registry1.dso.mil/ironbank/app" in out.stdout
    (root / "map.json").unlink()
    out = run(["verify", "--trust", str(root), str(local)])
    assert out.exit_code == 1 and "no policy matches" in out.stdout


def test_key_mode_and_bad_input(registry: Any, signed: Any, tmp_path: Path) -> None:
    pub = tmp_path / "release.pub"
    pub.write_bytes(public_pem(RELEASE.public_key))
    ref = f"{registry.host}/team/app:1.0"
    assert run(["verify", "--key", str(pub), "--insecure-ignore-tlog", ref]).exit_code == 0
    out = run(["verify", "--key", str(pub), ref])  # cosign's default: a transparency-log entry is required
    assert out.exit_code == 1 and "tlog" in out.stdout.lower()
    out = run(["verify", "--key", str(pub), "--insecure-ignore-tlog", f"{registry.host}/team/missing:1"])
    assert out.exit_code == 1 and "not found" in out.stdout
    out = run(["verify", ref])
    assert out.exit_code == 2 and out.stderr.startswith("error: nothing to verify against")
    out = run(["verify", "--trust", str(tmp_path / "nope"), ref])
    assert out.exit_code == 2 and "does not exist" in out.stderr


def test_verification_touches_only_the_local_registry(registry: Any, signed: Any, tmp_path: Path,
                                                      network_guard: list[str]) -> None:
    trust = make_trust(tmp_path, policy_yaml(f"{registry.host}/team/**"))
    network_guard.clear()
    assert run(["verify", "--trust", str(trust), f"{registry.host}/team/app:1.0"]).exit_code == 0
    assert network_guard and {a.rsplit(":", 1)[1] for a in network_guard} == {registry.host.rsplit(":", 1)[1]}


def test_registry_alias_reaches_the_registry_under_another_name(registry: Any, signed: Any, tmp_path: Path) -> None:
    """Pod specs say 127.0.0.1:31999/...; the verifier reaches that registry at its real address."""
    trust = make_trust(tmp_path, policy_yaml("127.0.0.1:31999/team/**"))
    ref = "127.0.0.1:31999/team/app:1.0"
    out = run(["verify", "--trust", str(trust), "--registry-alias", f"127.0.0.1:31999={registry.host}", ref])
    assert out.exit_code == 0, out.output
    out = run(["verify", "--trust", str(trust), "--registry-alias", "bad-alias", ref])
    assert out.exit_code == 2 and "bad-alias" in out.stderr
