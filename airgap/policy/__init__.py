"""Policy: which images need which signatures. Pure: parsed documents in, decisions about refs out.

:mod:`~airgap.policy.policyset` reads a policy file (sigstore policy-controller ``ClusterImagePolicy``
documents as they are, plus one ``AirgapPolicy`` of global settings) and selects the policies that apply to
an upstream ref; :mod:`~airgap.policy.cip` parses one ClusterImagePolicy into :mod:`~airgap.policy.model`
(the typed model and the rules that combine authority results); :mod:`~airgap.policy.glob` matches image
globs; :mod:`~airgap.policy.cel` evaluates CEL conditions.
"""
