"""`airgap triangulate`: where cosign keeps an image's signatures, attestations, SBOMs or sigstore bundles."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from airgap.commands.common import (
    allow_insecure_registry_option,
    echo,
    emit_json,
    make_options,
    registry_hosts,
    registry_options,
    timeout_option,
)

if TYPE_CHECKING:
    from airgap.oci.registry import RegistryClient

_SUFFIX = {"signature": "sig", "attestation": "att", "sbom": "sbom"}


@click.command()
@click.argument("image", metavar="REF")
@click.option("--type", "kind", type=click.Choice(["signature", "attestation", "sbom", "bundle"]),
              default="signature", show_default=True,
              help="signature/attestation/sbom: cosign's sha256-<hex>.sig/.att/.sbom tag; bundle: the sigstore "
                   "bundle referrers (cosign v3).")
@click.option("--signature-repo", default=None, metavar="REPO",
              help="Where signatures are kept instead of the image's repository [env COSIGN_REPOSITORY].")
@click.option("--json", "as_json", is_flag=True, help="Print {reference, digest, type, locations} as JSON.")
@registry_options
@allow_insecure_registry_option
@timeout_option("timeout")
def triangulate(image: str, kind: str, signature_repo: str | None, as_json: bool, insecure: tuple[str, ...],
                ca_file: str | None) -> None:
    """Print where the artifact of TYPE for REF lives, as cosign triangulate does.

    REF is resolved to its digest at the registry (a tag is never trusted to name the same image later).
    signature, attestation, sbom: HOST/REPO:sha256-<hex>.sig (.att, .sbom), in --signature-repo or
    COSIGN_REPOSITORY when set, whether or not anything is there yet (cosign's output, byte for byte).
    bundle: each sigstore bundle that refers to the image (HOST/REPO@sha256:...), found through the
    Referrers API or its sha256-<hex> fallback tag; none found is an error.
    """
    import os

    from airgap.checks import cosign
    from airgap.errors import NotFoundError
    from airgap.oci.registry import RegistryClient
    from airgap.signing.targets import resolve_target

    sig_repo = signature_repo or os.environ.get("COSIGN_REPOSITORY") or None
    client = RegistryClient(make_options(insecure, ca_file, named=registry_hosts([image, sig_repo or ""])))
    target = resolve_target(image, sig_repo)
    digest = client.get_manifest(target.host, target.ref.repository, target.ref.identifier).digest
    where = cosign.docker_reference(target.sig_registry, target.sig_repo)
    if kind in _SUFFIX:
        alg, hexpart = digest.split(":", 1)
        locations = [f"{where}:{alg}-{hexpart}.{_SUFFIX[kind]}"]
    else:
        locations = [f"{where}@{d}" for d in _bundle_referrers(client, target.sig_host, target.sig_repo, digest)]
        if not locations:
            raise NotFoundError(f"no sigstore bundle refers to {target.ref.name}@{digest} (looked in {where})")
    if as_json:
        emit_json({"reference": str(target.ref), "digest": digest, "type": kind, "locations": locations})
        return
    for location in locations:
        echo(location)


def _bundle_referrers(client: RegistryClient, host: str, repo: str, digest: str) -> list[str]:
    """Digests of the sigstore bundle manifests referring to ``digest`` (the Referrers API or its fallback tag). The
    index's artifactType is a hint: an entry without one is fetched and its own artifactType and subject decide."""
    from airgap.errors import NotFoundError
    from airgap.oci import mediatypes as mt

    bundle = "application/vnd.dev.sigstore.bundle"
    try:
        found = client.referrers(host, repo, digest, max_items=client.limits.max_referrers + 1)
    except NotFoundError:
        return []
    out = []
    for desc in found[: client.limits.max_referrers]:
        if (desc.artifact_type or "").startswith(bundle):
            out.append(desc.digest)
        elif desc.artifact_type in (None, mt.OCI_EMPTY):
            manifest = client.get_manifest(host, repo, desc.digest, cached=True)
            if (manifest.artifact_type or "").startswith(bundle) and manifest.subject is not None \
                    and manifest.subject.digest == digest:
                out.append(desc.digest)
    return out


def register(cli: click.Group) -> None:
    cli.add_command(triangulate)
