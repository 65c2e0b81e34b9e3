"""The ``airgap`` command line: parse, call one library function, render. No logic lives here.

Imports stay light at module level (click and our error types only) so ``airgap --help`` starts fast;
each command imports what it needs when it runs.
"""

from __future__ import annotations

from typing import Any

import click

from airgap import __version__
from airgap.commands.common import (
    ARGV_KEY,
    JSON_TO_STDERR_KEY,
    echo,
    emit_json,
    make_options,
    registry_options,
    timeout_option,
)
from airgap.errors import Error

INTERRUPTED = 130  # 128 + SIGINT, as shells report a command ended by Ctrl-C
TERMINATED = 143  # 128 + SIGTERM (kill, a CI job's timeout, systemd or Kubernetes stopping it)


class AirgapGroup(click.Group):
    """Turns every airgap error into one line on stderr and a non-zero exit, never a traceback: 1 for a failure,
    2 for a usage error, 130 when interrupted (Ctrl-C), 143 when terminated (SIGTERM). With ``--json`` the error
    is also a JSON document, ``{"error": MESSAGE, "exit_code": N}``, where the command's JSON would have gone
    (stdout)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta.setdefault(ARGV_KEY, list(args))  # the outermost group's view: the whole command line
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        if ctx.parent is not None:  # a nested group (site, key, ...): the top one handles errors
            return super().invoke(ctx)
        signals = _catch_interrupts()
        try:
            return super().invoke(ctx)
        except Error as exc:
            _fail(ctx, str(exc), exc.exit_code)
            if (ctx.obj or {}).get("verbose"):
                cause = exc.__cause__ or exc.__context__
                while cause is not None:
                    echo(f"  caused by: {type(cause).__name__}: {cause}", err=True)
                    cause = cause.__cause__ or cause.__context__
            ctx.exit(exc.exit_code)
        except OSError as exc:
            where = f": {exc.filename}" if exc.filename else ""
            _fail(ctx, f"{exc.strerror or exc}{where}", 1)
            ctx.exit(1)
        except click.UsageError as exc:  # click prints it (with the usage line) and exits 2
            if wants_json(ctx):
                _json_error(ctx, exc.format_message(), exc.exit_code)
            raise
        except KeyboardInterrupt:
            import signal

            if signals.received == signal.SIGTERM:
                _fail(ctx, "terminated", TERMINATED)
                ctx.exit(TERMINATED)
            _fail(ctx, "interrupted", INTERRUPTED)
            ctx.exit(INTERRUPTED)
        finally:
            signals.restore()


def _fail(ctx: click.Context, message: str, code: int) -> None:
    """The one line on stderr; with ``--json``, the JSON error document too."""
    echo(f"error: {message}", err=True)
    if wants_json(ctx):
        _json_error(ctx, message, code)


def _json_error(ctx: click.Context, message: str, code: int) -> None:
    import json

    doc = json.dumps({"error": message, "exit_code": code}, indent=2, sort_keys=True)
    click.echo(doc, err=_stdout_is_data(ctx))  # json.dumps escapes control characters


def _words(ctx: click.Context) -> list[str]:
    args: list[str] = ctx.meta.get(ARGV_KEY, [])
    return args[: args.index("--")] if "--" in args else args


def _command(ctx: click.Context) -> click.Command:
    """The (sub)command the command line names."""
    command: click.Command = ctx.command
    for word in _words(ctx):
        if isinstance(command, click.Group) and word in command.commands:
            command = command.commands[word]
    return command


def wants_json(ctx: click.Context) -> bool:
    """Whether the command line asks the (sub)command it names for ``--json``: read from the arguments
    themselves, so a usage error found before the flag was parsed is reported as JSON too."""
    if "--json" not in _words(ctx):
        return False
    return any("--json" in p.opts for p in _command(ctx).params if isinstance(p, click.Option))


def _stdout_is_data(ctx: click.Context) -> bool:
    """``pack -o -``: stdout carries the bundle, so its JSON documents go to stderr (even when the command
    failed before reading its options)."""
    if ctx.meta.get(JSON_TO_STDERR_KEY):
        return True
    words = _words(ctx)
    given = [b for a, b in zip(words, words[1:], strict=False) if a in ("-o", "--output")]
    return _command(ctx).name == "pack" and ("-" in given or "--output=-" in words or "-o-" in words)


class _Signals:
    """The handlers :func:`_catch_interrupts` installed, the first signal they received, and how to restore them."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.previous: dict[int, Any] = {}

    def restore(self) -> None:
        import signal

        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


def _catch_interrupts() -> _Signals:
    """Install the Ctrl-C and SIGTERM handlers for the command's run. The first SIGINT or SIGTERM stops every
    progress display and transfer loop (:func:`airgap.progress.interrupt`) and raises KeyboardInterrupt, so the
    command cleans up what it was writing and exits 130 (SIGINT) or 143 (SIGTERM); a second one exits at once.
    A signal whose handler is not Python's default (a program embedding airgap) is left alone."""
    import signal
    import threading

    signals = _Signals()
    if threading.current_thread() is not threading.main_thread():
        return signals  # embedded in a program with its own handling: leave it alone
    from airgap.progress import interrupt, reset_interrupt

    defaults = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
    mine = [signum for signum, default in defaults.items() if signal.getsignal(signum) is default]
    if not mine:
        return signals
    reset_interrupt()

    def again(signum: int, frame: Any) -> None:
        _exit_now(TERMINATED if signals.received == signal.SIGTERM else INTERRUPTED)

    def first(signum: int, frame: Any) -> None:
        signals.received = signum
        interrupt()
        for each in mine:
            signal.signal(each, again)
        raise KeyboardInterrupt

    for signum in mine:
        signals.previous[signum] = signal.signal(signum, first)
    return signals


def _exit_now(code: int) -> None:
    """Exit without waiting for worker threads still inside a network call (they hold nothing we must keep:
    the command already cleaned up, or the user insisted)."""
    import os
    import sys

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


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
    """Console-script entry point. After an interruption, exits at once: a worker thread still waiting on a
    registry must not hold the exit (the command has cleaned up what it wrote)."""
    try:
        cli(prog_name="airgap")
    except SystemExit as exc:
        if exc.code == INTERRUPTED:
            _exit_now(INTERRUPTED)
        raise


if __name__ == "__main__":
    main()
