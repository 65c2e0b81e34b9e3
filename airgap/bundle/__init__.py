"""Bundles: one tar that carries images, their signatures and the trust to verify them across an air gap.

Modules: :mod:`~airgap.bundle.spec` (the ``bundles/*.yaml`` spec), :mod:`~airgap.bundle.manifest` (the
signed ``airgap-bundle.json``), :mod:`~airgap.bundle.writer` / :mod:`~airgap.bundle.reader` (the tar format,
written reproducibly and read safely in one streaming pass), :mod:`~airgap.bundle.pack`,
:mod:`~airgap.bundle.load`, :mod:`~airgap.bundle.inspect`. Nothing is imported here: the CLI imports the
module it needs when a command runs.
"""
