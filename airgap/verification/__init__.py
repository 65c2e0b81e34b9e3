"""Verification: decide whether an image served by the local registry may run, with evidence. One code path
for the CLI, the Python API, the webhook and the audit.

:mod:`~airgap.verification.trust` loads the operator's keys, roots, policy and translation map;
:mod:`~airgap.verification.discover` fetches the image and what is attached to it (the only registry I/O, through
:mod:`airgap.oci`); :mod:`~airgap.verification.evaluate` applies policies x authorities x signatures with the pure
checks of :mod:`airgap.checks`; :mod:`~airgap.verification.result` is what it says;
:mod:`~airgap.verification.verifier` is the API (``Verifier``, ``verify_image``).
"""
