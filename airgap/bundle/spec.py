"""The bundle spec (``bundles/*.yaml``): which images to pack, and the keys, roots and policy to ship with them.

::

    apiVersion: airgap/v1
    kind: Bundle
    metadata: {name: demo, version: 1.0.0}
    created: 2024-01-01T00:00:00Z       # or an epoch; else $SOURCE_DATE_EPOCH; else 0
    images:
      - 127.0.0.1:5000/team/app0:1.0     # shorthand: every platform
      - ref: quay.io/keycloak/keycloak:21.1.2
        platforms: [linux/amd64]
    keys: [{name: release, path: keys/release.pub}]   # paths relative to this file
    trustedRoots: [public-good]          # or paths to trusted_root.json files
    policies:                            # ClusterImagePolicy specs with a name; key.name refers to keys[]
      - name: team
        images: [{glob: "127.0.0.1:5000/team/**"}]
        authorities: [{key: {name: release}, ctlog: {disabled: true}}]
    policyFiles: [policies/cip.yaml]     # ClusterImagePolicy documents as they are
    noMatchPolicy: deny                  # and allow, approvedRegistries, mode: AirgapPolicy settings
    airgap:                              # airgap's own image (the webhook's), packed like any image
      image: registry.example.com/tools/airgap:0.1.0     # or {ref: ..., platforms: [...]}, as in images[]

Errors name the file, the line and the field: ``bundles/demo.yaml:12: images[1].platforms: expected a list
of os/arch[/variant]``. The policy is checked with the same parser the verifier uses, so a spec that loads
produces a ``trust/policy.yaml`` that verifies. ``key.secretRef`` naming one of ``keys[]`` is rewritten to
``key.name`` (inside a bundle keys live in the key manifest, not in secrets).

``airgap.image`` is one more image (every platform, its signatures; the policy applies to it as to any image):
listing it there rather than in ``images`` makes the signed bundle manifest say it is airgap's own, so that after
``load`` the webhook's manifests default to it (:mod:`airgap.bundle.selfcarry`).
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from airgap.errors import ConfigError, Error
from airgap.schema import check_fields
from airgap.schema import type_name as _type

API_VERSION = "airgap/v1"
PUBLIC_GOOD = "public-good"
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$")
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")
_KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_PLATFORM = re.compile(r"^[a-z0-9._-]+/[a-z0-9._-]+(?:/[A-Za-z0-9._-]+)?$")
_TOP = ("apiVersion", "kind", "metadata", "created", "images", "keys", "trustedRoots", "policies", "policyFiles",
        "noMatchPolicy", "allow", "approvedRegistries", "mode", "airgap")
_CIP_SPEC = ("images", "authorities", "policy", "mode", "match", "dockerReference")
CIP_API_VERSION = "policy.sigstore.dev/v1beta1"


@dataclass(frozen=True)
class ImageSpec:
    ref: str  # as written (pack resolves and normalizes it)
    platforms: tuple[str, ...] | None = None  # None: every platform


@dataclass(frozen=True)
class KeySpec:
    name: str
    path: Path  # resolved relative to the spec
    pem: bytes = field(repr=False)


@dataclass(frozen=True)
class BundleSpec:
    path: str
    name: str
    version: str
    created: int
    images: tuple[ImageSpec, ...]
    keys: tuple[KeySpec, ...] = ()
    trusted_roots: tuple[str, ...] = ()  # "public-good" or absolute paths of trusted_root.json files
    policy_docs: tuple[Mapping[str, Any], ...] = ()  # ClusterImagePolicy docs, then the AirgapPolicy doc
    key_policies: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # key name -> policies using it
    airgap_image: str | None = None  # airgap.image's ref as written (also the last of ``images``)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None) -> BundleSpec:
        """Read and validate a spec; ``env`` (default ``os.environ``) supplies ``SOURCE_DATE_EPOCH``."""
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read bundle spec {p}: {getattr(exc, 'strerror', None) or exc}") from None
        return _Parser(str(path), p.parent, text, os.environ if env is None else env).parse()

    def policy_yaml(self) -> str:
        """``trust/policy.yaml``: the ClusterImagePolicy documents and one AirgapPolicy document."""
        import yaml

        return str(yaml.safe_dump_all([dict(d) for d in self.policy_docs], sort_keys=True,
                                      default_flow_style=False, allow_unicode=True, explicit_start=True))

    def key_manifest(self) -> dict[str, Any]:
        """The key manifest (``trust/keys.json``), in :meth:`airgap.verification.trust.Trust.key_manifest`'s shape."""
        from airgap.keys.public import algorithm, key_id, load_public_key
        from airgap.verification.trust import KEY_MANIFEST_VERSION

        out = []
        for k in sorted(self.keys, key=lambda k: k.name):
            key = load_public_key(k.pem, f"key {k.name}")
            out.append({"name": k.name, "id": key_id(key), "algorithm": algorithm(key),
                        "source": f"keys/{k.name}.pub", "policies": list(self.key_policies.get(k.name, ()))})
        return {"schemaVersion": KEY_MANIFEST_VERSION, "keys": out}

    def trust_files(self) -> dict[str, bytes]:
        """Every ``trust/...`` entry of the bundle (name -> bytes): key files, the key manifest, trusted roots
        (``trust/trusted_roots/<name>.json``, ``public-good`` from the sigstore package) and the policy."""
        from airgap.bundle.manifest import canonical_json

        files: dict[str, bytes] = {}
        for k in self.keys:
            files[f"trust/keys/{k.name}.pub"] = k.pem
        if self.keys:
            files["trust/keys.json"] = canonical_json(self.key_manifest())
        for root in self.trusted_roots:
            if root == PUBLIC_GOOD:
                from airgap.checks.roots import _PUBLIC_GOOD_STORE, _store_file

                files[f"trust/trusted_roots/{PUBLIC_GOOD}.json"] = _store_file(_PUBLIC_GOOD_STORE)
            else:
                files[f"trust/trusted_roots/{Path(root).stem}.json"] = Path(root).read_bytes()
        files["trust/policy.yaml"] = self.policy_yaml().encode("utf-8")
        return dict(sorted(files.items()))


class _Parser:
    def __init__(self, where: str, base: Path, text: str, env: Mapping[str, str]) -> None:
        self.where, self.base, self.text, self.env = where, base, text, env
        self.lines: dict[str, int] = {}
        self.raw: dict[str, str] = {}

    def err(self, path: str, msg: str) -> ConfigError:
        line = self.line(path)
        return ConfigError(f"{self.where}:{line}: {path}: {msg}" if path else f"{self.where}:{line}: {msg}")

    def line(self, path: str) -> int:
        while path and path not in self.lines:
            path = re.sub(r"(\.[^.\[\]]+|\[\d+\])$", "", path) if re.search(r"(\.[^.\[\]]+|\[\d+\])$", path) else ""
        return self.lines.get(path, 1)

    # ---- YAML with line numbers -----------------------------------------------------------------

    def _walk(self, node: Any, path: str) -> None:
        import yaml

        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for knode, vnode in node.value:  # the strict loader has refused duplicate keys already
                key = str(knode.value)
                sub = f"{path}.{key}" if path else key
                self._walk(vnode, sub)
                self.lines[sub] = knode.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._walk(item, f"{path}[{i}]")
        elif isinstance(node, yaml.ScalarNode):
            self.raw[path] = str(node.value)

    def parse(self) -> BundleSpec:
        import yaml

        from airgap.yamldoc import StrictLoader, StrictYAMLError, describe

        try:
            loader = StrictLoader(self.text)
            try:
                node = loader.get_single_node()
                if node is None:
                    raise ConfigError(f"{self.where}:1: empty bundle spec")
                self._walk(node, "")
                doc = loader.construct_document(node)
            finally:
                loader.dispose()
        except yaml.YAMLError as exc:
            line, problem = describe(exc)
            invalid = "" if isinstance(exc, StrictYAMLError) else "invalid YAML: "
            raise ConfigError(f"{self.where}:{line or 1}: {invalid}{problem}") from None
        carried = isinstance(doc, dict) and doc.get("airgap") is not None  # airgap.image alone is a bundle too
        d = self.mapping(doc, "", _TOP, ("apiVersion", "kind", "metadata") + (() if carried else ("images",)))
        if d["apiVersion"] != API_VERSION:
            raise self.err("apiVersion", f"expected {API_VERSION}, got {d['apiVersion']!r}")
        if d["kind"] != "Bundle":
            raise self.err("kind", f"expected Bundle, got {d['kind']!r}")
        meta = self.mapping(d["metadata"], "metadata", ("name", "version"), ("name", "version"))
        name = self.string(meta["name"], "metadata.name")
        if not _NAME.match(name):
            raise self.err("metadata.name", f"invalid name {name!r}: lowercase letters, digits, '-' and '.'")
        version = self.raw.get("metadata.version", "")
        if not isinstance(meta["version"], str | int | float) or not _VERSION.match(version):
            raise self.err("metadata.version", f"invalid version {version!r}")
        keys = self.keys(d.get("keys") or [])
        spec_keys = {k.name: k for k in keys}
        docs, key_policies = self.policies(d, spec_keys)
        images, airgap_image = self.images([] if d.get("images") is None else d["images"], d.get("airgap"))
        return BundleSpec(
            path=self.where, name=name, version=version, created=self.created(d.get("created")),
            images=images, keys=keys, trusted_roots=self.roots(d.get("trustedRoots") or []),
            policy_docs=tuple(docs), key_policies=key_policies, airgap_image=airgap_image,
        )

    # ---- typed accessors ------------------------------------------------------------------------

    def mapping(self, obj: Any, path: str, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> dict[str, Any]:
        return check_fields(obj, path, allowed, required, self.err)

    def string(self, obj: Any, path: str) -> str:
        if not isinstance(obj, str) or not obj:
            raise self.err(path, f"expected a non-empty string, got {_type(obj)}")
        return obj

    def list_(self, obj: Any, path: str, what: str = "a list") -> list[Any]:
        if not isinstance(obj, list):
            raise self.err(path, f"expected {what}, got {_type(obj)}")
        return obj

    def file(self, obj: Any, path: str) -> Path:
        p = self.base / self.string(obj, path)
        if not p.is_file():
            raise self.err(path, f"no such file {p}")
        return p.resolve()

    # ---- sections -------------------------------------------------------------------------------

    def created(self, value: Any) -> int:
        if value is None:
            epoch = self.env.get("SOURCE_DATE_EPOCH")
            if epoch is None:
                return 0
            if not epoch.strip().isdigit():
                raise ConfigError(f"SOURCE_DATE_EPOCH: expected a non-negative integer, got {epoch!r}")
            return int(epoch)
        if isinstance(value, bool):
            raise self.err("created", "expected an RFC 3339 time or an epoch")
        if isinstance(value, int):
            if value < 0:
                raise self.err("created", "expected a non-negative epoch")
            return value
        if isinstance(value, datetime | date):
            when = value if isinstance(value, datetime) else datetime(value.year, value.month, value.day)
        elif isinstance(value, str):
            try:
                when = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
            except ValueError:
                raise self.err("created", f"expected an RFC 3339 time or an epoch, got {value!r}") from None
        else:
            raise self.err("created", f"expected an RFC 3339 time or an epoch, got {_type(value)}")
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        epoch_value = int(when.timestamp())
        if epoch_value < 0:
            raise self.err("created", "times before 1970 are not supported")
        return epoch_value

    def images(self, value: Any, airgap: Any) -> tuple[tuple[ImageSpec, ...], str | None]:
        """``images`` and, last, ``airgap.image`` (with its ref as written); each image once. ``images`` may be
        empty when ``airgap.image`` is given (a bundle that carries airgap alone)."""
        out: list[ImageSpec] = []
        seen: dict[str, str] = {}
        for i, item in enumerate(self.list_(value, "images")):
            out.append(self.image(item, f"images[{i}]", seen))
        if airgap is None:
            if not out:
                raise self.err("images", "required field missing")
            return tuple(out), None
        m = self.mapping(airgap, "airgap", ("image",), ("image",))
        own = self.image(m["image"], "airgap.image", seen)
        return (*out, own), own.ref

    def image(self, item: Any, where: str, seen: dict[str, str]) -> ImageSpec:
        """One image: a ref, or ``{ref, platforms}``; ``seen`` (normalized ref -> where) refuses a second listing."""
        from airgap.refs import parse

        path = where
        platforms: tuple[str, ...] | None = None
        if isinstance(item, str):
            ref = item
        else:
            m = self.mapping(item, path, ("ref", "platforms"), ("ref",))
            ref = self.string(m["ref"], f"{path}.ref")
            path = f"{path}.ref"
            if m.get("platforms") is not None:
                plats = m["platforms"]
                ppath = f"{where}.platforms"
                if not isinstance(plats, list) or not plats or not all(
                        isinstance(p, str) and _PLATFORM.match(p) for p in plats):
                    raise self.err(ppath, "expected a list of os/arch[/variant]")
                if len(set(plats)) != len(plats):
                    raise self.err(ppath, "lists a platform twice")
                platforms = tuple(plats)
        try:
            norm = str(parse(ref))
        except ConfigError as exc:
            raise self.err(path, exc.message) from None
        if norm in seen:
            raise self.err(path, f"{ref!r} is listed twice (also {seen[norm]})")
        seen[norm] = where
        return ImageSpec(ref, platforms)

    def keys(self, value: Any) -> tuple[KeySpec, ...]:
        from airgap.keys.public import load_public_key

        out: list[KeySpec] = []
        for i, item in enumerate(self.list_(value, "keys")):
            path = f"keys[{i}]"
            m = self.mapping(item, path, ("name", "path"), ("name", "path"))
            name = self.string(m["name"], f"{path}.name")
            if not _KEY_NAME.match(name):
                raise self.err(f"{path}.name", f"invalid key name {name!r}: letters, digits, '.', '_' and '-'")
            if any(k.name == name for k in out):
                raise self.err(f"{path}.name", f"duplicate key name {name!r}")
            file = self.file(m["path"], f"{path}.path")
            pem = file.read_bytes()
            try:
                load_public_key(pem, str(file))
            except Error as exc:
                raise self.err(f"{path}.path", exc.message) from None
            out.append(KeySpec(name, file, pem))
        return tuple(out)

    def roots(self, value: Any) -> tuple[str, ...]:
        out: list[str] = []
        stems: dict[str, str] = {}
        for i, item in enumerate(self.list_(value, "trustedRoots")):
            path = f"trustedRoots[{i}]"
            entry = PUBLIC_GOOD if item == PUBLIC_GOOD else str(self.file(item, path))
            stem = PUBLIC_GOOD if entry == PUBLIC_GOOD else Path(entry).stem
            if not _KEY_NAME.match(stem):
                raise self.err(path, f"file name {stem!r} cannot name a trusted root (letters, digits, '.', '_', '-')")
            if stem in stems:
                raise self.err(path, f"a second trusted root named {stem!r} (also {stems[stem]})")
            stems[stem] = path
            if entry != PUBLIC_GOOD:
                from airgap.checks.roots import TrustedRoot

                try:
                    TrustedRoot.from_bytes(Path(entry).read_bytes(), entry)
                except Error as exc:
                    raise self.err(path, exc.message) from None
            out.append(entry)
        return tuple(out)

    def policies(self, d: dict[str, Any], keys: Mapping[str, KeySpec]) -> tuple[list[dict[str, Any]],
                                                                              dict[str, tuple[str, ...]]]:
        from airgap.yamldoc import load_all

        resolver = _resolver(keys)
        docs: list[dict[str, Any]] = []
        for i, item in enumerate(self.list_(d.get("policies") or [], "policies")):
            path = f"policies[{i}]"
            m = self.mapping(item, path, ("name", *_CIP_SPEC), ("name", "images", "authorities"))
            cip: dict[str, Any] = {"apiVersion": CIP_API_VERSION, "kind": "ClusterImagePolicy",
                   "metadata": {"name": self.string(m["name"], f"{path}.name")},
                   "spec": {k: copy.deepcopy(v) for k, v in m.items() if k != "name"}}
            _rewrite_secret_refs(cip, keys)
            self._check_policy([cip], f"{self.where}:{self.line(path)}: {path}", resolver)
            docs.append(cip)
        for i, item in enumerate(self.list_(d.get("policyFiles") or [], "policyFiles")):
            path = f"policyFiles[{i}]"
            file = self.file(item, path)
            try:
                text = file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise self.err(path, f"cannot read {file}: {str(exc).splitlines()[0]}") from None
            try:
                loaded = load_all(text, str(file))
            except ConfigError as exc:
                raise self.err(path, exc.message) from None
            file_docs: list[dict[str, Any]] = []
            for raw in loaded:
                items = raw.get("items", []) if isinstance(raw, dict) and raw.get("kind") in (
                    "List", "ClusterImagePolicyList") else [raw]
                for doc in items:
                    if doc is None:
                        continue
                    if not isinstance(doc, dict) or doc.get("kind") != "ClusterImagePolicy":
                        kind = doc.get("kind") if isinstance(doc, dict) else _type(doc)
                        raise self.err(path, f"{file}: only ClusterImagePolicy documents are allowed, got {kind!r}")
                    cip = {k: doc[k] for k in ("apiVersion", "kind", "metadata", "spec") if k in doc}
                    meta = cip.get("metadata")
                    if isinstance(meta, dict):
                        cip["metadata"] = {"name": meta.get("name")}
                    _rewrite_secret_refs(cip, keys)
                    file_docs.append(cip)
            self._check_policy(file_docs, f"{self.where}:{self.line(path)}: {path} ({file.name})", resolver)
            docs.extend(file_docs)
        settings = {k: d[k] for k in ("noMatchPolicy", "allow", "approvedRegistries", "mode") if k in d}
        docs.append({"apiVersion": "airgap.dev/v1alpha1", "kind": "AirgapPolicy",
                     "metadata": {"name": "bundle"}, "spec": settings})
        first = min((self.line(k) for k in settings), default=1)
        self._check_policy(docs[-1:], f"{self.where}:{first}", resolver)
        policy = self._check_policy(docs, f"{self.where}: policies", resolver)
        used: dict[str, tuple[str, ...]] = {}
        for name in keys:
            used[name] = tuple(sorted({p.name for p in policy.policies for a in p.authorities
                                       if f"name:{name}" in a.key_refs}))
        return docs, used

    def _check_policy(self, docs: list[dict[str, Any]], where: str, resolver: Any) -> Any:
        import yaml

        from airgap.policy.policyset import PolicySet

        text = yaml.safe_dump_all(docs, sort_keys=True)
        try:
            return PolicySet.from_yaml(text, where, key_resolver=resolver)
        except Error as exc:
            raise ConfigError(exc.message) from None


def _resolver(keys: Mapping[str, KeySpec]) -> Any:
    def resolve(kind: str, name: str) -> tuple[Any, ...]:
        from airgap.keys.public import load_public_key

        if name not in keys:
            known = ", ".join(sorted(keys)) or "none"
            raise ConfigError(f"no key named {name!r} in keys[] (known: {known})")
        if kind != "name":
            raise ConfigError(f"{kind} {name!r} cannot be resolved inside a bundle")
        return (load_public_key(keys[name].pem, str(keys[name].path)),)

    return resolve


def _rewrite_secret_refs(cip: dict[str, Any], keys: Mapping[str, KeySpec]) -> None:
    """``key: {secretRef: {name: N}}`` with N in keys[] becomes ``key: {name: N}`` (in place)."""
    spec = cip.get("spec")
    if not isinstance(spec, dict) or not isinstance(spec.get("authorities"), list):
        return
    for auth in spec["authorities"]:
        key = auth.get("key") if isinstance(auth, dict) else None
        ref = key.get("secretRef") if isinstance(key, dict) else None
        if isinstance(key, dict) and isinstance(ref, dict) and ref.get("name") in keys:
            del key["secretRef"]
            key["name"] = ref["name"]
