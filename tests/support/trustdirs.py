"""Trust directories as tests and benches write them: ``keys/<name>.pub``, ``trusted_root.json`` and a
``policy.yaml`` of a ClusterImagePolicy, optionally followed by an AirgapPolicy (see airgap/verification/trust.py).

- ``cip(name, authorities, glob="**", mode=None, extra="")``: a ClusterImagePolicy document; ``authorities`` is
  the YAML list under ``spec.authorities`` (items indented four spaces, e.g. :func:`key_authority`).
- ``key_authority("release")``: one key authority (``key.name``), transparency log off unless ``tlog=True``.
- ``airgap_policy(no_match="deny", extra="")``: an AirgapPolicy document to append to a :func:`cip` (it
  starts with ``---``); ``extra`` is more ``spec`` lines (indented two spaces).
- ``trust_root(name, ca_chain=..., tlogs=..., ctlogs=..., tsa_chain=...)``: a policy-controller TrustRoot document
  (``sigstoreKeys`` form: base64 of each PEM, as its API writes them) to append to a policy (starts with ``---``).
- ``write_trust(path, keys=..., trusted_root=..., policy=...)``: the directory, returned.

Standard library only: benches import this before anything else.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def key_authority(key: str = "release", *, tlog: bool = False) -> str:
    """An ``authorities`` item verifying with ``keys/<key>.pub`` (named after the key)."""
    return f"    - name: {key}\n      key: {{name: {key}}}\n" + ("" if tlog else "      ctlog: {disabled: true}\n")


def cip(name: str, authorities: str, glob: str = "**", *, mode: str | None = None, extra: str = "") -> str:
    """A ClusterImagePolicy matching ``glob``; ``mode`` (enforce/warn) when given; ``extra``: more spec lines."""
    mode_line = f"  mode: {mode}\n" if mode is not None else ""
    return f"""\
apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata:
  name: {name}
spec:
{mode_line}  images:
    - glob: "{glob}"
  authorities:
{authorities}{extra}"""


def airgap_policy(no_match: str = "deny", extra: str = "") -> str:
    """``---`` and an AirgapPolicy named ``settings`` with ``noMatchPolicy``; ``extra``: more spec lines."""
    return f"""\
---
apiVersion: airgap.dev/v1alpha1
kind: AirgapPolicy
metadata:
  name: settings
spec:
  noMatchPolicy: {no_match}
{extra}"""


def trust_root(name: str, *, ca_chain: bytes | None = None, tlogs: Sequence[bytes] = (), ctlogs: Sequence[bytes] = (),
               tsa_chain: bytes | None = None) -> str:
    """``---`` and a TrustRoot named ``name`` from PEM bytes: ``ca_chain`` (leaf-most first, root last), Rekor and CT
    log public keys, and a TSA chain (its leaf first)."""

    def b64(pem: bytes) -> str:
        return base64.b64encode(pem).decode()

    def authority(kind: str, chain: bytes) -> str:
        return (f"    - subject: {{organization: airgap-test, commonName: {kind}}}\n"
                f"      uri: https://{kind}.airgap.test\n      certChain: {b64(chain)}\n")

    def logs(kind: str, keys: Sequence[bytes]) -> str:
        return "".join(f"    - {{baseURL: 'https://{kind}{i}.airgap.test', hashAlgorithm: sha-256, "
                       f"publicKey: {b64(pem)}}}\n" for i, pem in enumerate(keys))

    text = f"---\napiVersion: policy.sigstore.dev/v1alpha1\nkind: TrustRoot\nmetadata:\n  name: {name}\nspec:\n"
    text += "  sigstoreKeys:\n"
    text += ("    certificateAuthorities:\n" + authority("fulcio", ca_chain)) if ca_chain else ""
    text += ("    tLogs:\n" + logs("rekor", tlogs)) if tlogs else ""
    text += ("    ctLogs:\n" + logs("ctfe", ctlogs)) if ctlogs else ""
    text += ("    timestampAuthorities:\n" + authority("tsa", tsa_chain)) if tsa_chain else ""
    return text


def write_trust(path: Path, *, keys: Mapping[str, bytes] | None = None,
                trusted_root: bytes | dict[str, Any] | None = None, policy: str = "") -> Path:
    """Write a trust directory at ``path`` (created with its parents) and return it: ``keys`` maps a key name
    to its public PEM (``keys/<name>.pub``; no ``keys/`` when empty), ``trusted_root`` is the JSON document or
    its bytes, ``policy`` the text of ``policy.yaml`` (not written when empty)."""
    path.mkdir(parents=True, exist_ok=True)
    if keys:
        (path / "keys").mkdir(exist_ok=True)
        for name, pem in keys.items():
            (path / "keys" / f"{name}.pub").write_bytes(pem)
    if isinstance(trusted_root, dict):
        trusted_root = json.dumps(trusted_root).encode()
    if trusted_root is not None:
        (path / "trusted_root.json").write_bytes(trusted_root)
    if policy:
        (path / "policy.yaml").write_text(policy)
    return path
