"""`airgap site ...`: what a disconnected site holds, its inventory, and removing what a bundle brought."""

from __future__ import annotations

import click

from airgap.commands.common import echo, emit_json, make_options, registry_options


@click.group("site")
def site_group() -> None:
    """The disconnected site: loaded bundles, their trust, and the inventory for delta bundles."""


@site_group.command("inventory")
@click.option("--registry", "registry", required=True, metavar="HOST", help="The site's registry.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), metavar="FILE",
              help="Where to write the inventory (JSON).")
@click.option("--key", "key_ref", default=None, metavar="KEYREF",
              help="Sign the inventory with this private key (FILE.sig; COSIGN_PASSWORD).")
@click.option("-j", "--jobs", type=click.IntRange(1, 64), default=None, help="Requests at once [4].")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary.")
@registry_options
def inventory(registry: str, output: str, key_ref: str | None, jobs: int | None, as_json: bool,
              insecure: tuple[str, ...], ca_file: str | None) -> None:
    """Write what the site's registry holds (repositories, tags, manifests, blobs with sizes, loaded bundles),
    for `airgap pack --delta FILE` on the connected side to leave out what the site already has."""
    from airgap.oci.registry import RegistryClient
    from airgap.progress import human_bytes
    from airgap.site.inventory import take_inventory, write_inventory

    signer = None
    if key_ref:
        from airgap.keys.references import load_signer

        signer = load_signer(key_ref)
    options = make_options(insecure, ca_file, jobs)
    inv = take_inventory(RegistryClient(options), registry, jobs=options.limits.concurrency)
    written = write_inventory(inv, output, signer=signer)
    blob_bytes = sum(b.size for b in inv.blobs.values())
    summary: dict[str, object] = {
        "registry": inv.registry, "output": written[0], "signature": written[1] if len(written) > 1 else None,
        "digest": inv.digest, "repositories": len(inv.repositories),
        "tags": sum(len(t) for t in inv.repositories.values()), "manifests": len(inv.manifests),
        "blobs": len(inv.blobs), "blob_bytes": blob_bytes,
        "bundles": [{"name": n, "version": v} for n, v in inv.bundles],
    }
    if as_json:
        emit_json(summary)
        return
    echo(f"inventory of {inv.registry}: {summary['repositories']} repositories, {summary['tags']} tags, "
         f"{summary['manifests']} manifests, {summary['blobs']} blobs ({human_bytes(blob_bytes)}), "
         f"{len(inv.bundles)} bundle(s) -> {output}" + (f" (signed: {written[1]})" if signer else ""))
    echo(f"inventory digest: {inv.digest}")
    for name, version in inv.bundles:
        echo(f"  bundle {name} {version}")


def register(cli: click.Group) -> None:
    cli.add_command(site_group)
