"""Policy: which images need which signatures. Pure: parsed documents in, decisions about refs out.

:mod:`~airgap.policy.policyset` reads a policy file (sigstore policy-controller ``ClusterImagePolicy`` and
``TrustRoot`` documents and Kyverno ``verifyImages`` rules as they are, plus one ``AirgapPolicy`` of global
settings) and selects the policies that apply to an upstream ref; :mod:`~airgap.policy.cip` parses one
ClusterImagePolicy and :mod:`~airgap.policy.kyverno` (with ``kyverno_attestors`` and ``kyverno_conditions``)
translates Kyverno rules into :mod:`~airgap.policy.model` (the typed model and the rules that combine authority
results); :mod:`~airgap.policy.trustroot` turns TrustRoots into trusted roots; :mod:`~airgap.policy.glob` matches
image globs; :mod:`~airgap.policy.regexp` reads Go (RE2) regexps; :mod:`~airgap.policy.cel` evaluates CEL.
"""
