"""Docker config files (``config.json``): read with the strict JSON loader, checked for the shape oras-py's
credential lookup relies on, so a malformed file is a one-line ConfigError naming it, never a traceback.

Files are read in the order given (explicit ``--auth-config`` files, ``$DOCKER_CONFIG/config.json``, then
``~/.docker/config.json``), each once; a later file's ``auths`` and ``credHelpers`` entries override an
earlier one's, and the last ``credsStore`` set wins. Missing files are skipped.
"""

from __future__ import annotations

import os
from typing import Any

from airgap.errors import ConfigError
from airgap.jsondoc import json_object

DEFAULT = "~/.docker/config.json"


def _mapping(value: Any, where: str, values: type) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, values) for v in value.values()):
        raise ConfigError(f"{where}: expected an object of {'objects' if values is dict else 'strings'}")
    return value


def load_configs(paths: list[str]) -> dict[str, Any]:
    """``{"auths", "credsStore", "credHelpers"}`` merged from ``paths`` and the default config, as
    :func:`oras.auth.utils.load_configs` returns them."""
    auths: dict[str, Any] = {}
    helpers: dict[str, str] = {}
    store: str | None = None
    for path in dict.fromkeys([*paths, os.path.expanduser(DEFAULT)]):
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise ConfigError(f"cannot read Docker config {path}: {exc.strerror or exc}") from None
        doc = json_object(data, path, ConfigError)
        auths.update(_mapping(doc.get("auths"), f"{path}: auths", dict))
        helpers.update(_mapping(doc.get("credHelpers"), f"{path}: credHelpers", str))
        creds_store = doc.get("credsStore")
        if creds_store is not None and not isinstance(creds_store, str):
            raise ConfigError(f"{path}: credsStore: expected a string")
        store = creds_store or store
    for host, entry in auths.items():
        if entry.get("auth") is not None and not isinstance(entry["auth"], str):
            raise ConfigError(f"Docker config: auths.{host}.auth: expected a string")
    return {"auths": auths, "credsStore": store, "credHelpers": helpers}
