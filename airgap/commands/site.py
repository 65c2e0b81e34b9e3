"""`airgap site ...`: what a disconnected site holds, removing what a bundle brought, and its state mirrored
into the registry (signed) for a second verifier."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from airgap.commands.common import echo, emit_json, make_options, registry_options, timeout_option


@click.group("site")
def site_group() -> None:
    """The disconnected site: loaded bundles, their trust, and the inventory for delta bundles."""


F = TypeVar("F", bound=Callable[..., Any])


def _site_option(func: F) -> F:
    return click.option("--site", "site_dir", type=click.Path(file_okay=False), required=True,
                        help="The site directory (`airgap load --site DIR` records every bundle there).")(func)


def _bundle_json(bundle: Any) -> dict[str, Any]:
    """A site's record of one bundle for ``--json`` (snake_case; site.json itself keeps its own spelling)."""
    return {"name": bundle.name, "version": bundle.version, "digest": bundle.digest, "signer": bundle.signer,
            "loaded_at": bundle.loaded_at, "registry": bundle.registry, "trust_dir": bundle.trust_dir,
            "files": dict(sorted(bundle.files.items())), "images": [i.to_json() for i in bundle.images]}


@site_group.command("list")
@_site_option
@click.option("--json", "as_json", is_flag=True, help="Print the site state as JSON.")
def list_(site_dir: str, as_json: bool) -> None:
    """The bundles the site holds: name, version, digest, signer, images, when loaded."""
    from airgap.verification.scopes import SiteState

    state = SiteState.load(Path(site_dir))
    if as_json:
        emit_json({"bundles": [_bundle_json(b) for b in state.bundles]})
        return
    if not state.bundles:
        echo(f"{site_dir}: no bundles loaded")
    for b in state.bundles:
        echo(f"{b.name} {b.version}  {b.digest[:19]}...  signer {b.signer or 'none (pinned or unsigned)'}  "
             f"{len(b.images)} image(s)  loaded {b.loaded_at}")


@site_group.command("show")
@click.argument("name")
@_site_option
@click.option("--json", "as_json", is_flag=True, help="Print the bundle's record as JSON.")
def show(name: str, site_dir: str, as_json: bool) -> None:
    """One bundle: its images (upstream -> local -> digest), its keys and policies."""
    from airgap.errors import ConfigError
    from airgap.verification.scopes import SiteState
    from airgap.verification.trust import Trust

    state = SiteState.load(Path(site_dir))
    bundle = state.get(name)
    if bundle is None:
        raise ConfigError(f"the site {site_dir} holds no bundle named {name!r}")
    if as_json:
        emit_json(_bundle_json(bundle))
        return
    trust = Trust.load(Path(site_dir) / bundle.trust_dir)
    echo(f"{bundle.name} {bundle.version}\n  digest  {bundle.digest}\n  signer  {bundle.signer or 'none'}\n"
         f"  loaded  {bundle.loaded_at} into {bundle.registry}\n  trust   {bundle.trust_dir}")
    if bundle.airgap_image is not None:
        echo(f"  airgap  {bundle.airgap_image} (airgap's own image: `webhook manifests --trust {site_dir}` runs it)")
    for key in trust.key_manifest()["keys"]:
        echo(f"  key     {key['name']} {key['id']} {key['algorithm']}")
    for policy in trust.policy.policies if trust.policy is not None else ():
        echo(f"  policy  {policy.name}: {', '.join(g.text for g in policy.globs)}")
    echo("  images:")
    for img in bundle.images:
        echo(f"    {img.upstream} -> {', '.join(img.local)}  {img.digest}")


@site_group.command("remove")
@click.argument("name")
@_site_option
@click.option("--keep-images", is_flag=True, help="Only forget the bundle's record and trust; leave the registry.")
@click.option("--json", "as_json", is_flag=True, help="Print what was removed as JSON.")
@timeout_option("timeout")
@registry_options
def remove(name: str, site_dir: str, keep_images: bool, as_json: bool, insecure: tuple[str, ...],
           ca_file: str | None) -> None:
    """Remove a bundle: its tags (never one another bundle, or a tag outside airgap, still uses), its map
    artifact, its trust and its record. Blobs are left to the registry's garbage collection."""
    from airgap.oci.registry import RegistryClient
    from airgap.site.state import SiteLock, remove_bundle

    client = None if keep_images else RegistryClient(make_options(insecure, ca_file))
    with SiteLock(Path(site_dir)):
        removal = remove_bundle(Path(site_dir), name, client=client)
    report = {"bundle": removal.bundle.name, "version": removal.bundle.version, "deleted": removal.retired.deleted,
              "kept": removal.retired.kept, "gone": removal.retired.gone, "map_deleted": removal.map_deleted}
    if as_json:
        emit_json(report)
        return
    echo(f"removed {name} {removal.bundle.version}: {len(removal.retired.deleted)} tag(s) deleted, "
         f"{len(removal.retired.kept)} kept (still used elsewhere), trust and record removed")
    for ref in removal.retired.kept:
        echo(f"  kept {ref}")


@site_group.command("push")
@_site_option
@click.option("--registry", "target", required=True, metavar="HOST[/PREFIX]", help="Where the state goes.")
@click.option("--key", "key_ref", required=True, metavar="KEYREF", help="The site key that signs the state.")
@timeout_option("timeout")
@registry_options
def push(site_dir: str, target: str, key_ref: str, insecure: tuple[str, ...], ca_file: str | None) -> None:
    """Mirror the site state into the registry as a signed artifact (HOST/airgap/site:state)."""
    from airgap.keys.references import load_signer
    from airgap.oci.registry import RegistryClient
    from airgap.site.mirror import push_state

    signer = load_signer(key_ref)
    ref = push_state(RegistryClient(make_options(insecure, ca_file)), Path(site_dir), target, signer)
    echo(f"site state pushed and signed: {ref}")


@site_group.command("pull")
@click.option("--registry", "target", required=True, metavar="HOST[/PREFIX]", help="Where the state is.")
@click.option("--key", "key_refs", required=True, multiple=True, metavar="KEYREF",
              help="The site's public key: the state is used only if its signature verifies with it.")
@click.option("-o", "--output", "out", type=click.Path(file_okay=False), required=True,
              help="A new (or empty) directory to rebuild the site in.")
@timeout_option("timeout")
@registry_options
def pull(target: str, key_refs: tuple[str, ...], out: str, insecure: tuple[str, ...], ca_file: str | None) -> None:
    """Rebuild a site directory from the registry's signed state (for the webhook, an auditor)."""
    from airgap.keys.references import load_public_keys
    from airgap.oci.registry import RegistryClient
    from airgap.site.mirror import pull_state

    keys = [k for ref in key_refs for k in load_public_keys(ref)]
    digest = pull_state(RegistryClient(make_options(insecure, ca_file)), target, keys, Path(out))
    echo(f"site state {digest} verified and written to {out}")


@site_group.command("inventory")
@click.option("--registry", "registry", required=True, metavar="HOST", help="The site's registry.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), metavar="FILE",
              help="Where to write the inventory (JSON).")
@click.option("--key", "key_ref", default=None, metavar="KEYREF",
              help="Sign the inventory with this private key (FILE.sig; COSIGN_PASSWORD).")
@click.option("-j", "--jobs", type=click.IntRange(1, 64), default=None, help="Requests at once [4].")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary.")
@timeout_option("bulk_timeout")
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
