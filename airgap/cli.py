"""The ``airgap`` command line: parse, call one library function, render. No logic lives here.

Imports stay light at module level (click and our error types only) so ``airgap --help`` starts fast;
each command imports what it needs when it runs.
"""

from __future__ import annotations

from typing import Any

import click

from airgap import __version__
from airgap.commands.common import echo, emit_json, make_options, registry_options, timeout_option
from airgap.errors import Error


class AirgapGroup(click.Group):
    """Turns every airgap error into one line on stderr and a non-zero exit, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Error as exc:
            echo(f"error: {exc}", err=True)
            if (ctx.obj or {}).get("verbose"):
                cause = exc.__cause__ or exc.__context__
                while cause is not None:
                    echo(f"  caused by: {type(cause).__name__}: {cause}", err=True)
                    cause = cause.__cause__ or cause.__context__
            ctx.exit(exc.exit_code)
        except OSError as exc:
            where = f": {exc.filename}" if exc.filename else ""
            echo(f"error: {exc.strerror or exc}{where}", err=True)
            ctx.exit(1)


@click.group(cls=AirgapGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="airgap")
@click.option("--verbose", "-v", is_flag=True, help="On errors, show the chain of causes.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """Move signed container images into disconnected networks and verify them offline.

    Typical flow: sign (connected) -> pack a bundle -> carry it across -> load into the local
    registry -> verify what runs there against the keys and policy in the bundle.
    """
    ctx.ensure_object(dict)
    ctx.obj["verbose"] = verbose


@cli.command()
@click.argument("source")
@click.argument("destination")
@click.option("-j", "--jobs", type=click.IntRange(1, 64), default=None, help="Blobs moved at once [4].")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary; no progress.")
@registry_options
@timeout_option("bulk_timeout")
def copy(source: str, destination: str, jobs: int | None, as_json: bool, insecure: tuple[str, ...],
         ca_file: str | None) -> None:
    """Copy an image, every platform, with its signatures, attestations and referrers.

    SOURCE and DESTINATION are image references (registry/repo[:tag|@digest]) or OCI image layouts
    (oci:PATH[:TAG]). Blobs the destination already has are skipped; the tag is written last.
    """
    from airgap.oci.copy import copy_image
    from airgap.progress import human_bytes

    summary = copy_image(source, destination, options=make_options(insecure, ca_file, jobs), jobs=jobs,
                         progress=False if as_json else None)
    if as_json:
        emit_json(summary.to_json())
        return
    extras = []
    if summary.tags:
        extras.append(f"{len(summary.tags)} signature/attestation tag(s)")
    if summary.referrers:
        extras.append(f"{len(summary.referrers)} referrer(s)")
    echo(
        f"copied {summary.source} -> {summary.destination}@{summary.digest}\n"
        f"  {summary.manifests} manifest(s), {summary.blobs} blob(s) "
        f"({summary.blobs_copied} sent, {human_bytes(summary.bytes_copied)}) in {summary.seconds:.2f}s"
        + (f"; {', '.join(extras)}" if extras else "")
        + (f"; platforms {', '.join(summary.platforms)}" if summary.platforms else "")
    )


# Command groups that live in airgap/commands/<name>.py, each with ``register(cli)``. Those modules
# import only click at module level (heavy imports happen inside the commands), so --help stays fast.
_COMMAND_MODULES: tuple[str, ...] = (
    "verify",
    "sign",
    "triangulate",
    "keys",
    "audit",
    "bundle",
    "site",
    "webhook",
)


def _register_commands() -> None:
    import importlib

    for name in _COMMAND_MODULES:
        importlib.import_module(f"airgap.commands.{name}").register(cli)


_register_commands()


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="airgap")


if __name__ == "__main__":
    main()
