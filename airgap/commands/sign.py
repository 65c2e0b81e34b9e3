"""`airgap sign` and `airgap attest`: cosign-compatible signatures and attestations, made offline."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from airgap.commands.common import emit_json, make_options, registry_options, timeout_option

if TYPE_CHECKING:
    from airgap.signing.targets import SignedDigest, SignSummary

_OFFLINE = ("Nothing is uploaded to a transparency log: airgap signs offline (--tlog-upload=false is "
            "implied; verify with --insecure-ignore-tlog or an airgap policy without ctlog).")


def _annotations(pairs: tuple[str, ...]) -> dict[str, str]:
    from airgap.errors import ConfigError

    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"annotation {pair!r} is not key=value")
        out[key] = value
    return out


def _check_tlog(tlog_upload: bool) -> None:
    from airgap.errors import ConfigError

    if tlog_upload:
        raise ConfigError("--tlog-upload=true is not supported: airgap signs offline (use --tlog-upload=false)")


def _common(func: Callable[..., Any]) -> Callable[..., Any]:
    """Flags sign and attest share, spelled as cosign spells them."""
    for option in reversed((
        click.option("--key", "keyref", metavar="KEYREF", default=None,
                     help="Private key: file, env://VAR, k8s secret dir, pkcs11: URI [env COSIGN_KEY]."),
        click.option("--password-file", type=click.Path(dir_okay=False), default=None,
                     help="File holding the key's password [env COSIGN_PASSWORD, else a prompt]."),
        click.option("--recursive", is_flag=True, help="For an index, also cover every child manifest."),
        click.option("--signature-repo", default=None, metavar="REPO",
                     help="Store signatures in REPO instead of the image's repository [env COSIGN_REPOSITORY]."),
        click.option("--upload", type=click.BOOL, default=True, show_default=True, metavar="BOOL",
                     help="Push to the registry; --upload=false only writes the local files."),
        click.option("--tlog-upload", type=click.BOOL, default=False, metavar="BOOL",
                     help="Accepted for cosign compatibility; must be false (offline)."),
        click.option("-y", "--yes", is_flag=True, hidden=True, help="Accepted for cosign compatibility."),
        click.option("--json", "as_json", is_flag=True, help="Print every digest signed and where, as JSON."),
    )):
        func = option(func)
    return registry_options(timeout_option("timeout")(func))


def _printer(as_json: bool) -> Callable[[SignedDigest], None] | None:
    if as_json:
        return None

    def show(entry: SignedDigest) -> None:
        where = entry.written or ", ".join(entry.files)
        note = " (already present)" if entry.duplicate else ""
        verb = {"signature": "signed", "bundle": "signed", "attestation": "attested"}.get(entry.kind, "signed")
        click.echo(f"{verb} {entry.reference}\n  -> {where}{note} in {entry.seconds:.2f}s")

    return show


def _finish(summaries: list[SignSummary], started: float, as_json: bool) -> None:
    total = time.monotonic() - started
    if as_json:
        emit_json({"images": [s.to_json() for s in summaries], "seconds": round(total, 3)})
    elif len(summaries) > 1:
        count = sum(len(s.signed) for s in summaries)
        click.echo(f"{count} digest(s) of {len(summaries)} image(s) in {total:.2f}s")


@click.command(epilog=_OFFLINE)
@click.argument("images", nargs=-1, required=True, metavar="REF...")
@click.option("-a", "--annotations", "annotation_pairs", multiple=True, metavar="KEY=VALUE",
              help="Extra claims signed into the payload (cosign's -a); repeatable.")
@click.option("--output-signature", "output_dir", type=click.Path(file_okay=False), default=None,
              metavar="DIR", help="Also write signature-<digest>, payload-<digest> (bundle-<digest>.json) here.")
@click.option("--format", "fmt", type=click.Choice(["legacy", "bundle"]), default="legacy", show_default=True,
              help="legacy: cosign v2 .sig tag; bundle: cosign v3 sigstore bundle as an OCI referrer.")
@_common
def sign(images: tuple[str, ...], annotation_pairs: tuple[str, ...], output_dir: str | None, fmt: str,
         keyref: str | None, password_file: str | None, recursive: bool, signature_repo: str | None,
         upload: bool, tlog_upload: bool, yes: bool, as_json: bool, insecure: tuple[str, ...],
         ca_file: str | None) -> None:
    """Sign images by digest with a key, as cosign sign --key does.

    Each REF is resolved to its digest first and the digest is signed. Signatures accumulate next to
    those already there; the same signer's identical signature is not added twice.
    """
    from airgap.keys.references import load_signer
    from airgap.oci.registry import RegistryClient
    from airgap.signing.sign import sign_image

    _check_tlog(tlog_upload)
    annotations = _annotations(annotation_pairs)
    signer = load_signer(keyref, password_file=password_file)
    client = RegistryClient(make_options(insecure, ca_file))
    started = time.monotonic()
    summaries = [
        sign_image(image, signer, client=client, recursive=recursive, annotations=annotations,
                   signature_repo=signature_repo, upload=upload,
                   output_dir=Path(output_dir) if output_dir else None,
                   fmt="bundle" if fmt == "bundle" else "legacy",
                   progress=_printer(as_json))
        for image in images
    ]
    _finish(summaries, started, as_json)


@click.command(epilog=_OFFLINE)
@click.argument("images", nargs=-1, required=True, metavar="REF...")
@click.option("--predicate", type=click.Path(exists=True, dir_okay=False), required=True,
              help="File with the predicate (for --type custom: any text).")
@click.option("--type", "predicate_type", default="custom", show_default=True, metavar="TYPE",
              help="slsaprovenance, slsaprovenance1, spdx, spdxjson, cyclonedx, link, vuln, openvex, custom, "
                   "or a predicate type URI.")
@click.option("--replace", is_flag=True, help="Drop earlier attestations of the same predicate type.")
@click.option("--output-attestation", "output_dir", type=click.Path(file_okay=False), default=None,
              metavar="DIR", help="Also write attestation-<digest>.json (the DSSE envelope) here.")
@_common
def attest(images: tuple[str, ...], predicate: str, predicate_type: str, replace: bool, output_dir: str | None,
           keyref: str | None, password_file: str | None, recursive: bool, signature_repo: str | None,
           upload: bool, tlog_upload: bool, yes: bool, as_json: bool, insecure: tuple[str, ...],
           ca_file: str | None) -> None:
    """Attest a predicate about images, as cosign attest --key does (in-toto in DSSE, .att tag)."""
    from airgap.keys.references import load_signer
    from airgap.oci.registry import RegistryClient
    from airgap.signing.attest import attest_image, predicate_type_uri

    _check_tlog(tlog_upload)
    predicate_type_uri(predicate_type)
    data = Path(predicate).read_bytes()
    signer = load_signer(keyref, password_file=password_file)
    client = RegistryClient(make_options(insecure, ca_file))
    started = time.monotonic()
    summaries = [
        attest_image(image, signer, client=client, predicate=data, predicate_type=predicate_type,
                     signature_repo=signature_repo, recursive=recursive, replace=replace, upload=upload,
                     output_dir=Path(output_dir) if output_dir else None, progress=_printer(as_json))
        for image in images
    ]
    _finish(summaries, started, as_json)


def register(cli: click.Group) -> None:
    cli.add_command(sign)
    cli.add_command(attest)
