"""Trust material: public keys, Sigstore trusted roots, policy and the translation map, as one object.

A trust directory is what a bundle carries and what the webhook mounts::

    keys/<name>.pub          public keys (SPKI PEM); the file stem is the key's name
    keys.json                the key manifest: name, id (sha256 of SPKI DER), algorithm, source, policies
    trusted_root.json        a Sigstore trusted root (and/or trusted_roots/<name>.json, several)
    policy.yaml              ClusterImagePolicy documents + airgap's global settings
    map.json                 the translation map written by `airgap load` (upstream <-> local)
    site.json, bundles/      a site: one trust per loaded bundle (see :mod:`airgap.verification.scopes`)

Threat model: the directory is trusted (it is the operator's, or came out of a bundle whose signature was
checked); its contents are still validated, and a key manifest that disagrees with the key files is an
error, never a warning. Without any trusted root, keyless checks use the Sigstore public-good root that
ships inside the sigstore package: loaded offline, never refreshed over the network.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airgap.errors import ConfigError
from airgap.keys.public import algorithm, key_id, load_public_key
from airgap.verification.scopes import SiteState, is_site

if TYPE_CHECKING:
    from airgap.checks.roots import TrustedRoot
    from airgap.keys.public import PublicKey
    from airgap.policy.policyset import PolicySet
    from airgap.refs.translation_map import TranslationMap

PUBLIC_GOOD = "public-good"
KEY_MANIFEST_VERSION = 1


@dataclass(frozen=True)
class KeyEntry:
    name: str
    key: PublicKey = field(repr=False)
    key_id: str
    algorithm: str
    source: str
    policies: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "id": self.key_id, "algorithm": self.algorithm, "source": self.source,
                "policies": list(self.policies)}


@dataclass
class Trust:
    """Keys, trusted roots, policy and translation, with a digest over all of it (for caches and evidence)."""

    keys: dict[str, KeyEntry] = field(default_factory=dict)
    roots: dict[str, bytes] = field(default_factory=dict)  # name -> trusted_root.json bytes
    # policy.yaml's TrustRoot documents (name -> trusted_root.json bytes): reached only by a trustRootRef,
    # never the default root.
    policy_roots: dict[str, bytes] = field(default_factory=dict)
    policy: PolicySet | None = None
    tmap: TranslationMap | None = None
    digest: str = ""
    source: str = "(in memory)"
    # A site (see :mod:`airgap.verification.scopes`): each loaded bundle's own trust, by bundle name; this
    # object's keys, roots and policy are then the site-wide ones, and ``tmap`` the union of the bundles' maps.
    scopes: dict[str, Trust] = field(default_factory=dict)
    site: SiteState | None = None
    _parsed_roots: dict[str, TrustedRoot] = field(default_factory=dict, repr=False)

    # ---- construction ---------------------------------------------------------------------------

    @classmethod
    def load(cls, directory: str | Path) -> Trust:
        """Load a trust directory (see the module docstring); errors name the file and what is wrong."""
        root = Path(directory)
        if not root.is_dir():
            raise ConfigError(f"trust directory {root} does not exist")
        trust = cls(source=str(root))
        hasher = hashlib.sha256()
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            hasher.update(f"{path.relative_to(root)}\0".encode() + hashlib.sha256(path.read_bytes()).digest())
        trust.digest = "sha256:" + hasher.hexdigest()
        for path in sorted((root / "keys").glob("*.pub")) if (root / "keys").is_dir() else []:
            trust.add_key(path.stem, path.read_bytes(), source=f"keys/{path.name}")
        manifest = root / "keys.json"
        if manifest.exists():
            trust._check_key_manifest(manifest)
        if (root / "trusted_root.json").exists():
            trust.roots["default"] = (root / "trusted_root.json").read_bytes()
        for path in sorted((root / "trusted_roots").glob("*.json")) if (root / "trusted_roots").is_dir() else []:
            trust.roots[path.stem] = path.read_bytes()
        if (root / "map.json").exists():
            from airgap.refs.translation_map import TranslationMap

            trust.tmap = TranslationMap.load(root / "map.json")
        if is_site(root):
            trust._load_site(root)
        if (root / "policy.yaml").exists():
            from airgap.policy.policyset import PolicySet

            trust.policy = PolicySet.load(root / "policy.yaml", keys={n: e.key for n, e in trust.keys.items()})
            trust._note_policies()
            trust._add_policy_roots()
        return trust

    def _load_site(self, root: Path) -> None:
        """Each bundle the site state records, as a trust scope of its own (files checked against the state)."""
        from airgap.refs.translation_map import TranslationMap

        self.site = SiteState.load(root)
        self.site.check_files(root)
        union = TranslationMap()
        for bundle in self.site.bundles:
            scope = Trust.load(root / bundle.trust_dir)
            if scope.site is not None:
                raise ConfigError(f"{root / bundle.trust_dir}: a bundle's trust directory may not be a site")
            self.scopes[bundle.name] = scope
            for entry in scope.tmap.entries if scope.tmap is not None else ():
                union.add(entry.upstream, entry.local, entry.digest)
        self.tmap = union

    def _add_policy_roots(self) -> None:
        """The policy file's TrustRoot documents, by name; one named like a trusted root file is ambiguous."""
        for name, data in (self.policy.trust_roots if self.policy is not None else {}).items():
            if name in self.roots or name == PUBLIC_GOOD:
                clash = "trusted_root.json" if name == "default" else (
                    f"trusted_roots/{name}.json" if name in self.roots else "the public-good root")
                raise ConfigError(f"{self.source}: policy.yaml: TrustRoot {name!r} has the name of {clash}; "
                                  "rename one of them")
            self.policy_roots[name] = data

    def _note_policies(self) -> None:
        """Record in each key entry which policies use it (by key id: named, secretRef or inline data)."""
        if self.policy is None:
            return
        for name, entry in self.keys.items():
            users = sorted({p.name for p in self.policy.policies for a in p.authorities
                            if any(key_id(k) == entry.key_id for k in a.keys or ())})
            self.keys[name] = replace(entry, policies=tuple(users))

    @classmethod
    def from_keys(cls, pems: list[tuple[str, bytes]], *, roots: dict[str, bytes] | None = None) -> Trust:
        """Trust built from key files given on the command line (``--key``), no policy of its own."""
        trust = cls(roots=dict(roots or {}))
        hasher = hashlib.sha256()
        for name, pem in pems:
            entry = trust.add_key(name, pem, source=name)
            hasher.update(entry.key_id.encode())
        for name, data in sorted(trust.roots.items()):
            hasher.update(name.encode() + hashlib.sha256(data).digest())
        trust.digest = "sha256:" + hasher.hexdigest()
        return trust

    def add_key(self, name: str, pem: bytes, *, source: str) -> KeyEntry:
        key = load_public_key(pem, f"key {source}")
        if name in self.keys:
            raise ConfigError(f"{self.source}: two keys are named {name!r}")
        entry = KeyEntry(name, key, key_id(key), algorithm(key), source)
        twin = next((e for e in self.keys.values() if e.key_id == entry.key_id), None)
        if twin is not None:  # N-of-M counts signers by key: one key under two names must not count twice
            raise ConfigError(f"{self.source}: {twin.source} and {source} are the same key ({entry.key_id}); "
                              "remove one of them")
        self.keys[name] = entry
        return entry

    def _check_key_manifest(self, path: Path) -> None:
        from airgap.jsondoc import load_json

        doc = load_json(path.read_bytes(), str(path), ConfigError)
        items = doc.get("keys") if isinstance(doc, dict) else None
        if not isinstance(items, list) or not all(isinstance(k, dict) and isinstance(k.get("name"), str)
                                                  for k in items):
            raise ConfigError(f"{path}: not a key manifest (expected {{'keys': [{{'name', 'id', ...}}]}})")
        listed = {k["name"]: k for k in items}
        for name, entry in self.keys.items():
            item = listed.pop(name, None)
            if item is None:
                raise ConfigError(f"{path}: key {entry.source} is not listed in the key manifest")
            if item.get("id") != entry.key_id:
                raise ConfigError(f"{path}: key {name!r} has id {entry.key_id}, the manifest says {item.get('id')}")
            source, policies = item.get("source"), item.get("policies") or []
            if not isinstance(source, str | None) or not isinstance(policies, list) or not all(
                    isinstance(p, str) for p in policies):
                raise ConfigError(f"{path}: key {name!r}: expected a string source and a list of policy names")
            self.keys[name] = KeyEntry(name, entry.key, entry.key_id, entry.algorithm, source or entry.source,
                                       tuple(policies))
        if listed:
            raise ConfigError(f"{path}: lists key(s) {', '.join(sorted(listed))} with no keys/<name>.pub file")

    # ---- use ------------------------------------------------------------------------------------

    def key_manifest(self) -> dict[str, Any]:
        """The key manifest (``keys.json``): every key with its id, algorithm, source and policies."""
        return {"schemaVersion": KEY_MANIFEST_VERSION,
                "keys": [self.keys[n].to_json() for n in sorted(self.keys)]}

    @property
    def has_roots(self) -> bool:
        return bool(self.roots)

    def keyless_root(self, trust_root_ref: str | None, ca_cert_pem: bytes | None) -> TrustedRoot:
        """The root a keyless authority checks certificates against: its ``trustRootRef`` (the default
        root when None), with the Fulcio CAs replaced by its ``ca-cert`` when it pins one. A pinned CA is the
        only anchor: a certificate from the trust's (or the public-good) Fulcio does not chain to it."""
        base = self.trusted_root(trust_root_ref)
        if ca_cert_pem is None:
            return base
        key = f"{trust_root_ref or ''}\0ca-cert\0" + hashlib.sha256(ca_cert_pem).hexdigest()
        if key not in self._parsed_roots:
            self._parsed_roots[key] = base.with_fulcio_ca(ca_cert_pem)
        return self._parsed_roots[key]

    def trusted_root(self, name: str | None) -> TrustedRoot:
        """The parsed trusted root called ``name`` (a ``trustRootRef``); the only/default one when None;
        the Sigstore public-good root when the trust carries none."""
        from airgap.checks.roots import TrustedRoot

        if name is None:
            name = "default" if "default" in self.roots else (next(iter(self.roots)) if self.roots else PUBLIC_GOOD)
        if name not in self._parsed_roots:
            if name in self.roots:
                self._parsed_roots[name] = TrustedRoot.from_bytes(self.roots[name], f"trusted root {name!r}")
            elif name in self.policy_roots:
                self._parsed_roots[name] = TrustedRoot.from_bytes(self.policy_roots[name], f"TrustRoot {name!r}")
            elif name == PUBLIC_GOOD:
                self._parsed_roots[name] = TrustedRoot.public_good()
            else:
                have = sorted(self.roots) + [f"TrustRoot {n}" for n in sorted(self.policy_roots)]
                raise ConfigError(f"{self.source}: no trusted root named {name!r} (have: {', '.join(have) or 'none'})")
        return self._parsed_roots[name]

    def with_tlogs(self, base: TrustedRoot | None, ctlog_trust_root_ref: str | None) -> TrustedRoot | None:
        """``ctlog: {trustRootRef: NAME}``: ``base`` (the root an authority checks with) with its transparency-log
        keys taken from the root called NAME instead (policy-controller: "Use the Public Key from the referred
        TrustRoot.TLog"); ``base`` itself without one."""
        from airgap.checks.roots import TrustedRoot

        if not ctlog_trust_root_ref:
            return base
        source = self.trusted_root(ctlog_trust_root_ref)
        if base is None or base.digest == source.digest:
            return source
        key = f"{base.digest}\0tlogs\0{source.digest}"
        if key not in self._parsed_roots:
            doc = json.loads(base.data)
            doc["tlogs"] = json.loads(source.data).get("tlogs") or []
            self._parsed_roots[key] = TrustedRoot.from_bytes(json.dumps(doc, sort_keys=True).encode(),
                                                             f"trusted root with the tlogs of {ctlog_trust_root_ref!r}")
        return self._parsed_roots[key]
