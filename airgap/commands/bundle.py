"""`airgap pack`, `load`, `inspect`, `verify-bundle` and `trust export`: bundles across the air gap."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from airgap.commands.common import (
    JSON_TO_STDERR_KEY,
    conflict,
    echo,
    emit_json,
    make_options,
    registry_options,
    sha256_digest,
    timeout_option,
)

if TYPE_CHECKING:
    from airgap.bundle.manifest import CliPin
    from airgap.bundle.source import PartSet
    from airgap.keys.public import PublicKey


def _bundle_trust_options(func: Any) -> Any:
    """How the operator vouches for a bundle: a key they hold, a pinned digest, or an explicit opt-out."""
    func = click.option("--allow-unsigned-bundle", is_flag=True,
                        help="Accept a bundle whose manifest is neither signed by --key nor pinned.")(func)
    func = click.option("--bundle-digest", default=None, metavar="sha256:HEX", callback=sha256_digest,
                        help="Accept the bundle whose manifest has this digest (printed by pack and inspect).")(func)
    func = click.option("--key", "key_refs", multiple=True, metavar="KEYREF",
                        help="Public key the bundle manifest must be signed with (repeat for any-of).")(func)
    return func


def _check_trust_flags(key_refs: tuple[str, ...], bundle_digest: str | None, allow_unsigned: bool) -> None:
    if allow_unsigned and (key_refs or bundle_digest):
        conflict("--allow-unsigned-bundle", "--key" if key_refs else "--bundle-digest",
                 "the bundle is checked against the key or the pinned digest; drop --allow-unsigned-bundle")


def _public_keys(key_refs: tuple[str, ...]) -> list[PublicKey] | None:
    if not key_refs:
        return None
    from airgap.keys.references import load_public_keys

    return [k for ref in key_refs for k in load_public_keys(ref)]


def _bundle_argument(func: Any) -> Any:
    """BUNDLE: one file, ``-`` for stdin, or the parts of a split bundle (the part files in any order, a
    directory holding them, or the parts manifest)."""
    return click.argument("bundle", metavar="BUNDLE|-|PARTS...", nargs=-1, required=True)(func)


def _parts_line(parts: PartSet) -> str:
    from airgap.progress import human_bytes

    signed = f", parts manifest signed by {parts.signed_by}" if parts.signed_by else ""
    return (f"read from {len(parts.paths)} part(s) of {human_bytes(parts.manifest.part_size)} "
            f"({parts.manifest_path.name}{signed})")


@click.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", required=True, metavar="OUT|-", help="Bundle file to write, or - for stdout.")
@click.option("--key", "key_ref", default=None, metavar="KEYREF",
              help="Sign the bundle manifest with this private key (file, env://, pkcs11:; COSIGN_PASSWORD).")
@click.option("-j", "--jobs", type=click.IntRange(1, 64), default=None, help="Blobs downloaded at once [4].")
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False), default=None,
              help="Keep downloaded blobs in DIR and reuse them next time (re-hashed on use).")
@click.option("--no-verify", is_flag=True, help="Do not verify the images against the policy before packing.")
@click.option("--split-size", default=None, metavar="SIZE",
              help="Write OUT.part-0001, ... of SIZE bytes each (64M, 4G, 4GiB, 4000MB) and OUT.parts.json.")
@click.option("--delta", "delta_inventory", type=click.Path(dir_okay=False, exists=True), default=None,
              metavar="INVENTORY", help="Leave out the image blobs this site inventory says the site holds.")
@click.option("--since", "since", default=None, metavar="OLD_BUNDLE",
              help="Leave out the image blobs this older bundle carried (the site loaded it).")
@click.option("--delta-key", "delta_key_refs", multiple=True, metavar="KEYREF",
              help="Public key the inventory (or the --since bundle) must be signed with.")
@click.option("--with-cli", is_flag=True,
              help="Also write OUT.airgap.pyz: airgap and its wheels as one file that runs with python3 offline "
                   "(+ .sha256; signed with --key as .sig; pinned in the bundle manifest).")
@click.option("--cli-wheels", type=click.Path(exists=True, file_okay=False), default=None, metavar="DIR",
              help="With --with-cli: take the wheels from this wheelhouse, offline [pip download, cached].")
@click.option("--cli-platform", default=None, metavar="TAG",
              help="With --with-cli: the disconnected host's glibc level and arch [manylinux_2_28_x86_64].")
@click.option("--cli-python", default=None, metavar="X.Y",
              help="With --with-cli: the disconnected host's CPython version [3.11].")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary; no progress.")
@registry_options
@timeout_option("bulk_timeout")
def pack(spec_path: str, output: str, key_ref: str | None, jobs: int | None, cache_dir: str | None,
         no_verify: bool, split_size: str | None, delta_inventory: str | None, since: str | None,
         delta_key_refs: tuple[str, ...], with_cli: bool, cli_wheels: str | None, cli_platform: str | None,
         cli_python: str | None, as_json: bool, insecure: tuple[str, ...], ca_file: str | None) -> None:
    """Pack the images of SPEC, their signatures and the trust to verify them into one bundle file.

    Every image is verified against the spec's policy at its source first (all failures are reported
    at once). The output is reproducible: same inputs and SOURCE_DATE_EPOCH, byte-identical file.
    """
    from airgap.bundle.pack import pack as do_pack
    from airgap.bundle.spec import BundleSpec
    from airgap.oci.blobcache import BlobLocations
    from airgap.oci.registry import RegistryClient
    from airgap.progress import human_bytes

    if output == "-":  # stdout carries the bundle: --json documents (and errors) go to stderr
        click.get_current_context().meta[JSON_TO_STDERR_KEY] = True
        if sys.stdout.isatty():
            raise click.UsageError("-o - writes the bundle to stdout, which is a terminal: redirect it "
                                   "(> demo.tar, | airgap load -) or give -o FILE")
    size = None
    if split_size is not None:
        from airgap.bundle.parts import parse_size

        size = parse_size(split_size)
        if output == "-":
            raise click.UsageError("--split-size writes part files: give -o OUT, not -")
    if delta_inventory and since:
        raise click.UsageError("--delta and --since are two bases for a delta: give one")
    if delta_key_refs and not (delta_inventory or since):
        raise click.UsageError("--delta-key checks the --delta inventory or the --since bundle: give one")
    if (cli_wheels or cli_platform or cli_python) and not with_cli:
        raise click.UsageError("--cli-wheels, --cli-platform and --cli-python shape the --with-cli archive: "
                               "add --with-cli")
    if with_cli:
        from airgap.fileio import is_special

        if output == "-" or is_special(Path(output)):
            raise click.UsageError("--with-cli writes OUT.airgap.pyz beside the bundle: give -o a file path")
    base = None
    if delta_inventory:
        from airgap.site.inventory import read_inventory

        base = read_inventory(delta_inventory, key=_public_keys(delta_key_refs)).inventory.delta_base()
    elif since:
        from airgap.bundle.delta import base_from_bundle

        base = base_from_bundle(since, key=_public_keys(delta_key_refs))
    spec = BundleSpec.load(spec_path)
    signer = None
    if key_ref:
        from airgap.keys.references import load_signer

        signer = load_signer(key_ref)
    options = make_options(insecure, ca_file, jobs)
    client = RegistryClient(options, locations=BlobLocations.default())
    cli = None
    if with_cli:  # before any image is fetched: a wheel pip cannot find fails the pack at once
        from airgap.bundle.cli_archive import Target, prepare

        cli = prepare(output, Target.parse(cli_python, cli_platform), spec.created,
                      wheelhouse=Path(cli_wheels) if cli_wheels else None)
    summary = do_pack(spec, output, client=client, key=signer, jobs=options.limits.concurrency, cache_dir=cache_dir,
                      verify=not no_verify, progress=False if as_json else None, split_size=size, delta=base,
                      cli=cli)
    if client.locations is not None:
        client.locations.save()
    to_stderr = output == "-"
    if as_json:
        echo(__import__("json").dumps(summary.to_json(), indent=2, sort_keys=True), err=to_stderr)
        return
    echo(f"packed {len(summary.images)} image(s), {summary.blobs} blob(s) "
               f"({human_bytes(summary.blob_bytes)}) -> {output} in {summary.seconds:.2f}s", err=to_stderr)
    for image in summary.images:
        echo(f"  {image['ref']}@{image['digest']}", err=to_stderr)
    if summary.delta is not None:
        echo(f"delta against {summary.delta['kind']} {summary.delta['base']}: left out "
             f"{summary.delta['omitted_blobs']} blob(s) ({human_bytes(summary.delta['omitted_bytes'])}) the site "
             "holds", err=to_stderr)
    if summary.parts is not None:
        echo(f"split into {len(summary.parts)} part(s): {summary.parts[0]['name']} ... "
             f"{summary.parts[-1]['name']}; parts manifest {summary.parts_manifest}", err=to_stderr)
    if summary.airgap_image is not None:
        echo(f"airgap image: {summary.airgap_image}", err=to_stderr)
    if summary.cli is not None:
        echo(f"airgap CLI: {summary.cli['path']} ({human_bytes(summary.cli['size'])}, {summary.cli['digest']}, "
             f"CPython {summary.cli['python']} {summary.cli['platform']}; "
             f"{'signed' if summary.signed_by else 'unsigned'}, pinned in the bundle manifest)", err=to_stderr)
    echo(f"bundle digest: {summary.bundle_digest}" + (f" (signed by {summary.signed_by})"
                                                            if summary.signed_by else " (unsigned)"), err=to_stderr)


@click.command()
@_bundle_argument
@click.option("--registry", "target", required=True, metavar="HOST[/PREFIX]", help="The registry to load into.")
@click.option("--translate", "mode", type=click.Choice(["zarf", "prefix", "none"]), default="zarf",
              show_default=True, help="How upstream refs become local refs.")
@click.option("--rule", "rules", multiple=True, metavar="FROM=TO",
              help="With --translate prefix: a prefix rule (default: every registry R under HOST/PREFIX/R).")
@_bundle_trust_options
@click.option("-j", "--jobs", type=click.IntRange(1, 64), default=None, help="Blobs pushed at once [4].")
@click.option("--map-out", type=click.Path(dir_okay=False), default=None,
              help="Also write the translation map (map.json) to this file.")
@click.option("--trust-out", type=click.Path(file_okay=False), default=None,
              help="Write the bundle's trust directory (with map.json) for `airgap verify --trust`.")
@click.option("--site", "site_dir", type=click.Path(file_okay=False), default=None,
              help="Record the bundle in this site directory (its trust kept beside every other bundle's).")
@click.option("--site-key", "site_key", default=None, metavar="KEYREF",
              help="With --site: also push the site state to the registry, signed with this key.")
@click.option("--force", is_flag=True,
              help="Replace tags another bundle (or no airgap bundle) holds; says what it replaced.")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary; no progress.")
@registry_options
@timeout_option("bulk_timeout")
def load(bundle: tuple[str, ...], target: str, mode: str, rules: tuple[str, ...], key_refs: tuple[str, ...],
         bundle_digest: str | None, allow_unsigned_bundle: bool, jobs: int | None, map_out: str | None,
         trust_out: str | None, site_dir: str | None, site_key: str | None, force: bool, as_json: bool,
         insecure: tuple[str, ...], ca_file: str | None) -> None:
    """Load a bundle (a file, - for stdin, or the parts of a split bundle) into the local registry, verifying
    every byte on the way.

    The bundle must be signed with --key, pinned with --bundle-digest, or explicitly allowed unsigned.
    Blobs the registry has are skipped; tags are written last; loading twice changes nothing.
    """
    from airgap.bundle.load import load as do_load
    from airgap.bundle.source import open_source
    from airgap.oci.blobcache import BlobLocations
    from airgap.oci.registry import RegistryClient
    from airgap.progress import human_bytes

    if rules and mode != "prefix":
        conflict("--rule", f"--translate {mode}", "prefix rules apply to --translate prefix only")
    _check_trust_flags(key_refs, bundle_digest, allow_unsigned_bundle)
    if site_key and not site_dir:
        raise click.UsageError("--site-key needs --site")
    keys = _public_keys(key_refs)
    options = make_options(insecure, ca_file, jobs)
    client = RegistryClient(options, locations=BlobLocations.default())
    signer = None
    if site_key:
        from airgap.keys.references import load_signer

        signer = load_signer(site_key)
    with contextlib.ExitStack() as stack:
        if site_dir:
            from airgap.site.state import SiteLock

            stack.enter_context(SiteLock(Path(site_dir)))  # one writer at a time, for the whole load
        with open_source(bundle, key=keys, bundle_digest=bundle_digest) as source:
            summary = do_load(source.stream, target, translate_mode=mode, rules=rules, key=keys,
                              bundle_digest=bundle_digest, allow_unsigned=allow_unsigned_bundle, client=client,
                              jobs=options.limits.concurrency, map_out=map_out, trust_out=trust_out,
                              progress=False if as_json else None, force=force)
        if site_dir:
            from airgap.site.state import record_load

            record_load(Path(site_dir), summary, client=client)
            if signer is not None:
                from airgap.site.mirror import push_state

                push_state(client, Path(site_dir), target, signer)
    for what in summary.replaced:
        echo(f"warning: --force: replaced {what}", err=True)
    if client.locations is not None:
        client.locations.save()
    if as_json:
        emit_json({**summary.to_json(), "parts": source.parts.describe() if source.parts else None})
        return
    state = "already loaded, nothing pushed" if summary.already_loaded else (
        f"{summary.blobs_pushed} blob(s) pushed ({human_bytes(summary.bytes_pushed)}), "
        f"{summary.manifests_pushed} manifest(s)")
    echo(f"loaded {len(summary.images)} image(s) into {summary.registry}: {state} in {summary.seconds:.2f}s")
    if summary.delta is not None and not summary.already_loaded:
        echo(f"delta against {summary.delta['kind']} {summary.delta['base']}: the {summary.delta['omitted_blobs']} "
             f"blob(s) it leaves out ({human_bytes(summary.delta['omitted_bytes'])}) were in place"
             + (f", {summary.delta['mounted']} mounted across repositories" if summary.delta["mounted"] else ""))
    for image in summary.images:
        echo(f"  {image['upstream']} -> {', '.join(image['local'])}")
    echo(f"translation map: {summary.map_ref}" + (f", {map_out}" if map_out else "")
         + (f"; trust directory: {trust_out}" if trust_out else ""))
    if summary.airgap_image is not None:
        echo(f"airgap image: {summary.airgap_image}")
    if source.parts is not None:
        echo(_parts_line(source.parts))


@click.command()
@_bundle_argument
@click.option("--key", "key_refs", multiple=True, metavar="KEYREF",
              help="Check the bundle signature (and a parts manifest's) with this key.")
@click.option("--bundle-digest", default=None, metavar="sha256:HEX", callback=sha256_digest,
              help="Check the bundle digest.")
@click.option("--json", "as_json", is_flag=True, help="Print the bundle's contents as JSON.")
def inspect(bundle: tuple[str, ...], key_refs: tuple[str, ...], bundle_digest: str | None, as_json: bool) -> None:
    """Show what a bundle holds: images, platforms, signatures, keys, policies, sizes, its digest.

    Reads only the manifest and the trust files (no blob is read); use verify-bundle to check every byte.
    """
    from airgap.bundle import inspect as inspect_mod

    info = inspect_mod.inspect(bundle, key=_public_keys(key_refs), bundle_digest=bundle_digest)
    if as_json:
        emit_json(info)
    else:
        echo(inspect_mod.render(info))


@click.command("verify-bundle")
@_bundle_argument
@_bundle_trust_options
@click.option("--json", "as_json", is_flag=True, help="Print the verdicts and evidence as JSON.")
def verify_bundle(bundle: tuple[str, ...], key_refs: tuple[str, ...], bundle_digest: str | None,
                  allow_unsigned_bundle: bool, as_json: bool) -> None:
    """Check a bundle offline: its signature, every entry's digest, nothing unlisted or missing, then every
    image against the bundled policy. Exit 0 only when everything passes."""
    from airgap.bundle.artifacts import verify_bundle as do_verify
    from airgap.bundle.source import open_source
    from airgap.commands.verify import _render, results_json

    _check_trust_flags(key_refs, bundle_digest, allow_unsigned_bundle)
    keys = _public_keys(key_refs)
    with open_source(bundle, key=keys, bundle_digest=bundle_digest) as source:
        outcome = do_verify(source.stream, key=keys, bundle_digest=bundle_digest,
                            allow_unsigned=allow_unsigned_bundle)
    cli = _check_cli(bundle, outcome.airgap.cli if outcome.airgap is not None else None)
    if as_json:
        emit_json({"bundle_digest": outcome.bundle_digest, "signed_by": outcome.signed_by, "name": outcome.name,
                   "version": outcome.version, **results_json(outcome.results),
                   "parts": source.parts.describe() if source.parts else None, "delta": outcome.delta,
                   "airgap_image": outcome.airgap.image if outcome.airgap is not None else None, "cli": cli})
    else:
        how = f"signed by {outcome.signed_by}" if outcome.signed_by else "pinned or explicitly allowed unsigned"
        echo(f"bundle {outcome.name} {outcome.version} {outcome.bundle_digest}: every entry verified ({how})")
        if source.parts is not None:
            echo(_parts_line(source.parts) + ", every part's sha256 matched")
        if outcome.delta is not None:
            from airgap.progress import human_bytes

            unchecked = outcome.delta["unchecked"]
            echo(f"delta against {outcome.delta['kind']} {outcome.delta['base']}: {len(unchecked)} blob(s) "
                 f"({human_bytes(sum(u['size'] for u in unchecked))}) NOT checked here, the delta leaves them out "
                 "(load checks the site holds them):")
            for u in unchecked:
                echo(f"  {u['digest']}  {human_bytes(u['size'])}  {', '.join(u['images'])}")
        if cli is not None:
            echo(f"airgap CLI {cli['path']}: " + ("sha256 matches the bundle manifest" if cli["status"] == "ok" else
                                                  "not beside the bundle, not checked"))
        for result in outcome.results:
            echo(_render(result))
    if not outcome.ok:
        failed = sum(1 for r in outcome.results if not r)
        if not as_json:
            echo(f"error: {failed} of {len(outcome.results)} image(s) failed verification", err=True)
        sys.exit(1)


def _check_cli(bundle: tuple[str, ...], pin: CliPin | None) -> dict[str, Any] | None:
    """The CLI archive the bundle pins, checked where the bundle was read from (its directory, or the parts')."""
    if pin is None or bundle == ("-",):
        return None
    from airgap.bundle.cli_archive import check_beside

    first = Path(bundle[0])
    directory = first if first.is_dir() else first.parent
    return {"path": str(directory / pin.name), "digest": pin.digest, "status": check_beside(directory, pin)}


@click.command("export")
@_bundle_argument
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Directory to write the trust files into.")
@_bundle_trust_options
@click.option("--map", "map_file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Include this translation map (from load --map-out) as map.json.")
def trust_export(bundle: tuple[str, ...], out_dir: str, key_refs: tuple[str, ...], bundle_digest: str | None,
                 allow_unsigned_bundle: bool, map_file: str | None) -> None:
    """Export a bundle's trust directory (keys, key manifest, trusted roots, policy) for `airgap verify`."""
    from pathlib import Path

    from airgap.bundle.inspect import read_bundle, write_trust

    _check_trust_flags(key_refs, bundle_digest, allow_unsigned_bundle)
    reader = read_bundle(bundle, key=_public_keys(key_refs), bundle_digest=bundle_digest,
                         allow_unsigned=allow_unsigned_bundle)
    written = write_trust(reader.files, out_dir, extra={"map.json": Path(map_file).read_bytes()} if map_file else None)
    echo(f"wrote {len(written)} trust file(s) to {out_dir}: {', '.join(written)}")


@click.group("trust")
def trust_group() -> None:
    """Trust directories: export them from bundles."""


def register(cli: click.Group) -> None:
    for command in (pack, load, inspect, verify_bundle):
        cli.add_command(command)
    existing = cli.commands.get("trust")
    group = existing if isinstance(existing, click.Group) else trust_group
    group.add_command(trust_export)
    if existing is None:
        cli.add_command(group)
