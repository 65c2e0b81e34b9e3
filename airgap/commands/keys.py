"""`airgap key ...`: make, import and inspect cosign-compatible keys (files or PKCS#11 tokens)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from airgap.commands.common import conflict, echo, emit_json
from airgap.errors import ConfigError

if TYPE_CHECKING:
    from airgap.keys.public import PublicKey

_PW_FILE_HELP = "File holding the key's password [env COSIGN_PASSWORD, else a prompt]."


@click.group("key")
def key() -> None:
    """Generate, import and show signing keys (cosign's key file format)."""


def _key_json(pub: PublicKey) -> dict[str, Any]:
    from airgap.keys.public import algorithm, key_id, public_pem

    return {"key_id": key_id(pub), "algorithm": algorithm(pub), "pem": public_pem(pub).decode()}


def _prefix(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """``--output-prefix``: a path and a file name stem; ``dir/`` (or ``""``) would write ``dir/.key``."""
    if value.replace("\\", "/").rsplit("/", 1)[-1] in ("", ".", ".."):
        raise click.BadParameter(f"{value!r} has no file name: give a prefix such as {value or './'}cosign "
                                 f"(writes {value}cosign.key and {value}cosign.pub)", ctx, param)
    return value


def _check_free(paths: list[Path], force: bool) -> None:
    taken = [str(p) for p in paths if p.exists()]
    if taken and not force:
        verb = "already exists" if len(taken) == 1 else "already exist"
        raise ConfigError(f"{' and '.join(taken)} {verb}; pass --force to overwrite")


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write via a temp file in the same directory (created 0600, so never briefly world-readable), set to
    ``mode``, then renamed over ``path``: a crash leaves the old file or the new one. A device or FIFO is
    written through."""
    from airgap.fileio import write_atomic

    write_atomic(path, data, mode=mode)


def _report(pub: PublicKey, written: dict[str, str], as_json: bool, extra: dict[str, str] | None = None) -> None:
    from airgap.keys.public import key_id

    if as_json:
        emit_json({**_key_json(pub), **written, **(extra or {})})
        return
    for kind, path in written.items():
        echo(f"{kind.replace('_', ' ').capitalize()} written to {path}")
    for name, value in (extra or {}).items():
        echo(f"{name}: {value}")
    echo(f"key id: {key_id(pub)}")


@key.command()
@click.option("--output-prefix", "--output-key-prefix", "output_prefix", default="cosign", show_default=True,
              metavar="PATH", callback=_prefix,
              help="Write PATH.key and PATH.pub (--output-key-prefix: cosign's name).")
@click.option("--password-file", type=click.Path(dir_okay=False), default=None, help=_PW_FILE_HELP)
@click.option("--pkcs11", "pkcs11_uri", default=None, metavar="URI",
              help="Create the key pair ON this token (pkcs11:token=..;object=LABEL?module-path=..); "
                   "writes only PATH.pub.")
@click.option("--force", is_flag=True, help="Overwrite existing files.")
@click.option("--json", "as_json", is_flag=True, help="Print key id, algorithm, public PEM and paths as JSON.")
def generate(output_prefix: str, password_file: str | None, pkcs11_uri: str | None, force: bool,
             as_json: bool) -> None:
    """Generate an ECDSA P-256 key pair as cosign does (encrypted PATH.key, mode 0600; PATH.pub)."""
    from airgap.keys.passwords import read_password
    from airgap.keys.pkcs11 import Pkcs11URI, generate_pkcs11_keypair
    from airgap.keys.private import generate_keypair
    from airgap.keys.public import load_public_key, public_pem

    key_path, pub_path = Path(f"{output_prefix}.key"), Path(f"{output_prefix}.pub")
    if pkcs11_uri:
        if password_file:
            conflict("--pkcs11", "--password-file", "the key is made on the token, which asks for its PIN; no key "
                     "file is written to protect with a password")
        _check_free([pub_path], force)
        pub, uri = generate_pkcs11_keypair(Pkcs11URI.parse(pkcs11_uri))
        _write(pub_path, public_pem(pub), 0o644)
        _report(pub, {"public_key": str(pub_path)}, as_json, {"uri": str(uri)})
        return
    _check_free([key_path, pub_path], force)
    password = read_password(str(key_path), password_file=password_file, confirm=True)
    private_data, public_data = generate_keypair(password)
    _write(key_path, private_data, 0o600)
    _write(pub_path, public_data, 0o644)
    _report(load_public_key(public_data), {"private_key": str(key_path), "public_key": str(pub_path)}, as_json)


@key.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False), required=False)
@click.option("-k", "--key", "key_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="The key file to import (cosign's import-key-pair --key; or give it as FILE).")
@click.option("-o", "--output-prefix", "--output-key-prefix", "output_prefix", default="import-cosign",
              show_default=True, metavar="PATH", callback=_prefix,
              help="Write PATH.key and PATH.pub (--output-key-prefix: cosign's).")
@click.option("--password-file", type=click.Path(dir_okay=False), default=None,
              help="File holding the NEW password [env COSIGN_PASSWORD, else a prompt].")
@click.option("-y", "--force", "--yes", "force", is_flag=True, help="Overwrite existing files (--yes: cosign's).")
@click.option("--json", "as_json", is_flag=True, help="Print key id, algorithm, public PEM and paths as JSON.")
def import_(file: str | None, key_file: str | None, output_prefix: str, password_file: str | None, force: bool,
            as_json: bool) -> None:
    """Encrypt a plain PEM private key (PKCS#8, EC or RSA) into cosign's format, like
    `cosign import-key-pair` (which `airgap import-key-pair` is, with cosign's flags)."""
    from airgap.keys.passwords import read_password, read_secret_file
    from airgap.keys.private import decrypt_private_key, encrypt_private_key, is_encrypted_private_key
    from airgap.keys.public import public_pem

    if (file is None) == (key_file is None):
        raise ConfigError("give the key to import once: as FILE or with -k/--key FILE" if file else
                          "no key to import: give FILE or -k/--key FILE")
    file = file or key_file
    assert file is not None  # noqa: S101 - checked just above

    key_path, pub_path = Path(f"{output_prefix}.key"), Path(f"{output_prefix}.pub")
    data = read_secret_file(file, "key file", strip_newline=False)
    if is_encrypted_private_key(data):
        raise ConfigError(f"{file} is already encrypted; import takes a plain PEM private key")
    private = decrypt_private_key(data, None, file)
    _check_free([key_path, pub_path], force)
    password = read_password(str(key_path), password_file=password_file, confirm=True)
    _write(key_path, encrypt_private_key(private, password), 0o600)
    _write(pub_path, public_pem(private.public_key()), 0o644)
    _report(private.public_key(), {"private_key": str(key_path), "public_key": str(pub_path)}, as_json)


@key.command()
@click.argument("keyref")
@click.option("--password-file", type=click.Path(dir_okay=False), default=None, help=_PW_FILE_HELP)
@click.option("--json", "as_json", is_flag=True,
              help='Print {"keys": [{key_id, algorithm, pem}, ...]} (every key KEYREF holds).')
def public(keyref: str, password_file: str | None, as_json: bool) -> None:
    """Print the public key(s) KEYREF names (file, env://VAR, secret dir, pkcs11: URI, or a private key).

    The PEM goes to stdout (so `> key.pub` works); `key id: sha256:...` lines go to stderr.
    """
    from airgap.keys.public import key_id, public_pem
    from airgap.keys.references import load_public_keys

    pubs = load_public_keys(keyref, password_file=password_file)
    if as_json:
        emit_json({"keys": [_key_json(p) for p in pubs]})  # one shape, whatever the number of keys
        return
    for pub in pubs:
        echo(public_pem(pub).decode(), nl=False)
        echo(f"key id: {key_id(pub)}", err=True)


def register(cli: click.Group) -> None:
    cli.add_command(key)
    # cosign's spellings of the same commands (same flags, cosign's names accepted as aliases).
    cli.add_command(import_, name="import-key-pair")
    cli.add_command(generate, name="generate-key-pair")
