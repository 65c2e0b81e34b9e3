"""Verification that cannot be fooled: one adversarial test per guarantee of issue 13 that concerns what a
verdict means (1 policies survive load, 2 a pinned ca-cert is the only anchor, 3 N-of-M counts distinct
signers, 4 DSSE payloadType, 5 an attestation is not a signature, 8 bounded work per image, 16 CEL sees the
whole statement). Every test drives the real path: a real registry, real signatures, a real bundle where one
is involved, and the CLI or the public API. Each failed on main before the fixes (see the docstrings).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from support.fixtures_sigstore import push_bundle_referrer, push_keyless_signature
from support.images import OCI_MANIFEST, Pusher, canonical, push_image
from support.minisigstore import MiniSigstore, cert_pem
from support.registries import Registry
from support.trustdirs import write_trust

from airgap import Trust, verify_image
from airgap.admission.service import AdmissionService, WebhookConfig
from airgap.checks import cosign
from airgap.cli import cli
from airgap.errors import ConfigError
from airgap.keys.private import KeySigner
from airgap.keys.public import key_id, public_pem
from airgap.oci.manifest import Manifest
from airgap.oci.registry import RegistryClient
from airgap.refs.translate import zarf_forward
from airgap.signing.attach import push_bytes, signature_manifest
from airgap.signing.attest import attach_attestation, attest_image
from airgap.signing.bundles import sign_dsse
from airgap.signing.sign import sign_image
from airgap.verification.adhoc import policy_for_keys

RELEASE = KeySigner(ec.generate_private_key(ec.SECP256R1()))
NIGHTLY = KeySigner(ec.generate_private_key(ec.SECP256R1()))
IDENTITY = ("signer@airgap.test", "https://oidc.airgap.test")


def run(args: list[str]) -> Any:
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def cip(name: str, glob: str, authorities: str, spec: str = "") -> str:
    return f"""\
---
apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata: {{name: {name}}}
spec:
  images: [{{glob: "{glob}"}}]
{spec}  authorities:
{authorities}"""


def key_data(signer: KeySigner, name: str) -> str:
    pem = public_pem(signer.public_key).decode().replace("\n", "\n          ")
    return f"    - name: {name}\n      key:\n        data: |\n          {pem}\n      ctlog: {{disabled: true}}\n"


# ---- guarantee 1: policies survive load ---------------------------------------------------------------


def test_tag_scoped_policy_still_applies_after_load(registry_factory: Any, tmp_path: Path) -> None:
    """Guarantee 1. One digest shipped as ``busybox:1.36`` and ``busybox:latest``; a policy scoped to
    ``:latest`` needs a second key. After load, someone with the local registry drops that signature: the
    local ``latest`` ref and the bare digest must still be judged by the ``:latest`` policy (on main the map
    lookup by digest dropped the tag, the policy stopped matching, and both were admitted)."""
    src, dst = registry_factory(), registry_factory()
    image = push_image(Pusher(src.url), "lib/busybox", "1.36")
    Pusher(src.url).manifest("lib/busybox", "latest", image.manifest, image.media_type)
    client = RegistryClient()
    for signer in (RELEASE, NIGHTLY):
        sign_image(f"{src.host}/lib/busybox@{image.digest}", signer, client=client)
    (tmp_path / "release.pub").write_bytes(public_pem(RELEASE.public_key))
    (tmp_path / "nightly.pub").write_bytes(public_pem(NIGHTLY.public_key))
    bundle_key = tmp_path / "bundle.key"
    bkey = ec.generate_private_key(ec.SECP256R1())
    bundle_key.write_bytes(bkey.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
    (tmp_path / "bundle.pub").write_bytes(public_pem(bkey.public_key()))
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"""\
apiVersion: airgap/v1
kind: Bundle
metadata: {{name: busybox, version: 1.0.0}}
created: 1700000000
images: [{src.host}/lib/busybox:1.36, {src.host}/lib/busybox:latest]
keys:
  - {{name: release, path: release.pub}}
  - {{name: nightly, path: nightly.pub}}
policies:
  - name: all
    images: [{{glob: "{src.host}/lib/**"}}]
    authorities: [{{key: {{name: release}}, ctlog: {{disabled: true}}}}]
  - name: latest-needs-nightly
    images: [{{glob: "{src.host}/lib/**:latest"}}]
    authorities: [{{key: {{name: nightly}}, ctlog: {{disabled: true}}}}]
noMatchPolicy: deny
""")
    out = run(["pack", str(spec), "-o", str(tmp_path / "b.tar"), "--key", str(bundle_key)])
    assert out.exit_code == 0, out.output
    trust = tmp_path / "trust"
    out = run(["load", str(tmp_path / "b.tar"), "--registry", dst.host, "--key", str(tmp_path / "bundle.pub"),
               "--trust-out", str(trust)])
    assert out.exit_code == 0, out.output

    latest = str(zarf_forward(f"{src.host}/lib/busybox:latest", dst.host))
    pinned = f"{dst.host}/lib/busybox@{image.digest}"
    release_tag = str(zarf_forward(f"{src.host}/lib/busybox:1.36", dst.host))
    for ref in (latest, pinned, release_tag):
        assert verify_image(ref, Trust.load(trust)), ref  # intact: everything passes

    # the attacker keeps only the first signature (RELEASE) in the local .sig manifest
    sig_tag = cosign.signature_tag(image.digest)
    sig = client.get_manifest(dst.host, "lib/busybox", sig_tag)
    layers = list(sig.blobs[1:])
    assert len(layers) == 2
    manifest_bytes, config = signature_manifest(layers[:1])
    push_bytes(client, dst.host, "lib/busybox", "application/vnd.oci.image.config.v1+json", config)
    client.put_manifest(dst.host, "lib/busybox", sig_tag, Manifest.from_bytes(manifest_bytes, OCI_MANIFEST))

    t = Trust.load(trust)
    for ref in (latest, pinned):
        result = verify_image(ref, t)
        assert not result, ref
        assert any("latest-needs-nightly" in r for r in result.reasons), result.reasons
        assert f"{src.host}/lib/busybox:latest@{image.digest}" in result.upstreams
    assert verify_image(release_tag, t)  # the 1.36 tag was never under the :latest policy
    out = run(["verify", "--trust", str(trust), latest])
    assert out.exit_code != 0 and "latest-needs-nightly" in out.output
    # the webhook answers the same (same verifier, tag kept with the digest it resolved)
    service = AdmissionService(WebhookConfig(trust_dir=str(trust), mode="enforce"))
    try:
        review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
            "uid": "u1", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "operation": "CREATE",
            "namespace": "default", "name": "p",
            "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                       "spec": {"containers": [{"name": "c", "image": latest}]}}}}
        status, _, body = service.handle("POST", "/validate", json.dumps(review).encode())
        answer = json.loads(body)["response"]
        assert status == 200 and answer["allowed"] is False
        assert "latest-needs-nightly" in answer["status"]["message"]
    finally:
        service.close()


# ---- guarantee 2: a keyless authority's ca-cert is honoured ---------------------------------------------


def test_pinned_ca_cert_is_the_only_anchor(registry: Registry, make_image: Any, tmp_path: Path,
                                           mini_sigstore: MiniSigstore) -> None:
    """Guarantee 2. The trust's default root is Fulcio A; a policy pins ``ca-cert`` to CA B. A certificate
    from A (valid under the default root) must not satisfy it (on main ca-cert was ignored and A's certificate
    was accepted); one from B does, although B is not in the trust's root."""
    other = MiniSigstore(name="other-ca")
    root = mini_sigstore.trusted_root()
    extra = other.trusted_root()
    root["tlogs"] += extra["tlogs"]  # B's Rekor and CT logs are known; its CA is not
    root["ctlogs"] += extra["ctlogs"]
    from_a = make_image(registry, "ca/a", "1")
    from_b = make_image(registry, "ca/b", "1")
    push_keyless_signature(registry, "ca/a", from_a.digest, mini_sigstore.issue(*IDENTITY), sigstore=mini_sigstore)
    push_keyless_signature(registry, "ca/b", from_b.digest, other.issue(*IDENTITY), sigstore=other)
    pinned_pem = cert_pem(other.root_cert).decode().replace("\n", "\n            ")
    identities = f'[{{subject: "{IDENTITY[0]}", issuer: "{IDENTITY[1]}"}}]'
    policy = cip("pinned", f"{registry.host}/ca/**", f"""\
    - name: pinned
      keyless:
        identities: {identities}
        ca-cert:
          data: |
            {pinned_pem}
""")
    trust = Trust.load(write_trust(tmp_path / "pinned", trusted_root=root, policy=policy))
    denied = verify_image(f"{registry.host}/ca/a:1", trust)
    assert not denied and "does not chain" in " ".join(denied.reasons), denied.reasons
    assert verify_image(f"{registry.host}/ca/b:1", trust)
    plain = f"    - name: default\n      keyless:\n        identities: {identities}\n"
    default = Trust.load(write_trust(tmp_path / "default", trusted_root=root,
                                     policy=cip("default", f"{registry.host}/ca/**", plain)))
    assert verify_image(f"{registry.host}/ca/a:1", default)  # A is what the trust's root anchors
    assert not verify_image(f"{registry.host}/ca/b:1", default)


# ---- guarantee 3: N-of-M means N distinct signers -----------------------------------------------------------


def test_n_of_m_counts_distinct_signers(registry: Registry, make_image: Any, tmp_path: Path) -> None:
    """Guarantee 3. ``match: {authorities: 2}`` with two authorities naming the same key material (inline
    twice) is not met by one signature (on main both authorities passed and the policy was satisfied); two
    distinct keys are. The same key under two names in a trust directory is refused outright."""
    image = make_image(registry, "nofm/app", "1")
    ref = f"{registry.host}/nofm/app:1"
    sign_image(ref, RELEASE, client=RegistryClient())
    twice = cip("two-people", f"{registry.host}/nofm/**", key_data(RELEASE, "a") + key_data(RELEASE, "b"),
                spec="  match: {authorities: 2}\n")
    result = verify_image(ref, Trust.load(write_trust(tmp_path / "twice", policy=twice)))
    assert not result and "1 distinct signer(s), 2 required" in " ".join(result.reasons), result.reasons
    two = cip("two-people", f"{registry.host}/nofm/**", key_data(RELEASE, "a") + key_data(NIGHTLY, "b"),
              spec="  match: {authorities: 2}\n")
    assert not verify_image(ref, Trust.load(write_trust(tmp_path / "two", policy=two)))  # only RELEASE signed
    sign_image(f"{registry.host}/nofm/app@{image.digest}", NIGHTLY, client=RegistryClient())
    ok = verify_image(ref, Trust.load(write_trust(tmp_path / "two2", policy=two)))
    assert ok, ok.reasons
    signers = {a.name: a.signers for a in ok.policies[0].authorities}
    assert signers == {"a": [f"key {key_id(RELEASE.public_key)}"], "b": [f"key {key_id(NIGHTLY.public_key)}"]}
    pem = public_pem(RELEASE.public_key)
    with pytest.raises(ConfigError, match="are the same key"):
        Trust.load(write_trust(tmp_path / "dup", keys={"release": pem, "release-copy": pem}))
    out = run(["verify", "--trust", str(write_trust(tmp_path / "dup2", keys={"a": pem, "b": pem},
                                                    policy=twice)), ref])
    assert out.exit_code != 0 and "are the same key" in out.output


# ---- guarantee 4: DSSE payloadType is checked -----------------------------------------------------------------


def test_dsse_payload_type_must_be_in_toto(registry: Registry, make_image: Any, tmp_path: Path,
                                           mini_sigstore: MiniSigstore) -> None:
    """Guarantee 4. An attestation envelope (and a bundle's envelope) whose signature is valid but whose
    payloadType is not ``application/vnd.in-toto+json`` is not an attestation (on main it was accepted)."""
    image = make_image(registry, "dsse/app", "1")
    statement = cosign.statement(f"{registry.host}/dsse/app", image.digest, "https://slsa.dev/provenance/v0.2",
                                 {"builder": {"id": "ci"}})
    envelope = json.dumps(sign_dsse(RELEASE, "application/json", statement)).encode()
    attach_attestation(RegistryClient(), registry.host, "dsse/app", image.digest, envelope,
                       "https://slsa.dev/provenance/v0.2")
    policy = cip("att", f"{registry.host}/dsse/**", key_data(RELEASE, "build")
                 + "      attestations: [{name: prov, predicateType: slsaprovenance}]\n")
    result = verify_image(f"{registry.host}/dsse/app:1", Trust.load(write_trust(tmp_path / "t", policy=policy)))
    assert not result and "payloadType" in json.dumps(result.evidence), result.reasons
    # the same statement in a sigstore bundle with another payloadType: not a signature either
    keyless = make_image(registry, "dsse/keyless", "1")
    who = mini_sigstore.issue(*IDENTITY)
    sign_statement = json.dumps({"_type": cosign.INTOTO_STATEMENT_V1, "subject": [
        {"digest": {"sha256": keyless.digest.split(":")[1]}}], "predicateType": cosign.COSIGN_SIGN_PREDICATE,
        "predicate": {}}).encode()
    bundle = mini_sigstore.bundle(keyless.digest, who, dsse_statement=sign_statement, payload_type="text/plain")
    push_bundle_referrer(registry, "dsse/keyless", keyless.digest, len(keyless.manifest), keyless.media_type,
                         bundle, fallback_tag=True)
    kpolicy = cip("k", f"{registry.host}/dsse/**", f"""\
    - name: k
      keyless:
        identities: [{{subject: "{IDENTITY[0]}", issuer: "{IDENTITY[1]}"}}]
""")
    trust = Trust.load(write_trust(tmp_path / "k", trusted_root=mini_sigstore.trusted_root(), policy=kpolicy))
    result = verify_image(f"{registry.host}/dsse/keyless:1", trust)
    assert not result and "payloadType" in json.dumps(result.evidence), result.reasons


# ---- guarantee 5: an attestation is not a signature ---------------------------------------------------------


def test_attestation_bundle_never_satisfies_a_signature_authority(registry: Registry, make_image: Any,
                                                                   tmp_path: Path,
                                                                   mini_sigstore: MiniSigstore) -> None:
    """Guarantee 5. A sigstore bundle whose DSSE statement is an SLSA provenance about the image, by the right
    identity, must not pass a signature authority (on main any verified bundle did: cosign v3.1.3 too); it
    does satisfy an ``attestations`` entry of that type."""
    image = make_image(registry, "att5/app", "1")
    who = mini_sigstore.issue(*IDENTITY)
    statement = json.dumps({"_type": cosign.INTOTO_STATEMENT_V1, "subject": [
        {"name": "app", "digest": {"sha256": image.digest.split(":")[1]}}],
        "predicateType": "https://slsa.dev/provenance/v1", "predicate": {"buildDefinition": {"buildType": "x"}}})
    bundle = mini_sigstore.bundle(image.digest, who, dsse_statement=statement.encode())
    push_bundle_referrer(registry, "att5/app", image.digest, len(image.manifest), image.media_type, bundle,
                         predicate_type="https://slsa.dev/provenance/v1", fallback_tag=True)
    identities = f'[{{subject: "{IDENTITY[0]}", issuer: "{IDENTITY[1]}"}}]'
    sig_policy = cip("sig", f"{registry.host}/att5/**", f"    - name: sig\n      keyless:\n        identities: "
                                                         f"{identities}\n")
    root = mini_sigstore.trusted_root()
    result = verify_image(f"{registry.host}/att5/app:1",
                          Trust.load(write_trust(tmp_path / "sig", trusted_root=root, policy=sig_policy)))
    assert not result, "an attestation bundle satisfied a signature authority"
    assert "predicate type is https://slsa.dev/provenance/v1" in json.dumps(result.evidence)
    att_policy = cip("att", f"{registry.host}/att5/**", f"""\
    - name: att
      keyless:
        identities: {identities}
      attestations:
        - name: provenance
          predicateType: https://slsa.dev/provenance/v1
          policy: {{type: cel, data: 'predicate.buildDefinition.buildType == "x"'}}
""")
    ok = verify_image(f"{registry.host}/att5/app:1",
                      Trust.load(write_trust(tmp_path / "att", trusted_root=root, policy=att_policy)))
    assert ok, ok.reasons


# ---- guarantee 16: CEL conditions see the whole statement ---------------------------------------------------


def test_cel_condition_sees_subject_and_statement(registry: Registry, make_image: Any, tmp_path: Path) -> None:
    """Guarantee 16. ``subject``, ``predicateType`` and ``statement`` are bound as documented: a condition on
    the subject list is evaluated on the real list (on main ``subject`` was always empty, so this denied)."""
    image = make_image(registry, "cel/app", "1")
    ref = f"{registry.host}/cel/app:1"
    attest_image(ref, RELEASE, client=RegistryClient(), predicate=b'{"builder": {"id": "ci"}}',
                 predicate_type="slsaprovenance")

    def policy(condition: str) -> str:
        return cip("cel", f"{registry.host}/cel/**", key_data(RELEASE, "build") + f"""\
      attestations:
        - name: prov
          predicateType: slsaprovenance
          policy: {{type: cel, data: '{condition}'}}
""")
    name = f"{registry.host}/cel/app"
    good = (f'subject.size() == 1 && subject[0].name == "{name}" && subject[0].digest.sha256 == '
            f'"{image.digest.split(":")[1]}" && predicateType == "https://slsa.dev/provenance/v0.2" && '
            'statement.predicate.builder.id == "ci"')
    ok = verify_image(ref, Trust.load(write_trust(tmp_path / "good", policy=policy(good))))
    assert ok, ok.reasons
    bad = verify_image(ref, Trust.load(write_trust(tmp_path / "bad", policy=policy('subject.size() == 2'))))
    assert not bad and "condition is false" in json.dumps(bad.evidence)


# ---- guarantee 8: bounded work per image --------------------------------------------------------------------


def _hostile_sig(reg: Registry, repo: str, digest: str, layers: int, layer_bytes: int) -> None:
    """A ``.sig`` manifest of ``layers`` simple-signing layers that all name ONE junk blob of ``layer_bytes``
    (a manifest may repeat a blob: the registry stores it once, a naive verifier fetches it every time)."""
    pusher = Pusher(reg.url)
    junk = (b"\x00" + b"x" * (layer_bytes - 1))
    blob = pusher.blob(repo, junk)
    config = pusher.blob(repo, b"{}")
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2},
           "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json", "digest": blob,
                       "size": len(junk), "annotations": {cosign.ANN_SIGNATURE: "AAAA"}}] * layers}
    pusher.manifest(repo, cosign.signature_tag(digest), canonical(doc), OCI_MANIFEST)


def _verify_in_child(ref: str, pub: Path) -> tuple[float, int, str]:
    """(seconds, peak RSS in KiB, output) of ``airgap verify --key`` in a fresh process."""
    code = ("import resource, sys\nfrom airgap.cli import main\nsys.argv = ['airgap', 'verify', '--key', "
            f"{str(pub)!r}, '--insecure-ignore-tlog', {ref!r}]\n"
            "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\n"
            "print('RSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
            "sys.exit(code)")
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    rss = int(next(line.split()[1] for line in proc.stderr.splitlines() if line.startswith("RSS")))
    return time.monotonic() - t0, rss, proc.stdout + proc.stderr


def test_hostile_signature_manifests_cost_bounded_time_and_memory(registry: Registry, make_image: Any,
                                                                   tmp_path: Path) -> None:
    """Guarantee 8. A ``.sig`` with 12,000 layers, or 80 junk layers of 4 MiB, is denied within 2 s with a
    reason naming the limit, and the verifier's peak RSS grows by at most 64 MiB over a normal verification
    (on main the 80 x 4 MiB were all downloaded and held: 320 MiB)."""
    pub = tmp_path / "k.pub"
    pub.write_bytes(public_pem(RELEASE.public_key))
    normal = make_image(registry, "bound/normal", "1")
    sign_image(f"{registry.host}/bound/normal@{normal.digest}", RELEASE, client=RegistryClient())
    _, baseline, out = _verify_in_child(f"{registry.host}/bound/normal:1", pub)
    assert "OK" in out, out
    many = make_image(registry, "bound/many", "1")
    _hostile_sig(registry, "bound/many", many.digest, 12_000, 64)
    seconds, rss, out = _verify_in_child(f"{registry.host}/bound/many:1", pub)
    assert "max_signature_layers" in out and "12000 layers" in out, out
    assert seconds < 2.0 + 1.0, seconds  # 2 s target plus the interpreter's start-up
    assert rss - baseline < 64 * 1024, (rss, baseline)
    big = make_image(registry, "bound/big", "1")
    _hostile_sig(registry, "bound/big", big.digest, 80, 4 * 1024 * 1024)
    seconds, rss, out = _verify_in_child(f"{registry.host}/bound/big:1", pub)
    assert "max_attached_bytes" in out, out
    assert seconds < 2.0 + 1.0, seconds
    assert rss - baseline < 64 * 1024, (rss, baseline)
    # one oversize layer is a failed candidate, not a fetch: the reason says so
    over = make_image(registry, "bound/over", "1")
    _hostile_sig(registry, "bound/over", over.digest, 1, 4 * 1024 * 1024 + 1)
    trust = Trust.from_keys([("k", pub.read_bytes())])
    result = verify_image(f"{registry.host}/bound/over:1", trust, policy=policy_for_keys(trust, require_tlog=False))
    assert not result and "max_signature_layer_bytes" in json.dumps(result.evidence)


def test_referrer_flood_is_refused(registry: Registry, make_image: Any, tmp_path: Path) -> None:
    """Guarantee 8 (referrers). An image whose referrers index lists more referrers than the limit is denied
    with the reason, without fetching them."""
    image = make_image(registry, "bound/refs", "1")
    pusher = Pusher(registry.url)
    # one real manifest listed 1,001 times (the registry checks that listed manifests exist)
    entries = [{"mediaType": image.media_type, "digest": image.digest, "size": len(image.manifest),
                "artifactType": "application/vnd.dev.sigstore.bundle.v0.3+json"}] * 1001
    index = canonical({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                       "manifests": entries})
    pusher.manifest("bound/refs", image.digest.replace(":", "-"), index, "application/vnd.oci.image.index.v1+json")
    pub = public_pem(RELEASE.public_key)
    trust = Trust.from_keys([("k", pub)])
    result = verify_image(f"{registry.host}/bound/refs:1", trust, policy=policy_for_keys(trust, require_tlog=False))
    assert not result and "max_referrers" in " ".join(result.reasons), result.reasons

