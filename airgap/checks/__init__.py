"""Pure signature checks: bytes and trust in, an outcome with evidence out. No registry, no network.

:mod:`~airgap.checks.cosign` reads cosign's wire formats (simple-signing payloads, DSSE, in-toto statements,
tag names, annotations); :mod:`~airgap.checks.roots` parses Sigstore trusted roots; :mod:`~airgap.checks.legacy`
checks legacy ``.sig``/``.att`` signatures and :mod:`~airgap.checks.bundle` sigstore bundles, both through the
steps in :mod:`~airgap.checks.steps` and the certificate, Rekor and RFC 3161 checks in
:mod:`~airgap.checks.keyless`, :mod:`~airgap.checks.tlog` and :mod:`~airgap.checks.tsa`;
:mod:`~airgap.checks.outcome` is what every check returns.
"""
