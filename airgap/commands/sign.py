"""`airgap sign` and `airgap attest`: cosign-compatible signatures and attestations, with a key (offline) or
keyless (an identity token, Fulcio and Rekor)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from airgap.commands.common import (
    allow_insecure_registry_option,
    echo,
    emit_json,
    make_options,
    parse_annotations,
    registry_hosts,
    registry_options,
    timeout_option,
)

if TYPE_CHECKING:
    from airgap.config import RegistryOptions
    from airgap.signing.targets import SignedDigest, SignSummary

_EPILOG = ("With --key nothing is uploaded to a transparency log (--tlog-upload=false is implied; verify with "
           "--insecure-ignore-tlog or a policy without ctlog). Keyless (--identity-token or SIGSTORE_ID_TOKEN): "
           "a Fulcio certificate for an ephemeral key, every signature logged in Rekor; the public-good Sigstore "
           "unless --signing-config/--fulcio-url/--rekor-url (with --trusted-root) name a private one.")


def _common(func: Callable[..., Any]) -> Callable[..., Any]:
    """Flags sign and attest share, spelled as cosign spells them."""
    for option in reversed((
        click.option("--key", "keyref", metavar="KEYREF", default=None,
                     help="Private key: file, env://VAR, k8s secret dir, pkcs11: URI [env COSIGN_KEY]."),
        click.option("--password-file", type=click.Path(dir_okay=False), default=None,
                     help="File holding the key's password [env COSIGN_PASSWORD, else a prompt]."),
        click.option("--identity-token", default=None, metavar="TOKEN|@FILE",
                     help="Keyless: an OIDC identity token (audience sigstore) for Fulcio [env SIGSTORE_ID_TOKEN]."),
        click.option("--signing-config", type=click.Path(exists=True, dir_okay=False), default=None,
                     help="Keyless: sigstore signing_config.json naming Fulcio and Rekor (as cosign v3)."),
        click.option("--fulcio-url", default=None, metavar="URL", help="Keyless: the Fulcio to ask for a certificate."),
        click.option("--rekor-url", default=None, metavar="URL", help="Keyless: the Rekor (v1) to log in."),
        click.option("--trusted-root", type=click.Path(exists=True, dir_okay=False), default=None,
                     help="Keyless: trusted_root.json that verifies what Fulcio and Rekor return "
                          "[the public-good root shipped with sigstore-python]."),
        click.option("--recursive", is_flag=True, help="For an index, also cover every child manifest."),
        click.option("--signature-repo", default=None, metavar="REPO",
                     help="Store signatures in REPO instead of the image's repository [env COSIGN_REPOSITORY]."),
        click.option("--upload", type=click.BOOL, default=True, show_default=True, metavar="BOOL",
                     help="Push to the registry; --upload=false only writes the local files."),
        click.option("--tlog-upload", type=click.BOOL, default=None, metavar="BOOL",
                     help="Accepted for cosign compatibility: false with --key, true keyless."),
        click.option("-y", "--yes", is_flag=True, hidden=True, help="Accepted for cosign compatibility."),
        click.option("--json", "as_json", is_flag=True, help="Print every digest signed and where, as JSON."),
    )):
        func = option(func)
    return registry_options(allow_insecure_registry_option(timeout_option("timeout")(func)))


def _named(images: tuple[str, ...], signature_repo: str | None) -> tuple[str, ...]:
    """The registries this command's refs name (for ``--allow-insecure-registry``)."""
    import os

    return registry_hosts([*images, signature_repo or os.environ.get("COSIGN_REPOSITORY") or ""])


def _signer(keyref: str | None, password_file: str | None, identity_token: str | None, tlog_upload: bool | None,
            sigstore: dict[str, str | None], options: RegistryOptions) -> Any:
    """A key signer (``--key``/``COSIGN_KEY``), or a keyless one when an identity token is given (and no key):
    the token's identity and issuer printed (on stderr) before Fulcio is asked, then what the certificate says."""
    from airgap.errors import ConfigError
    from airgap.keys.references import load_signer
    from airgap.signing.keyless import KeylessSigner
    from airgap.signing.services import TokenInfo, read_identity_token, resolve_services

    token = None if keyref else read_identity_token(identity_token)
    if keyref and identity_token:
        raise ConfigError("--key and --identity-token exclude each other")
    if token is None:
        if any(sigstore.values()):
            raise ConfigError("--signing-config/--fulcio-url/--rekor-url/--trusted-root are for keyless signing: "
                              "give --identity-token (or SIGSTORE_ID_TOKEN)")
        if tlog_upload:
            raise ConfigError("--tlog-upload=true with --key is not supported: airgap signs with keys offline "
                              "(use --tlog-upload=false)")
        return load_signer(keyref, password_file=password_file)
    if tlog_upload is False:
        raise ConfigError("--tlog-upload=false is not supported keyless: without the Rekor entry nothing proves "
                          "when the short-lived certificate signed")
    services = resolve_services(signing_config=sigstore["signing_config"], fulcio_url=sigstore["fulcio_url"],
                                rekor_url=sigstore["rekor_url"], trusted_root=sigstore["trusted_root"],
                                connect_timeout=options.limits.connect_timeout,
                                read_timeout=options.limits.read_timeout)
    def show_token(info: TokenInfo) -> None:
        echo(f"keyless: token for {info.identity} from {info.issuer} (expires "
             f"{info.expires:%Y-%m-%dT%H:%M:%SZ}); asking Fulcio at {services.fulcio_url}", err=True)

    signer = KeylessSigner(token, services, on_token=show_token)
    echo(signer.describe(), err=True)
    return signer


def _printer(as_json: bool) -> Callable[[SignedDigest], None] | None:
    if as_json:
        return None

    def show(entry: SignedDigest) -> None:
        where = entry.written or ", ".join(entry.files)
        note = " (already present)" if entry.duplicate else ""
        verb = {"signature": "signed", "bundle": "signed", "attestation": "attested"}.get(entry.kind, "signed")
        echo(f"{verb} {entry.reference}\n  -> {where}{note} in {entry.seconds:.2f}s")

    return show


def _finish(summaries: list[SignSummary], started: float, as_json: bool) -> None:
    total = time.monotonic() - started
    if as_json:
        emit_json({"images": [s.to_json() for s in summaries], "seconds": round(total, 3)})
    elif len(summaries) > 1:
        count = sum(len(s.signed) for s in summaries)
        echo(f"{count} digest(s) of {len(summaries)} image(s) in {total:.2f}s")


@click.command(epilog=_EPILOG)
@click.argument("images", nargs=-1, required=True, metavar="REF...")
@click.option("-a", "--annotations", "annotation_pairs", multiple=True, metavar="KEY=VALUE",
              help="Extra claims signed into the payload (cosign's -a); repeatable.")
@click.option("--output-dir", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Also write, per digest, signature-<digest> and payload-<digest> (keyless: also "
                   "certificate-<digest>.pem, rekor-bundle-<digest>.json; --format bundle: bundle-<digest>.json) "
                   "into DIR; verify --signature-dir reads them.")
@click.option("--output-signature", type=click.Path(), default=None, metavar="FILE",
              help="Write the base64 signature to FILE (as cosign; one digest: not with --recursive).")
@click.option("--output-payload", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Write the signed payload to FILE (as cosign; one digest: not with --recursive).")
@click.option("--output-certificate", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Write the signing certificate (keyless) or the public key (--key) to FILE (as cosign).")
@click.option("--format", "fmt", type=click.Choice(["legacy", "bundle"]), default="legacy", show_default=True,
              help="legacy: cosign v2 .sig tag; bundle: cosign v3 sigstore bundle as an OCI referrer.")
@_common
def sign(images: tuple[str, ...], annotation_pairs: tuple[str, ...], output_dir: str | None,
         output_signature: str | None, output_payload: str | None, output_certificate: str | None, fmt: str,
         keyref: str | None, password_file: str | None, identity_token: str | None, signing_config: str | None,
         fulcio_url: str | None, rekor_url: str | None, trusted_root: str | None, recursive: bool,
         signature_repo: str | None, upload: bool, tlog_upload: bool | None, yes: bool, as_json: bool,
         insecure: tuple[str, ...], ca_file: str | None) -> None:
    """Sign images by digest, with a key (as cosign sign --key) or keyless (as cosign sign).

    Each REF is resolved to its digest first and the digest is signed. Signatures accumulate next to
    those already there; the same signer's identical signature is not added twice. Keyless, every
    signature is checked against the trusted root before anything is pushed.
    """
    from airgap.oci.registry import RegistryClient
    from airgap.signing.sign import sign_image
    from airgap.signing.targets import OutputFiles

    files = OutputFiles(*(Path(f) if f else None for f in (output_signature, output_payload, output_certificate)))
    _check_output_files(files, images, recursive, fmt)
    annotations = parse_annotations(annotation_pairs)
    options = make_options(insecure, ca_file, named=_named(images, signature_repo))
    signer = _signer(keyref, password_file, identity_token, tlog_upload,
                     {"signing_config": signing_config, "fulcio_url": fulcio_url, "rekor_url": rekor_url,
                      "trusted_root": trusted_root}, options)
    client = RegistryClient(options)
    started = time.monotonic()
    summaries = [
        sign_image(image, signer, client=client, recursive=recursive, annotations=annotations,
                   signature_repo=signature_repo, upload=upload,
                   output_dir=Path(output_dir) if output_dir else None,
                   fmt="bundle" if fmt == "bundle" else "legacy",
                   progress=_printer(as_json), output_files=files)
        for image in images
    ]
    _finish(summaries, started, as_json)


def _check_output_files(files: Any, images: tuple[str, ...], recursive: bool, fmt: str) -> None:
    """cosign's single-file outputs hold one digest: usage errors (exit 2) naming the flags that conflict."""
    from airgap.errors import ConfigError

    given = [f"--output-{n}" for n in ("signature", "payload", "certificate") if getattr(files, n) is not None]
    if not given:
        return
    if files.signature is not None and files.signature.is_dir():
        raise ConfigError(f"--output-signature takes a FILE (as cosign); {files.signature} is a directory: write "
                          "the per-digest files into it with --output-dir DIR")
    if recursive:
        raise ConfigError(f"{'/'.join(given)} and --recursive exclude each other: the files hold one digest (as "
                          "cosign without --recursive); use --output-dir DIR for every digest")
    if len(images) > 1:
        raise ConfigError(f"{'/'.join(given)} hold one digest: give one REF (or use --output-dir DIR)")
    if fmt == "bundle" and (files.signature or files.payload):
        raise ConfigError("--output-signature/--output-payload and --format bundle exclude each other: a bundle "
                          "goes to --output-dir DIR (bundle-<digest>.json)")


@click.command(epilog=_EPILOG)
@click.argument("images", nargs=-1, required=True, metavar="REF...")
@click.option("--predicate", type=click.Path(exists=True, dir_okay=False), required=True,
              help="File with the predicate (for --type custom: any text).")
@click.option("--type", "predicate_type", default="custom", show_default=True, metavar="TYPE",
              help="slsaprovenance, slsaprovenance1, spdx, spdxjson, cyclonedx, link, vuln, openvex, custom, "
                   "or a predicate type URI.")
@click.option("--replace", is_flag=True, help="Drop earlier attestations of the same predicate type.")
@click.option("--output-dir", "--output-attestation", "output_dir", type=click.Path(file_okay=False), default=None,
              metavar="DIR", help="Also write attestation-<digest>.json (the DSSE envelope) or "
                                  "attestation-bundle-<digest>.json into DIR.")
@click.option("--format", "fmt", type=click.Choice(["legacy", "bundle"]), default="legacy", show_default=True,
              help="legacy: cosign v2 .att tag; bundle: cosign v3 sigstore bundle as an OCI referrer.")
@click.option("--rekor-entry-type", type=click.Choice(["dsse", "intoto"]), default="dsse", show_default=True,
              help="Keyless legacy attestations: the Rekor entry kind (cosign v2's flag and default).")
@_common
def attest(images: tuple[str, ...], predicate: str, predicate_type: str, replace: bool, output_dir: str | None,
           fmt: str, rekor_entry_type: str, keyref: str | None, password_file: str | None,
           identity_token: str | None, signing_config: str | None, fulcio_url: str | None, rekor_url: str | None,
           trusted_root: str | None, recursive: bool, signature_repo: str | None, upload: bool,
           tlog_upload: bool | None, yes: bool, as_json: bool, insecure: tuple[str, ...],
           ca_file: str | None) -> None:
    """Attest a predicate about images, as cosign attest does (in-toto in DSSE: a .att tag or a bundle)."""
    from airgap.errors import ConfigError
    from airgap.oci.registry import RegistryClient
    from airgap.signing.attest import attest_image, predicate_type_uri

    predicate_type_uri(predicate_type)
    if fmt == "bundle" and replace:
        raise ConfigError("--replace applies to legacy .att attestations, not bundles")
    data = Path(predicate).read_bytes()
    options = make_options(insecure, ca_file, named=_named(images, signature_repo))
    signer = _signer(keyref, password_file, identity_token, tlog_upload,
                     {"signing_config": signing_config, "fulcio_url": fulcio_url, "rekor_url": rekor_url,
                      "trusted_root": trusted_root}, options)
    client = RegistryClient(options)
    started = time.monotonic()
    summaries = [
        attest_image(image, signer, client=client, predicate=data, predicate_type=predicate_type,
                     signature_repo=signature_repo, recursive=recursive, replace=replace, upload=upload,
                     output_dir=Path(output_dir) if output_dir else None, progress=_printer(as_json),
                     fmt="bundle" if fmt == "bundle" else "legacy", rekor_entry_type=rekor_entry_type)
        for image in images
    ]
    _finish(summaries, started, as_json)


def register(cli: click.Group) -> None:
    cli.add_command(sign)
    cli.add_command(attest)
