"""What every command shares: registry flags, turning them into options, timeouts, JSON output."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

if TYPE_CHECKING:
    from airgap.config import RegistryOptions

F = TypeVar("F", bound=Callable[..., Any])

_REDIRECTS_KEY = "airgap.redirect_hosts"
_INSECURE_ALL_KEY = "airgap.allow_insecure_registry"
ARGV_KEY = "airgap.argv"  # the command line as the top group saw it (cli.wants_json reads it)
JSON_TO_STDERR_KEY = "airgap.json_to_stderr"  # set by a command whose stdout carries data (pack -o -)


def _remember_redirect_hosts(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> None:
    ctx.meta[_REDIRECTS_KEY] = value  # read by make_options, so commands need not pass it along


def _remember_insecure_all(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    ctx.meta[_INSECURE_ALL_KEY] = value  # read by make_options (with the refs the command names)


def registry_options(func: F) -> F:
    """Flags every registry-touching command shares (names as cosign/crane spell them)."""
    func = click.option(
        "--insecure-registry", "insecure", multiple=True, metavar="HOST",
        help="Allow plain HTTP and unverified TLS for HOST[:PORT] (loopback hosts may use HTTP anyway).",
    )(func)
    func = click.option(
        "--ca-file", "--registry-cacert", "ca_file", type=click.Path(exists=True, dir_okay=False), default=None,
        help="PEM bundle of CA certificates to trust for registry TLS (--registry-cacert: cosign's name).",
    )(func)
    func = click.option(
        "--allow-redirect", multiple=True, metavar="HOST[:PORT]", expose_value=False,
        callback=_remember_redirect_hosts,
        help="Follow a registry's redirects to HOST (blob storage, a CDN; without a port, its default ports); "
             "repeatable. Redirects to any other host, or from https to http, are refused.",
    )(func)
    return func


def allow_insecure_registry_option(func: F) -> F:
    """cosign's ``--allow-insecure-registry`` (a boolean, for every registry). airgap's ``--insecure-registry HOST``
    names hosts; the boolean is mapped onto it for the registries named in the refs of the command (images,
    signature repositories), and allows plain HTTP there as well as unverified TLS (cosign's flag only skips TLS
    verification; plain HTTP is its ``--allow-http-registry``). Other hosts (a token service, a redirect) stay
    verified. Commands that use it pass those refs to :func:`make_options`."""
    return click.option(
        "--allow-insecure-registry", is_flag=True, expose_value=False, callback=_remember_insecure_all,
        help="cosign's flag: allow plain HTTP and unverified TLS for the registries named in this command's "
             "refs (as --insecure-registry for each of them).",
    )(func)


def registry_alias_option(func: F) -> F:
    """``--registry-alias A=B`` (repeatable): reach registry A at address B; parsed by ``translate.Aliases``."""
    return click.option(
        "--registry-alias", "aliases", multiple=True, metavar="A=B",
        help="Reach registry A at address B (e.g. 127.0.0.1:31999=zarf-docker-registry.zarf.svc:5000).",
    )(func)


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """A Go duration as cosign's ``--timeout`` takes it (``30s``, ``3m``, ``1h30m``) or seconds."""
    if value is None:
        return None
    from airgap.oci.deadline import parse_duration

    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


_TIMEOUT_HELP = {
    "timeout": "[default: 3m, as cosign]",
    "bulk_timeout": "[default: none; a transfer that stalls is still aborted]",
}


def timeout_option(limit: str) -> Callable[[F], F]:
    """``-t/--timeout DURATION`` (cosign's spelling): the whole command runs under that deadline (see
    :mod:`airgap.oci.deadline`); without the flag, under ``Limits.<limit>`` (``timeout`` or ``bulk_timeout``)."""

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def run(*args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
            from airgap.config import Limits
            from airgap.oci.deadline import deadline

            seconds = timeout if timeout is not None else getattr(Limits(), limit)
            with deadline(seconds):
                return func(*args, **kwargs)

        return click.option(  # type: ignore[return-value]
            "-t", "--timeout", default=None, metavar="DURATION", callback=_duration,
            help="Overall deadline of the command's registry traffic (e.g. 30s, 3m, or seconds); a registry "
                 f"that does not answer in time fails it {_TIMEOUT_HELP[limit]}.",
        )(run)

    return decorate


def make_options(insecure: tuple[str, ...], ca_file: str | None, jobs: int | None = None, *,
                 named: tuple[str, ...] = ()) -> RegistryOptions:
    """RegistryOptions from the shared flags (``-j`` overrides the default concurrency; ``--allow-redirect``
    and ``--allow-insecure-registry`` come from the running command's context). ``named``: the registry hosts
    the command's refs name, insecure when ``--allow-insecure-registry`` was given."""
    from dataclasses import replace

    from airgap.config import Limits, RegistryOptions
    from airgap.oci.transport import redirect_hosts

    ctx = click.get_current_context(silent=True)
    allowed = redirect_hosts(ctx.meta.get(_REDIRECTS_KEY, ()) if ctx is not None else ())
    limits = Limits() if not jobs else replace(Limits(), concurrency=jobs)
    hosts = set(insecure)
    if ctx is not None and ctx.meta.get(_INSECURE_ALL_KEY):
        hosts.update(named)
    return RegistryOptions(limits=limits, insecure=frozenset(hosts), ca_file=ca_file, redirect_hosts=allowed)


def registry_hosts(texts: Iterable[str]) -> tuple[str, ...]:
    """The registry hosts (``host[:port]``, as the ref spells them and as the API is reached) named by image refs
    or repositories; ``oci:`` layouts and unparsable text name none (the command reports those itself)."""
    from airgap import refs
    from airgap.errors import ConfigError

    out: list[str] = []
    for text in texts:
        if not text or text.startswith("oci:"):
            continue
        try:
            registry = refs.parse(text, default_tag=None).registry
        except ConfigError:
            continue
        out += [registry, refs.api_host(registry)]
    return tuple(dict.fromkeys(out))


def parse_annotations(pairs: tuple[str, ...], flag: str = "-a") -> dict[str, str]:
    """``KEY=VALUE`` pairs (cosign's ``-a``: split at the first ``=``; a later pair for the same key wins)."""
    from airgap.errors import ConfigError

    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"{flag}: annotation {pair!r} is not key=value")
        out[key] = value
    return out


def conflict(first: str, second: str, why: str) -> NoReturn:
    """Two flags that cannot both be meant: a usage error (exit 2) naming them, and why."""
    raise click.UsageError(f"{first} and {second} conflict: {why}")


def sha256_digest(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A ``--bundle-digest`` as pack and inspect print it (``sha256:`` and 64 hex digits), lowercased."""
    if value is None:
        return None
    import re

    if not re.fullmatch(r"sha256:[0-9a-fA-F]{64}", value.strip()):
        raise click.BadParameter(f"{value!r} is not a sha256 digest (sha256: then 64 hex digits, as pack and "
                                 "inspect print it)", ctx, param)
    return value.strip().lower()


def emit_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=True))  # json.dumps escapes every control character


def echo(text: object = "", *, err: bool = False, nl: bool = True) -> None:
    """Print a command's human output with untrusted text made inert (:func:`airgap.terminal.safe_text`): the
    only way commands print, so no escape sequence from a registry, a bundle or a pod spec reaches a terminal."""
    from airgap.terminal import safe_text

    click.echo(safe_text(text), err=err, nl=nl)
