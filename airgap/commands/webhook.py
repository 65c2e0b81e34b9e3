"""`airgap webhook serve|certs|manifests|values`: the Kubernetes admission webhooks and their deployment."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from airgap.commands.common import echo, make_options, registry_alias_option, registry_options

MODES = ("enforce", "warn", "audit")


F = TypeVar("F", bound=Callable[..., Any])


@click.group()
def webhook() -> None:
    """Kubernetes admission webhooks: pin verified digests, and block images that fail verification (enforce),
    or warn, or audit."""


MiB = 1024 * 1024
# Defaults mirror airgap.admission.service.WebhookConfig (not imported here: `airgap --help` stays fast);
# tests/unit/admission/test_admission.py checks they agree.
LIMITS = {
    "max_body_bytes": 3 * MiB, "max_images": 256, "max_verifications": 4, "max_signature_bytes": 16 * MiB,
    "max_signature_layers": 1000, "header_timeout": 10.0, "body_timeout": 10.0, "keepalive_timeout": 75.0,
    "max_connections": 1024, "max_buffered_bytes": 16 * MiB, "tag_reuse_window": 3.0,
}
TAG_WINDOW_HELP = ("Seconds the mutating webhook may reuse a tag's resolution to a digest it verified (it pins that "
                   "digest, so a re-tag inside the window pins the previous, verified digest); 0: resolve every time.")


@webhook.command()
@click.option("--trust", "trust_dir", required=True, type=click.Path(file_okay=False),
              help="Trust directory (keys/, trusted_root.json, policy.yaml, map.json); reloaded when it changes.")
@click.option("--tls-cert", required=True, type=click.Path(exists=True, dir_okay=False), help="Serving cert (PEM).")
@click.option("--tls-key", required=True, type=click.Path(exists=True, dir_okay=False), help="Its private key (PEM).")
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to listen on.")  # noqa: S104
@click.option("--port", type=click.IntRange(1, 65535), default=8443, show_default=True)
@click.option("--mode", type=click.Choice(MODES), default="enforce", show_default=True,
              help="What a failed image does: deny; allow with warnings; allow with audit annotations.")
@click.option("--deadline", type=click.FloatRange(0.1, 29), default=8.0, show_default=True,
              help="Seconds to decide a review; keep below the webhook's timeoutSeconds.")
@click.option("--cache-ttl", type=click.FloatRange(0), default=60.0, show_default=True,
              help="Seconds a per-digest decision is reused (0: no cache).")
@click.option("--cache-size", type=click.IntRange(0), default=10_000, show_default=True)
@click.option("--max-body-bytes", type=click.IntRange(1024), default=LIMITS["max_body_bytes"], show_default=True,
              help="Largest AdmissionReview read (the API server writes at most 3 MiB); larger ones are denied.")
@click.option("--max-images", type=click.IntRange(1), default=LIMITS["max_images"], show_default=True,
              help="Distinct images one review may name; more are denied.")
@click.option("--max-verifications", type=click.IntRange(1, 256), default=LIMITS["max_verifications"],
              show_default=True, help="Image verifications at once; images queued past the deadline are denied "
              "as 'webhook busy'.")
@click.option("--max-signature-bytes", type=click.IntRange(4096), default=LIMITS["max_signature_bytes"],
              show_default=True, help="Manifest and signature bytes one image's verification may read.")
@click.option("--max-signature-layers", type=click.IntRange(1), default=LIMITS["max_signature_layers"],
              show_default=True, help="Signature layers one image's verification may read.")
@click.option("--header-timeout", type=click.FloatRange(0.1), default=LIMITS["header_timeout"], show_default=True,
              help="Seconds a connection has for its TLS handshake and request headers.")
@click.option("--body-timeout", type=click.FloatRange(0.1), default=LIMITS["body_timeout"], show_default=True,
              help="Seconds a request body has to arrive after its headers (else 408 and close).")
@click.option("--keepalive-timeout", type=click.FloatRange(1), default=LIMITS["keepalive_timeout"],
              show_default=True, help="Seconds an idle keep-alive connection is kept.")
@click.option("--max-connections", type=click.IntRange(16), default=LIMITS["max_connections"], show_default=True,
              help="Connections held at once; over it the slowest (then idlest) are closed to admit new ones.")
@click.option("--max-buffered-bytes", type=click.IntRange(1024 * 1024), default=LIMITS["max_buffered_bytes"],
              show_default=True, help="Request body bytes held across connections; over it the oldest "
              "unfinished bodies are dropped.")
@click.option("--reload-interval", type=click.FloatRange(0.1), default=2.0, show_default=True,
              help="Seconds between checks of the trust directory for changes.")
@click.option("--tag-reuse-window", type=click.FloatRange(0, 60), default=LIMITS["tag_reuse_window"],
              show_default=True, help=TAG_WINDOW_HELP)
@registry_alias_option
@registry_options
def serve(trust_dir: str, tls_cert: str, tls_key: str, host: str, port: int, mode: str, deadline: float,
          cache_ttl: float, cache_size: int, max_body_bytes: int, max_images: int, max_verifications: int,
          max_signature_bytes: int, max_signature_layers: int, header_timeout: float, body_timeout: float,
          keepalive_timeout: float, max_connections: int, max_buffered_bytes: int, reload_interval: float,
          tag_reuse_window: float, aliases: tuple[str, ...], insecure: tuple[str, ...], ca_file: str | None) -> None:
    """Serve POST /validate (validating webhook) and POST /mutate (mutating webhook: pins verified digests),
    AdmissionReview v1 over HTTPS, with /healthz, /readyz and /metrics."""
    from airgap.admission.server import WebhookConfig
    from airgap.admission.server import serve as run
    from airgap.refs.translate import Aliases

    Aliases.parse(aliases)  # a bad alias is a usage error before we listen
    config = WebhookConfig(trust_dir=trust_dir, mode=mode, deadline=deadline,  # type: ignore[arg-type]
                           cache_ttl=cache_ttl, cache_size=cache_size, max_body=max_body_bytes,
                           reload_interval=reload_interval, aliases=aliases, registry=make_options(insecure, ca_file),
                           max_images=max_images, max_verifications=max_verifications,
                           max_signature_bytes=max_signature_bytes, max_signature_layers=max_signature_layers,
                           header_timeout=header_timeout, body_timeout=body_timeout,
                           keepalive_timeout=keepalive_timeout, max_connections=max_connections,
                           max_buffered_bytes=max_buffered_bytes, tag_reuse_window=tag_reuse_window)
    run(config, tls_cert, tls_key, host=host, port=port)


@webhook.command()
@click.option("--service", required=True, help="The webhook's Service name.")
@click.option("--namespace", required=True, help="Its namespace.")
@click.option("-o", "--output", "out", required=True, type=click.Path(file_okay=False),
              help="Directory for ca.crt, tls.crt, tls.key.")
@click.option("--days", type=click.IntRange(1, 3650), default=365, show_default=True)
@click.option("--ip", "ips", multiple=True, metavar="ADDRESS",
              help="Also an IP address the API server reaches the webhook at (clientConfig.url); repeatable.")
def certs(service: str, namespace: str, out: str, days: int, ips: tuple[str, ...]) -> None:
    """Make a CA and a serving certificate for the Service's DNS names."""
    from airgap.admission.manifests import make_certs, service_names

    files = make_certs(service, namespace, out, days=days, ips=ips)
    echo(f"wrote {files.ca}, {files.cert}, {files.key} for {', '.join([*service_names(service, namespace), *ips])}")


def deployment_options(func: F) -> F:
    """What `manifests` and `values` share: the settings of the deployment (airgap.admission.manifests.Settings)."""
    options = [
        click.option("--image", default=None, help="The airgap container image to run (from the local registry) "
                     "[the one `airgap load` recorded in --trust]."),
        click.option("--trust", "trust_dir", required=True, type=click.Path(file_okay=False, exists=True),
                     help="Trust directory (or site directory) to ship as a ConfigMap."),
        click.option("--certs", "certs_dir", required=True, type=click.Path(file_okay=False, exists=True),
                     help="Directory written by `airgap webhook certs` (only ca.crt with --tls-secret)."),
        click.option("--name", default="airgap-webhook", show_default=True),
        click.option("--namespace", default="airgap-system", show_default=True),
        click.option("--mode", type=click.Choice(MODES), default="enforce", show_default=True),
        click.option("--timeout-seconds", type=click.IntRange(1, 30), default=10, show_default=True,
                     help="The API server's timeout; the webhook's deadline is 2 s shorter."),
        click.option("--replicas", type=click.IntRange(1, 20), default=2, show_default=True),
        click.option("--tag-reuse-window", type=click.FloatRange(0, 60), default=LIMITS["tag_reuse_window"],
                     show_default=True, help=TAG_WINDOW_HELP),
        click.option("--opt-in", is_flag=True,
                     help="Review only namespaces labelled airgap.dev/include=true (default: every namespace not "
                          "labelled airgap.dev/exclude=true). kube-system and the webhook's namespace never are."),
        click.option("--exclude-namespace", "exclude_namespaces", multiple=True, metavar="NAMESPACE",
                     help="Never review this namespace (by name, besides kube-system and the webhook's own); "
                          "repeatable."),
        click.option("--namespace-object/--no-namespace-object", default=True, show_default=True,
                     help="Render the Namespace (off when something else creates it, e.g. helm --create-namespace)."),
        click.option("--tls-secret", default="", metavar="SECRET",
                     help="Mount this existing kubernetes.io/tls Secret instead of rendering one from --certs."),
        registry_alias_option,
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _settings(**kwargs: Any) -> Any:
    from airgap.admission.manifests import Settings, default_image

    kwargs["trust_dir"], kwargs["certs_dir"] = Path(kwargs["trust_dir"]), Path(kwargs["certs_dir"])
    kwargs["image"] = kwargs["image"] or default_image(kwargs["trust_dir"])
    kwargs["exclude_namespaces"] = tuple(kwargs["exclude_namespaces"])
    return Settings(**kwargs)


def _write(text: str, out: str | None) -> None:
    if out:
        from airgap.fileio import write_atomic

        write_atomic(Path(out), text.encode(), mode=0o600)  # may hold the webhook's TLS key
    else:
        echo(text, nl=False)


@webhook.command()
@deployment_options
@click.option("-o", "--output", "out", type=click.Path(dir_okay=False), default=None, help="Write here [stdout].")
def manifests(out: str | None, **settings: Any) -> None:
    """Print Namespace, ServiceAccount, ConfigMap, Secret, Deployment, Service, PDB, and the Mutating and
    Validating webhook configurations."""
    from airgap.admission.manifests import render_yaml

    _write(render_yaml(_settings(**settings)), out)


@webhook.command()
@deployment_options
@click.option("-o", "--output", "out", type=click.Path(dir_okay=False), default=None, help="Write here [stdout].")
def values(out: str | None, **settings: Any) -> None:
    """Print Helm values for charts/airgap-webhook: the chart then renders what `manifests` prints for the same
    flags (pass --namespace to helm as to this command)."""
    from airgap.admission.manifests import render_values_yaml

    _write(render_values_yaml(_settings(**settings)), out)


def register(cli: click.Group) -> None:
    cli.add_command(webhook)
