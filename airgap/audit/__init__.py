"""Audit: reproducible evidence of what was verified, how, against which keys, and reports rendered from it.

:mod:`~airgap.audit.inputs` gathers the images (registry, refs, pods, bundle); :mod:`~airgap.audit.evidence`
verifies each once through the shared verifier and builds the JSON evidence; :mod:`~airgap.audit.render`
(Markdown, HTML), :mod:`~airgap.audit.reports` (PolicyReports) and :mod:`~airgap.audit.vsa` (a signed SLSA
verification summary) are rendered from that one document.
"""
