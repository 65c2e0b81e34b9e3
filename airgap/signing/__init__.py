"""Signing on the connected side, cosign-compatible: legacy ``.sig`` signatures, sigstore bundles, attestations.

:mod:`~airgap.signing.sign` signs images (:mod:`~airgap.signing.targets` resolves what to sign and where the
signatures go); :mod:`~airgap.signing.attest` attests predicates; :mod:`~airgap.signing.bundles` builds DSSE
envelopes and sigstore bundles; :mod:`~airgap.signing.attach` writes them to a registry as cosign does.
With a key nothing is uploaded to a transparency log (offline signing); :mod:`~airgap.signing.keyless` signs
with an identity token, a Fulcio certificate and Rekor entries instead (:mod:`~airgap.signing.services`: which
Sigstore, which token).
"""
