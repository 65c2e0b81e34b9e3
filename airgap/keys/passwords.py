"""Passwords and PINs that unlock keys, and the file names of a mounted cosign secret.

Passwords, first found wins: ``--password-file`` (its content without one trailing newline), the secret
directory's ``cosign.password``, ``COSIGN_PASSWORD`` (even when empty, as cosign), a prompt on a terminal.
Without any of these we fail rather than hang waiting for input nobody will type.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from airgap.errors import ConfigError
from airgap.fileio import read_capped


class WrongPasswordError(ConfigError):
    """The password does not open an encrypted private key (or the file was altered)."""


K8S_KEY, K8S_PASSWORD, K8S_PUB = "cosign.key", "cosign.password", "cosign.pub"


# A PEM key file is a few KiB; anything much larger is a wrong path, not a key.
MAX_KEY_FILE_BYTES = 1024 * 1024


def read_secret_file(path: str | Path, what: str, *, strip_newline: bool = True) -> bytes:
    """A password or PIN file's bytes, without one trailing newline (``echo pw > file`` adds one)."""
    data = read_capped(path, MAX_KEY_FILE_BYTES, what)
    if strip_newline:
        data = data.removesuffix(b"\n").removesuffix(b"\r")
    return data


def read_password(what: str, *, password_file: str | None = None, confirm: bool = False,
                  secret_dir: Path | None = None) -> bytes:
    """The password for ``what`` from the sources in the module docstring, in that order."""
    if password_file is not None:
        return read_secret_file(password_file, "password file")
    if secret_dir is not None and (secret_dir / K8S_PASSWORD).is_file():
        return read_secret_file(secret_dir / K8S_PASSWORD, "password file", strip_newline=False)
    env = os.environ.get("COSIGN_PASSWORD")
    if env is not None:
        return env.encode()
    return prompt_secret(f"Enter password for {what}: ", what=f"a password for {what}", confirm=confirm,
                         hint="set COSIGN_PASSWORD or pass --password-file")


def prompt_secret(prompt: str, *, what: str, hint: str, confirm: bool = False) -> bytes:
    """Ask on the terminal (no echo); without a terminal, fail with ``hint``."""
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        raise ConfigError(f"{what} is needed and there is no terminal to ask on: {hint}")
    import getpass

    value = getpass.getpass(prompt)
    if confirm and getpass.getpass("Enter again to confirm: ") != value:
        raise ConfigError("the passwords do not match")
    return value.encode()
