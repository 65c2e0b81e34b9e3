"""What every command shares: registry flags, turning them into options, JSON output."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from airgap.config import RegistryOptions

F = TypeVar("F", bound=Callable[..., Any])

_REDIRECTS_KEY = "airgap.redirect_hosts"


def _remember_redirect_hosts(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> None:
    ctx.meta[_REDIRECTS_KEY] = value  # read by make_options, so commands need not pass it along


def registry_options(func: F) -> F:
    """Flags every registry-touching command shares (names as cosign/crane spell them)."""
    func = click.option(
        "--insecure-registry", "insecure", multiple=True, metavar="HOST",
        help="Allow plain HTTP and unverified TLS for HOST[:PORT] (loopback hosts may use HTTP anyway).",
    )(func)
    func = click.option(
        "--ca-file", type=click.Path(exists=True, dir_okay=False), default=None,
        help="PEM bundle of CA certificates to trust for registry TLS.",
    )(func)
    func = click.option(
        "--allow-redirect", multiple=True, metavar="HOST[:PORT]", expose_value=False,
        callback=_remember_redirect_hosts,
        help="Follow a registry's redirects to HOST (blob storage, a CDN; without a port, its default ports); "
             "repeatable. Redirects to any other host, or from https to http, are refused.",
    )(func)
    return func


def registry_alias_option(func: F) -> F:
    """``--registry-alias A=B`` (repeatable): reach registry A at address B; parsed by ``translate.Aliases``."""
    return click.option(
        "--registry-alias", "aliases", multiple=True, metavar="A=B",
        help="Reach registry A at address B (e.g. 127.0.0.1:31999=zarf-docker-registry.zarf.svc:5000).",
    )(func)


def make_options(insecure: tuple[str, ...], ca_file: str | None, jobs: int | None = None) -> RegistryOptions:
    """RegistryOptions from the shared flags (``-j`` overrides the default concurrency; ``--allow-redirect``
    comes from the running command's context)."""
    from dataclasses import replace

    from airgap.config import Limits, RegistryOptions
    from airgap.oci.transport import redirect_hosts

    ctx = click.get_current_context(silent=True)
    allowed = redirect_hosts(ctx.meta.get(_REDIRECTS_KEY, ()) if ctx is not None else ())
    limits = Limits() if not jobs else replace(Limits(), concurrency=jobs)
    return RegistryOptions(limits=limits, insecure=frozenset(insecure), ca_file=ca_file, redirect_hosts=allowed)


def emit_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=True))
