"""policy-controller TrustRoot documents: the sigstoreKeys form becomes a trusted root; what cannot work offline is
refused with errors naming file, document and field."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from support.minisigstore import MiniSigstore, cert_pem, spki_pem
from support.minitsa import MiniTSA
from support.trustdirs import cip, trust_root, write_trust

from airgap.checks.roots import TrustedRoot
from airgap.errors import ConfigError, PolicyError
from airgap.policy.policyset import PolicySet
from airgap.verification.trust import Trust


@pytest.fixture(scope="module")
def mini() -> MiniSigstore:
    return MiniSigstore(name="trustroot-unit")


@pytest.fixture(scope="module")
def tsa(tmp_path_factory: pytest.TempPathFactory) -> MiniTSA:
    return MiniTSA(tmp_path_factory.mktemp("tsa"))


def _doc(mini: MiniSigstore, name: str = "mine", tsa: MiniTSA | None = None) -> str:
    return trust_root(name, ca_chain=cert_pem(mini.intermediate_cert) + cert_pem(mini.root_cert),
                      tlogs=[spki_pem(mini.rekor_key.public_key())], ctlogs=[spki_pem(mini.ct_key.public_key())],
                      tsa_chain=tsa.chain_pem.read_bytes() if tsa else None)


def test_sigstore_keys_become_the_trusted_root_policy_controller_would_build(mini: MiniSigstore, tsa: MiniTSA) -> None:
    ps = PolicySet.from_yaml(_doc(mini, tsa=tsa), "p.yaml")
    assert ps.policies == [] and list(ps.trust_roots) == ["mine"]
    root = TrustedRoot.from_bytes(ps.trust_roots["mine"])
    assert [c.subject for c in root.fulcio[0].certificates] == [mini.intermediate_cert.subject,
                                                                mini.root_cert.subject]
    assert root.tlog_key(mini.rekor_log_id) is not None and root.ctlog_key(mini.ct_log_id) is not None
    assert len(root.tsas) == 1 and root.tsas[0].certificates[0].subject == tsa.cert.subject
    doc = json.loads(ps.trust_roots["mine"])
    der = mini.rekor_key.public_key().public_bytes(serialization.Encoding.DER,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    assert doc["tlogs"][0]["logId"]["keyId"] == base64.b64encode(hashlib.sha256(der).digest()).decode()
    assert doc["tlogs"][0]["publicKey"]["keyDetails"] == "PKIX_ECDSA_P256_SHA_256"
    assert doc["tlogs"][0]["hashAlgorithm"] == "SHA2_256"
    assert doc["certificateAuthorities"][0]["validFor"] == {"start": "1970-01-01T00:00:00Z"}
    assert root.to_sigstore() is not None  # sigstore-python (bundles) accepts it too


def test_line_broken_base64_is_read_as_go_reads_it(mini: MiniSigstore) -> None:
    encoded = base64.b64encode(spki_pem(mini.ct_key.public_key())).decode()
    lines = "\n".join("          " + encoded[i:i + 64] for i in range(0, len(encoded), 64))
    chain = base64.b64encode(cert_pem(mini.root_cert)).decode()
    text = (HEADER + "  sigstoreKeys:\n    certificateAuthorities:\n    - subject: {organization: o, commonName: c}\n"
            f"      uri: https://fulcio\n      certChain: {chain}\n    ctLogs:\n    - baseURL: https://ctfe\n"
            f"      hashAlgorithm: sha256\n      publicKey: |\n{lines}\n")
    ps = PolicySet.from_yaml(text, "p.yaml")
    assert TrustedRoot.from_bytes(ps.trust_roots["tr"]).ctlog_key(mini.ct_log_id) is not None


def test_a_trust_root_is_reached_by_name_never_by_default(mini: MiniSigstore, tmp_path: Path) -> None:
    other = MiniSigstore(name="default-root")
    authority = "    - keyless:\n        trustRootRef: mine\n        identities: [{issuer: https://i, subject: s}]\n"
    root = write_trust(tmp_path / "t", trusted_root=other.trusted_root(), policy=cip("p", authority) + _doc(mini))
    trust = Trust.load(root)
    assert trust.trusted_root("mine").ctlog_key(mini.ct_log_id) is not None
    assert trust.trusted_root(None).ctlog_key(other.ct_log_id) is not None  # trusted_root.json stays the default
    with pytest.raises(ConfigError, match=r"no trusted root named 'nope' \(have: default, TrustRoot mine\)"):
        trust.trusted_root("nope")
    (root / "policy.yaml").write_text(cip("p", authority) + _doc(mini, "default"))
    with pytest.raises(ConfigError, match="policy.yaml: TrustRoot 'default' has the name of trusted_root.json"):
        Trust.load(root)


def test_ctlog_trust_root_ref_takes_the_tlogs_of_that_root(mini: MiniSigstore, tmp_path: Path) -> None:
    other = MiniSigstore(name="other-rekor")
    text = _doc(mini) + trust_root("rekor-only", ca_chain=cert_pem(other.root_cert),
                                   tlogs=[spki_pem(other.rekor_key.public_key())])
    trust = Trust.load(write_trust(tmp_path / "t", policy=text))
    mixed = trust.with_tlogs(trust.trusted_root("mine"), "rekor-only")
    assert mixed is not None
    assert mixed.tlog_key(other.rekor_log_id) is not None and mixed.tlog_key(mini.rekor_log_id) is None
    assert mixed.ctlog_key(mini.ct_log_id) is not None and mixed.fulcio == trust.trusted_root("mine").fulcio
    assert trust.with_tlogs(trust.trusted_root("mine"), None) is trust.trusted_root("mine")


HEADER = "apiVersion: policy.sigstore.dev/v1alpha1\nkind: TrustRoot\nmetadata: {name: tr}\nspec:\n"


@pytest.mark.parametrize(("spec", "message"), [
    ("  remote: {mirror: 'https://tuf.example.com', root: e30=}\n",
     "spec.remote: a TUF mirror cannot be reached offline; give the keys as spec.sigstoreKeys"),
    ("  repository: {root: e30=, mirrorFS: H4sI, targets: targets}\n",
     "spec.repository: serialized TUF repositories are not supported"),
    ("  {}\n", "spec: expected exactly one of remote, repository, sigstoreKeys (got none)"),
    ("  sigstoreKeys: {certificateAuthorities: []}\n",
     "spec.sigstoreKeys: expected certificateAuthorities or timestampAuthorities (none given)"),
    ("  sigstoreKeys:\n    certificateAuthorities:\n    - {subject: {organization: o, commonName: c}, uri: u, "
     "certChain: '-----BEGIN CERTIFICATE-----'}\n",
     "spec.sigstoreKeys.certificateAuthorities[0].certChain: not base64 (the PEM itself was given; policy-controller's "
     "API wants it base64-encoded)"),
    ("  sigstoreKeys:\n    certificateAuthorities:\n    - {subject: {organization: o, commonName: c}, uri: u, "
     "certChain: aGVsbG8=}\n",
     "spec.sigstoreKeys.certificateAuthorities[0].certChain: the base64 does not hold PEM"),
    ("  sigstoreKeys:\n    certificateAuthorities:\n    - {subject: {organization: o}, uri: u, certChain: aGVsbG8=}\n",
     "spec.sigstoreKeys.certificateAuthorities[0].subject.commonName: required field missing"),
    ("  sigstoreKeys:\n    certificateAuthorities:\n    - {subject: {organization: o, commonName: c}, certChain: x}\n",
     "spec.sigstoreKeys.certificateAuthorities[0].uri: required field missing"),
    ("  sigstoreKeys:\n    timestampAuthorities: []\n    tLogs: [{baseURL: u, hashAlgorithm: md5, publicKey: x}]\n",
     "spec.sigstoreKeys: expected certificateAuthorities or timestampAuthorities"),
    ("  sigstoreKeys:\n    certificateAuthorities: []\n    ctlogs: []\n",
     "spec.sigstoreKeys.ctlogs: unknown field (expected one of: certificateAuthorities, tLogs, ctLogs, "
     "timestampAuthorities)"),
])
def test_errors_name_file_document_and_field(spec: str, message: str) -> None:
    with pytest.raises(PolicyError) as err:
        PolicySet.from_yaml(HEADER + spec, "policy.yaml")
    assert str(err.value).startswith(f"policy.yaml: document 1 (tr): {message}"), str(err.value)


def test_log_and_tsa_errors(mini: MiniSigstore, tsa: MiniTSA) -> None:
    text = _doc(mini)
    with pytest.raises(PolicyError, match=r"tLogs\[0\].hashAlgorithm: invalid value 'md5'"):
        PolicySet.from_yaml(text.replace("hashAlgorithm: sha-256", "hashAlgorithm: md5", 1), "p.yaml")
    two_leaves = trust_root("t", tsa_chain=tsa.chain_pem.read_bytes() + cert_pem(tsa.cert))
    with pytest.raises(PolicyError, match=r"timestampAuthorities\[0\].certChain: certificate chain must contain at "
                                          "most one TSA certificate"):
        PolicySet.from_yaml(two_leaves, "p.yaml")
    with pytest.raises(PolicyError, match=r"document 2 \(mine\): metadata.name: duplicate TrustRoot name 'mine' "
                                          r"\(also document 1 \(mine\)\)"):
        PolicySet.from_yaml(text + text, "p.yaml")
    with pytest.raises(PolicyError, match="apiVersion: invalid value 'policy.sigstore.dev/v1beta1'"):
        PolicySet.from_yaml(text.replace("v1alpha1", "v1beta1"), "p.yaml")
