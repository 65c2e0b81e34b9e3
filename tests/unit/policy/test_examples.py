"""The policy examples under examples/policies load as the README says, with the policies and roots they name."""

from __future__ import annotations

from pathlib import Path

from airgap.checks.roots import TrustedRoot
from airgap.policy.policyset import PolicySet

ROOT = Path(__file__).parents[3]


def test_kyverno_example() -> None:
    ps = PolicySet.load(ROOT / "examples/policies/kyverno-verify-images.yaml", keys_dir=ROOT / "keys")
    assert [(p.name, p.mode, p.threshold) for p in ps.policies] == [
        ("release-signed/cosign-key", "enforce", None), ("release-signed/ci-keyless", "enforce", None),
        ("release-signed/ci-keyless/attestations[0]", "enforce", None), ("two-of-three/critical", "warn", 2)]
    assert ps.warnings == []
    cosign_key = ps.policies[0]
    assert cosign_key.authorities[0].sources == ("registry.example.com/signatures",)
    assert [s.text for s in cosign_key.skip] == ["registry.example.com/team/sandbox/*"]


def test_trustroot_example() -> None:
    ps = PolicySet.load(ROOT / "examples/policies/trustroot.yaml")
    (policy,) = ps.policies
    auth = policy.authorities[0]
    assert auth.keyless is not None and auth.keyless.trust_root_ref == "private-sigstore"
    assert auth.ctlog_trust_root_ref == "private-sigstore"
    root = TrustedRoot.from_bytes(ps.trust_roots["private-sigstore"])
    assert (len(root.fulcio), len(root.tlogs), len(root.ctlogs), len(root.tsas)) == (1, 1, 1, 1)
    assert root.to_sigstore() is not None
