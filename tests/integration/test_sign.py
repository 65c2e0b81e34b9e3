"""`airgap sign` / `airgap attest` against a real registry: what is written, appended, deduplicated, where,
and that a refused push leaves no manifest pointing at missing blobs.

Byte-compatibility with cosign is pinned by vectors recorded from cosign v2.4.1 and v3.1.3 (below); the
interop tests run real cosign against what airgap writes.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric import ec
from support.faultproxy import FaultProxy
from support.images import Image, Pusher, push_image, sha256
from support.registries import Registry
from support.signing import KeyPair, SignedImage, keypair, sign_pushed, signed_image, write_keypair

from airgap.checks import cosign
from airgap.cli import cli
from airgap.errors import AuthError, ConfigError, NotFoundError
from airgap.keys.private import KeySigner
from airgap.keys.public import verify_signature
from airgap.oci.manifest import Descriptor
from airgap.oci.registry import RegistryClient
from airgap.signing.attach import signature_config, signature_manifest
from airgap.signing.attest import attach_attestation, attest_image
from airgap.signing.bundles import build_bundle, bundle_manifest
from airgap.signing.sign import attach_signature, payload_for, sign_image
from airgap.signing.targets import docker_reference

__all__ = ["keypair", "signed_image"]  # fixtures imported for use here

SIMPLE = "application/vnd.dev.cosign.simplesigning.v1+json"


# ---- fixtures ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def reg(module_registry_factory: Callable[..., Registry]) -> Registry:
    """One distribution 2.8 registry for the module (no Referrers API); tests use distinct repos."""
    return module_registry_factory()


@pytest.fixture(scope="module")
def key1(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return write_keypair(tmp_path_factory.mktemp("k1"), "k1")


@pytest.fixture(scope="module")
def key2(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return write_keypair(tmp_path_factory.mktemp("k2"), "k2", kind="ecdsa-p384")


_counter = iter(range(10_000))


def push(reg: Registry, platforms: tuple[str, ...] = ("linux/amd64",), repo: str | None = None) -> Image:
    return push_image(Pusher(reg.url), repo or f"team/img{next(_counter)}", "1.0", platforms=platforms)


def manifest_doc(reg: Registry, repo: str, ref: str) -> tuple[bytes, dict]:
    data, _ = Pusher(reg.url).get_manifest(repo, ref)
    return data, json.loads(data)


def blob(reg: Registry, repo: str, digest: str) -> bytes:
    r = Pusher(reg.url).session.get(f"{reg.url}/v2/{repo}/blobs/{digest}")
    assert r.status_code == 200, r.status_code
    return r.content


def sig_tag(digest: str) -> str:
    return cosign.signature_tag(digest)


# ---- byte compatibility (vectors recorded from real cosign) ------------------------------------------

# cosign v2.4.1 `sign --key ... --tlog-upload=false -a foo=bar 127.0.0.1:5101/team/app:1.0`:
V_DIGEST = "sha256:40ee3428d34c7ba039c582d36316448e7a5703d13d6cd564252b0afc3ebdabde"
V_PAYLOAD = (b'{"critical":{"identity":{"docker-reference":"127.0.0.1:5101/team/app"},"image":'
             b'{"docker-manifest-digest":'
             b'"sha256:40ee3428d34c7ba039c582d36316448e7a5703d13d6cd564252b0afc3ebdabde"},'
             b'"type":"cosign container image signature"},"optional":{"foo":"bar"}}')
V_SIG = "MEUCIDca1FQ1p0+Xz2tX7DWZi9g1Vg56Nzutqh9gqvJbHl+mAiEA/IAuM5WQEaQp64x1nj5HL7sVlBCbCKRQOxw+tTR/RhY="
V_SIG_MANIFEST = "sha256:472dbc0b56b20dbd54bd3a7a327f5b8c2722ebe3afc716fa225590b2d39f23b8"
V_CONFIG_1 = "sha256:63b197633cbd9ebc3f8aae98b5d7ff23aa86203cf8442f7461b2a48846b0ee81"
V_CONFIG_2 = "sha256:c055e05025620c9f823eb7d92071b9ca724c8cc2bc62f9efd898644c8faf436c"
V_LAYER_2 = "sha256:65b93100ace73eeb4e5c94f5f6c1bacb5e7cecded4d8c4804fe7734db7d3ff0a"


def test_payload_config_and_manifest_are_byte_identical_to_cosign() -> None:
    from airgap import refs

    ref = refs.parse("127.0.0.1:5101/team/app:1.0")
    payload = payload_for(docker_reference(ref), V_DIGEST, {"foo": "bar"})
    assert payload == V_PAYLOAD
    layer = Descriptor(SIMPLE, sha256(payload), len(payload), annotations={cosign.ANN_SIGNATURE: V_SIG})
    manifest, config = signature_manifest([layer])
    assert sha256(config) == V_CONFIG_1
    assert sha256(manifest) == V_SIG_MANIFEST
    assert sha256(signature_config([layer.digest, V_LAYER_2])) == V_CONFIG_2
    # Without annotations cosign writes "optional":null; Go escapes HTML characters; Hub is index.docker.io.
    assert payload_for("r/x", V_DIGEST, None).endswith(b',"optional":null}')
    assert b'"a":"\\u003cb\\u003e\\u0026"' in payload_for("r/x", V_DIGEST, {"a": "<b>&"})
    assert docker_reference(refs.parse("nginx")) == "index.docker.io/library/nginx"


def test_bundle_matches_cosign_v3_shape(key1: KeyPair) -> None:
    bundle = build_bundle(key1.signer, "r/x", V_DIGEST, {"foo": "bar"})
    doc = json.loads(bundle)
    assert list(doc) == ["mediaType", "verificationMaterial", "dsseEnvelope"]
    assert doc["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    assert list(doc["verificationMaterial"]) == ["publicKey"]
    hint = base64.b64decode(doc["verificationMaterial"]["publicKey"]["hint"])
    assert "sha256:" + hint.hex() == key1.key_id
    env = cosign.Envelope.from_json(doc["dsseEnvelope"])
    assert env.payload_type == "application/vnd.in-toto+json"
    assert verify_signature(key1.signer.public_key, env.signatures[0][1], env.pae)
    assert "keyid" not in doc["dsseEnvelope"]["signatures"][0]
    statement = json.loads(env.payload)
    assert statement == {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"digest": {"sha256": V_DIGEST.split(":")[1]}, "annotations": {"foo": "bar"}}],
        "predicateType": "https://sigstore.dev/cosign/sign/v1", "predicate": {}}
    subject = Descriptor("application/vnd.oci.image.manifest.v1+json", V_DIGEST, 402)
    m = json.loads(bundle_manifest(bundle, subject).data)
    assert m["artifactType"] == m["config"]["artifactType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    assert m["config"] == {"mediaType": "application/vnd.oci.empty.v1+json", "size": 2,
                           "digest": sha256(b"{}"), "artifactType": m["artifactType"]}
    assert m["layers"] == [{"mediaType": m["artifactType"], "size": len(bundle), "digest": sha256(bundle)}]
    assert m["subject"] == {"mediaType": subject.media_type, "size": 402, "digest": V_DIGEST}
    assert m["annotations"]["dev.sigstore.bundle.content"] == "dsse-envelope"
    assert m["annotations"]["dev.sigstore.bundle.predicateType"] == "https://sigstore.dev/cosign/sign/v1"
    assert "org.opencontainers.image.created" in m["annotations"]


# ---- legacy signatures ------------------------------------------------------------------------------

def test_sign_resolves_tag_and_writes_a_cosign_sig_manifest(reg: Registry, key1: KeyPair) -> None:
    img = push(reg)
    summary = sign_image(f"{reg.host}/{img.repo}:1.0", key1.signer, client=RegistryClient(),
                         annotations={"team": "a"})
    assert summary.digest == img.digest
    [entry] = summary.signed
    assert entry.written == f"{reg.host}/{img.repo}:{sig_tag(img.digest)}" and not entry.duplicate
    data, doc = manifest_doc(reg, img.repo, sig_tag(img.digest))
    assert sha256(data) == entry.manifest
    [layer] = doc["layers"]
    assert layer["mediaType"] == SIMPLE and list(layer["annotations"]) == [cosign.ANN_SIGNATURE]
    payload = blob(reg, img.repo, layer["digest"])
    parsed = cosign.SimpleSigning.from_bytes(payload)
    assert parsed.manifest_digest == img.digest
    assert parsed.docker_reference == f"{reg.host}/{img.repo}"
    assert parsed.optional == {"team": "a"}
    sig = base64.b64decode(layer["annotations"][cosign.ANN_SIGNATURE])
    assert verify_signature(key1.signer.public_key, sig, payload)
    config = json.loads(blob(reg, img.repo, doc["config"]["digest"]))
    assert config["rootfs"]["diff_ids"] == [layer["digest"]]


def test_signatures_accumulate_and_duplicates_are_skipped(reg: Registry, key1: KeyPair, key2: KeyPair) -> None:
    img = push(reg)
    ref = f"{reg.host}/{img.repo}@{img.digest}"
    client = RegistryClient()
    first = sign_image(ref, key1.signer, client=client).signed[0]
    again = sign_image(ref, key1.signer, client=client).signed[0]
    assert again.duplicate and again.manifest == first.manifest  # ECDSA is randomized: dedupe by verifying
    other = sign_image(ref, key2.signer, client=client).signed[0]
    assert not other.duplicate and other.manifest != first.manifest
    annotated = sign_image(ref, key1.signer, client=client, annotations={"x": "y"}).signed[0]
    assert not annotated.duplicate  # a different payload is a different signature
    _, doc = manifest_doc(reg, img.repo, sig_tag(img.digest))
    assert len(doc["layers"]) == 3
    keys = [key1, key2, key1]
    for layer, key in zip(doc["layers"], keys, strict=True):
        sig = base64.b64decode(layer["annotations"][cosign.ANN_SIGNATURE])
        assert verify_signature(key.signer.public_key, sig, blob(reg, img.repo, layer["digest"]))
    config = json.loads(blob(reg, img.repo, doc["config"]["digest"]))
    assert config["rootfs"]["diff_ids"] == [layer["digest"] for layer in doc["layers"]]
    assert len(config["history"]) == 3


def test_recursive_signs_the_index_and_every_child(reg: Registry, key1: KeyPair) -> None:
    img = push(reg, platforms=("linux/amd64", "linux/arm64"))
    summary = sign_image(f"{reg.host}/{img.repo}:1.0", key1.signer, client=RegistryClient(), recursive=True)
    assert [e.digest for e in summary.signed] == [img.digest, *img.children.values()]
    tags = set(Pusher(reg.url).tags(img.repo))
    assert {sig_tag(d) for d in [img.digest, *img.children.values()]} <= tags
    flat = push(reg, platforms=("linux/amd64", "linux/arm64"))
    sign_image(f"{reg.host}/{flat.repo}:1.0", key1.signer, client=RegistryClient())
    assert [t for t in Pusher(reg.url).tags(flat.repo) if t.endswith(".sig")] == [sig_tag(flat.digest)]


@pytest.mark.parametrize("via", ["flag", "env"])
def test_signature_repo_flag_and_cosign_repository_env(reg: Registry, key1: KeyPair, via: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    img = push(reg)
    target = f"sigs/{via}{next(_counter)}"
    kwargs = {"signature_repo": f"{reg.host}/{target}"} if via == "flag" else {}
    if via == "env":
        monkeypatch.setenv("COSIGN_REPOSITORY", f"{reg.host}/{target}")
    entry = sign_image(f"{reg.host}/{img.repo}:1.0", key1.signer, client=RegistryClient(), **kwargs).signed[0]
    assert entry.written == f"{reg.host}/{target}:{sig_tag(img.digest)}"
    assert Pusher(reg.url).tags(target) == [sig_tag(img.digest)]
    assert sig_tag(img.digest) not in Pusher(reg.url).tags(img.repo)
    _, doc = manifest_doc(reg, target, sig_tag(img.digest))
    payload = cosign.SimpleSigning.from_bytes(blob(reg, target, doc["layers"][0]["digest"]))
    assert payload.docker_reference == f"{reg.host}/{img.repo}"  # the image, not where the signature lives


def test_output_dir_and_upload_false(reg: Registry, key1: KeyPair, tmp_path: Path) -> None:
    img = push(reg, platforms=("linux/amd64", "linux/arm64"))
    out = tmp_path / "out"
    summary = sign_image(f"{reg.host}/{img.repo}:1.0", key1.signer, client=RegistryClient(), recursive=True,
                         upload=False, output_dir=out)
    assert all(e.written is None for e in summary.signed)
    assert not [t for t in Pusher(reg.url).tags(img.repo) if t.endswith(".sig")]
    for digest in [img.digest, *img.children.values()]:
        suffix = digest.replace(":", "-")
        payload = (out / f"payload-{suffix}").read_bytes()
        sig = base64.b64decode((out / f"signature-{suffix}").read_bytes())
        assert cosign.SimpleSigning.from_bytes(payload).manifest_digest == digest
        assert verify_signature(key1.signer.public_key, sig, payload)
        assert (out / f"payload-{suffix}").stat().st_mode & 0o777 == 0o600
    with pytest.raises(ConfigError, match="discard"):
        sign_image(f"{reg.host}/{img.repo}:1.0", key1.signer, client=RegistryClient(), upload=False)
    bundle_out = tmp_path / "bundles"
    sign_image(f"{reg.host}/{img.repo}:1.0", key1.signer, client=RegistryClient(), upload=False,
               output_dir=bundle_out, fmt="bundle")
    assert [p.name for p in bundle_out.iterdir()] == [f"bundle-{img.digest.replace(':', '-')}.json"]
    env = cosign.Envelope.from_json(json.loads(next(bundle_out.iterdir()).read_bytes())["dsseEnvelope"])
    assert verify_signature(key1.signer.public_key, env.signatures[0][1], env.pae)
    assert Pusher(reg.url).tags(img.repo) == ["1.0"]  # no fallback index either


def test_attach_signature_with_extra_annotations(reg: Registry, key1: KeyPair) -> None:
    img = push(reg)
    payload = payload_for(f"{reg.host}/{img.repo}", img.digest, None)
    sig = key1.signer.sign(payload)
    extra = {cosign.ANN_CERTIFICATE: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
             cosign.ANN_BUNDLE: '{"SignedEntryTimestamp":"x"}'}
    client = RegistryClient()
    first = attach_signature(client, reg.host, img.repo, img.digest, payload, sig, extra)
    assert attach_signature(client, reg.host, img.repo, img.digest, payload, sig, extra) == first
    _, doc = manifest_doc(reg, img.repo, sig_tag(img.digest))
    assert len(doc["layers"]) == 1
    assert doc["layers"][0]["annotations"] == {**extra, cosign.ANN_SIGNATURE: base64.b64encode(sig).decode()}
    # Signatures are deterministic (RFC 6979): re-signing is the same layer; another signer's is a new one.
    assert attach_signature(client, reg.host, img.repo, img.digest, payload, key1.signer.sign(payload), extra) == first
    other = KeySigner(ec.generate_private_key(ec.SECP256R1()))
    attach_signature(client, reg.host, img.repo, img.digest, payload, other.sign(payload), extra)
    assert len(manifest_doc(reg, img.repo, sig_tag(img.digest))[1]["layers"]) == 2


# ---- bundles ------------------------------------------------------------------------------------------

def test_bundle_on_referrers_registry(referrers_registry: Registry, key1: KeyPair) -> None:
    img = push(referrers_registry)
    entry = sign_image(f"{referrers_registry.host}/{img.repo}:1.0", key1.signer, client=RegistryClient(),
                       fmt="bundle").signed[0]
    r = Pusher(referrers_registry.url).session.get(
        f"{referrers_registry.url}/v2/{img.repo}/referrers/{img.digest}")
    listed = r.json()["manifests"]
    assert [d["digest"] for d in listed] == [entry.manifest]
    assert entry.written == f"{referrers_registry.host}/{img.repo}@{entry.manifest}"
    _, doc = manifest_doc(referrers_registry, img.repo, entry.manifest or "")
    assert doc["subject"]["digest"] == img.digest
    bundle = json.loads(blob(referrers_registry, img.repo, doc["layers"][0]["digest"]))
    stmt = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    assert stmt["subject"][0]["digest"]["sha256"] == img.digest.split(":")[1]


def test_bundle_on_plain_registry_uses_the_fallback_tag(reg: Registry, key1: KeyPair, key2: KeyPair) -> None:
    img = push(reg)
    client = RegistryClient()
    a = sign_image(f"{reg.host}/{img.repo}:1.0", key1.signer, client=client, fmt="bundle").signed[0]
    b = sign_image(f"{reg.host}/{img.repo}:1.0", key2.signer, client=client, fmt="bundle").signed[0]
    _, index = manifest_doc(reg, img.repo, img.digest.replace(":", "-"))
    assert [d["digest"] for d in index["manifests"]] == [a.manifest, b.manifest]
    assert {d["artifactType"] for d in index["manifests"]} == {"application/vnd.dev.sigstore.bundle.v0.3+json"}


# ---- attestations -------------------------------------------------------------------------------------

def test_attest_writes_a_cosign_att_layer(reg: Registry, key1: KeyPair, tmp_path: Path) -> None:
    img = push(reg)
    client = RegistryClient()
    ref = f"{reg.host}/{img.repo}:1.0"
    attest_image(ref, key1.signer, client=client, predicate=b'{"hello": "world"}\n', predicate_type="custom")
    attest_image(ref, key1.signer, client=client, predicate=b'{"b": 1, "a": [2]}',
                 predicate_type="https://example.com/custom/v1")
    tag = cosign.attestation_tag(img.digest)
    _, doc = manifest_doc(reg, img.repo, tag)
    assert [layer["annotations"] for layer in doc["layers"]] == [
        {cosign.ANN_SIGNATURE: "", "predicateType": "https://cosign.sigstore.dev/attestation/v1"},
        {cosign.ANN_SIGNATURE: "", "predicateType": "https://example.com/custom/v1"}]
    assert {layer["mediaType"] for layer in doc["layers"]} == {"application/vnd.dsse.envelope.v1+json"}
    env = cosign.Envelope.from_bytes(blob(reg, img.repo, doc["layers"][0]["digest"]))
    assert env.signatures[0][0] == "" and verify_signature(key1.signer.public_key, env.signatures[0][1], env.pae)
    stmt = cosign.Statement.from_bytes(env.payload)
    assert stmt.names_digest(img.digest) and stmt.subjects[0][0] == f"{reg.host}/{img.repo}"
    assert stmt.predicate["Data"] == '{"hello": "world"}\n' and stmt.predicate["Timestamp"].endswith("Z")
    second = cosign.Statement.from_bytes(cosign.Envelope.from_bytes(
        blob(reg, img.repo, doc["layers"][1]["digest"])).payload)
    assert second.predicate == {"a": [2], "b": 1}
    # --replace drops the earlier attestation of the same type and keeps the others.
    attest_image(ref, key1.signer, client=client, predicate=b"v2", predicate_type="custom", replace=True)
    _, doc = manifest_doc(reg, img.repo, tag)
    assert [layer["annotations"]["predicateType"] for layer in doc["layers"]] == [
        "https://example.com/custom/v1", "https://cosign.sigstore.dev/attestation/v1"]
    with pytest.raises(ConfigError, match="unknown predicate type"):
        attest_image(ref, key1.signer, client=client, predicate=b"{}", predicate_type="nope")
    with pytest.raises(ConfigError, match="JSON object"):
        attest_image(ref, key1.signer, client=client, predicate=b"[1]", predicate_type="openvex")


# ---- failures leave nothing half-written ----------------------------------------------------------------

@pytest.fixture
def proxy(reg: Registry) -> Iterator[FaultProxy]:
    p = FaultProxy(reg.host).start()
    yield p
    p.stop()


def test_refused_manifest_push_leaves_existing_signatures_untouched(reg: Registry, key1: KeyPair,
                                                                    key2: KeyPair, proxy: FaultProxy) -> None:
    img = push(reg)
    first = sign_image(f"{reg.host}/{img.repo}@{img.digest}", key1.signer, client=RegistryClient()).signed[0]
    proxy.add("status", "/manifests/", methods=("PUT",), status=403)
    with pytest.raises(AuthError, match="403"):
        sign_image(f"{proxy.host}/{img.repo}@{img.digest}", key2.signer, client=RegistryClient())
    data, _ = manifest_doc(reg, img.repo, sig_tag(img.digest))
    assert sha256(data) == first.manifest
    with pytest.raises(AuthError):
        attest_image(f"{proxy.host}/{img.repo}@{img.digest}", key2.signer, client=RegistryClient(),
                     predicate=b"x")
    assert cosign.attestation_tag(img.digest) not in Pusher(reg.url).tags(img.repo)


def test_refused_blob_upload_writes_no_manifest(reg: Registry, key1: KeyPair, proxy: FaultProxy) -> None:
    img = push(reg)
    proxy.add("status", "/blobs/uploads/", methods=("POST", "PUT", "PATCH"), status=403)
    for fmt in ("legacy", "bundle"):
        with pytest.raises(AuthError):
            sign_image(f"{proxy.host}/{img.repo}@{img.digest}", key1.signer, client=RegistryClient(),
                       fmt=fmt)  # type: ignore[arg-type]
    assert Pusher(reg.url).tags(img.repo) == ["1.0"]
    assert not any(method == "PUT" and "/manifests/" in path for method, path, _ in proxy.log)


def test_missing_image_fails_before_signing(reg: Registry, key1: KeyPair, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        sign_image(f"{reg.host}/team/nothing:1.0", key1.signer, client=RegistryClient(), output_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_attach_attestation_low_level(reg: Registry) -> None:
    img = push(reg)
    digest = attach_attestation(RegistryClient(), reg.host, img.repo, img.digest, b'{"payloadType":"x"}',
                                "https://example.com/t")
    data, _ = manifest_doc(reg, img.repo, cosign.attestation_tag(img.digest))
    assert sha256(data) == digest


def test_signed_image_fixture(reg: Registry, signed_image: Callable[..., SignedImage]) -> None:
    s = signed_image(reg, "team/fixture", platforms=("linux/amd64", "linux/arm64"), recursive=True)
    assert len(s.summary.signed) == 3 and s.summary.digest == s.digest
    again = sign_pushed(reg, s.image, s.key)
    assert again.signed[0].duplicate


# ---- CLI -----------------------------------------------------------------------------------------------

def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_cli_sign_json_and_text(reg: Registry, key1: KeyPair, tmp_path: Path) -> None:
    a = push(reg, platforms=("linux/amd64", "linux/arm64"))
    b = push(reg)
    code, out, err = run("sign", "--key", str(key1.private_path), "--recursive", "--json", "-a", "k=v",
                         f"{reg.host}/{a.repo}:1.0", f"{reg.host}/{b.repo}:1.0")
    assert code == 0, err
    doc = json.loads(out)
    assert [i["digest"] for i in doc["images"]] == [a.digest, b.digest]
    assert [e["digest"] for e in doc["images"][0]["signed"]] == [a.digest, *a.children.values()]
    assert doc["images"][1]["signed"][0]["written"] == f"{reg.host}/{b.repo}:{sig_tag(b.digest)}"
    code, out, err = run("sign", "--key", str(key1.private_path), f"{reg.host}/{b.repo}:1.0", "-a", "k=v",
                         f"{reg.host}/{a.repo}:1.0", "--tlog-upload=false", "--output-dir", str(tmp_path))
    assert code == 0, err
    assert f"signed {reg.host}/{b.repo}@{b.digest}" in out
    assert "(already present)" in out and "digest(s) of 2 image(s) in" in out
    assert (tmp_path / f"signature-{b.digest.replace(':', '-')}").exists()


def test_cli_attest_and_bundle(reg: Registry, key1: KeyPair, tmp_path: Path) -> None:
    img = push(reg)
    pred = tmp_path / "pred.json"
    pred.write_text('{"vex": true}')
    code, out, err = run("attest", "--key", str(key1.private_path), "--predicate", str(pred), "--type", "openvex",
                         "--json", f"{reg.host}/{img.repo}:1.0")
    assert code == 0, err
    assert json.loads(out)["images"][0]["signed"][0]["written"].endswith(".att")
    code, out, err = run("sign", "--key", str(key1.private_path), "--format", "bundle", f"{reg.host}/{img.repo}:1.0")
    assert code == 0, err
    assert "signed" in out and "@sha256:" in out


def test_cli_bad_input_is_one_line(reg: Registry, key1: KeyPair, tmp_path: Path) -> None:
    img = push(reg)
    ref = f"{reg.host}/{img.repo}:1.0"
    cases = [
        (["sign", "--key", str(tmp_path / "missing.key"), ref], 2, "missing.key"),
        (["sign", "--key", str(key1.private_path), f"{reg.host}/team/absent:1.0"], 1, "not found"),
        (["sign", "--key", str(key1.private_path), "--tlog-upload=true", ref], 2, "offline"),
        (["sign", "--key", str(key1.private_path), "-a", "novalue", ref], 2, "key=value"),
        (["sign", "--key", str(key1.private_path), "--upload=false", ref], 2, "discard"),
        (["attest", "--key", str(key1.private_path), "--predicate", str(key1.public_path), "--type", "bogus", ref],
         2, "unknown predicate type"),
    ]
    for args, want_code, needle in cases:
        code, _, err = run(*args)
        assert code == want_code, (args, err)
        assert err.startswith("error: ") and err.count("\n") == 1 and needle in err, (args, err)
    assert Pusher(reg.url).tags(img.repo) == ["1.0"]


def test_cli_wrong_password(reg: Registry, keypair: Callable[..., KeyPair]) -> None:
    key = keypair("enc", password=b"right")
    img = push(reg)
    ref = f"{reg.host}/{img.repo}:1.0"
    code, _, err = run("sign", "--key", str(key.private_path), ref, env={"COSIGN_PASSWORD": "wrong"})
    assert code != 0 and err.startswith("error: ") and "password" in err and err.count("\n") == 1
    code, _, err = run("sign", "--key", str(key.private_path), ref, env={"COSIGN_PASSWORD": "right"})
    assert code == 0, err
    assert sig_tag(img.digest) in Pusher(reg.url).tags(img.repo)
