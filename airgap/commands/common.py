"""What every command shares: registry flags, turning them into options, JSON output."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from airgap.config import RegistryOptions

F = TypeVar("F", bound=Callable[..., Any])


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
    return func


def registry_alias_option(func: F) -> F:
    """``--registry-alias A=B`` (repeatable): reach registry A at address B; parsed by ``translate.Aliases``."""
    return click.option(
        "--registry-alias", "aliases", multiple=True, metavar="A=B",
        help="Reach registry A at address B (e.g. 127.0.0.1:31999=zarf-docker-registry.zarf.svc:5000).",
    )(func)


def make_options(insecure: tuple[str, ...], ca_file: str | None, jobs: int | None = None) -> RegistryOptions:
    """RegistryOptions from the shared flags (``-j`` overrides the default concurrency)."""
    from dataclasses import replace

    from airgap.config import Limits, RegistryOptions

    limits = Limits() if not jobs else replace(Limits(), concurrency=jobs)
    return RegistryOptions(limits=limits, insecure=frozenset(insecure), ca_file=ca_file)


def emit_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=True))  # json.dumps escapes every control character


def echo(text: object = "", *, err: bool = False, nl: bool = True) -> None:
    """Print a command's human output with untrusted text made inert (:func:`airgap.terminal.safe_text`): the
    only way commands print, so no escape sequence from a registry, a bundle or a pod spec reaches a terminal."""
    from airgap.terminal import safe_text

    click.echo(safe_text(text), err=err, nl=nl)
