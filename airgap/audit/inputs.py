"""What to audit: a registry's catalog, a list of refs, the running pods of a cluster, or a loaded bundle.

Threat model: the registry and the pods file are untrusted input. Pod JSON (``kubectl get pods -A -o json``)
is parsed defensively: wrong shapes are an error naming the path, never a crash.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

from airgap import refs
from airgap.errors import ConfigError, IntegrityError, RegistryError
from airgap.jsondoc import load_json

if TYPE_CHECKING:
    from airgap.oci.registry import RegistryClient
    from airgap.verification.trust import Trust


# Cosign's attachment tags and the Referrers fallback tag: artifacts about images, not images to audit.
_ATTACHMENT_TAG = re.compile(r"^sha256-[0-9a-f]{64}(\.(sig|att|sbom))?$")


_DIGEST_IN_ID = re.compile(r"(sha256:[0-9a-f]{64})$")


@dataclass(frozen=True, order=True)
class Workload:
    """One container of one pod that runs an image (from ``kubectl get pods -A -o json``)."""

    namespace: str
    pod: str
    container: str
    kind: str  # "container", "initContainer" or "ephemeralContainer"
    image: str  # as the pod spec names it
    image_id: str  # as the kubelet reports it (may be empty for a pending pod)
    uid: str = ""

    @property
    def ref(self) -> str:
        """The ref to verify: the spec's repository at the digest actually running, when the kubelet says
        which; else the spec's ref as written (a tag is resolved at the registry)."""
        match = _DIGEST_IN_ID.search(self.image_id)
        if not match:
            return self.image
        try:
            return f"{refs.parse(self.image).name}@{match.group(1)}"
        except ConfigError:
            return self.image

    def to_json(self) -> dict[str, str]:
        return {"namespace": self.namespace, "pod": self.pod, "container": self.container, "kind": self.kind,
                "image": self.image, "image_id": self.image_id, "uid": self.uid}


def _obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise IntegrityError(f"pods file: {where} is not an object")
    return value


def _str(value: Any, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise IntegrityError(f"pods file: {where} is not a string")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise IntegrityError(f"pods file: {where} is not a list")
    return value


_KINDS = (("containers", "containerStatuses", "container"),
          ("initContainers", "initContainerStatuses", "initContainer"),
          ("ephemeralContainers", "ephemeralContainerStatuses", "ephemeralContainer"))


def parse_pods(data: bytes) -> list[Workload]:
    """Every container of every pod in a ``v1 PodList`` (or a single Pod), sorted."""
    doc = load_json(data, "pods file")
    doc = _obj(doc, "the document")
    items = doc.get("items") if doc.get("kind") != "Pod" else [doc]
    if not isinstance(items, list):
        raise IntegrityError("pods file: no 'items' list (expected the output of kubectl get pods -A -o json)")
    out: list[Workload] = []
    for i, raw in enumerate(items):
        pod = _obj(raw, f"items[{i}]")
        meta, spec, status = (_obj({} if pod.get(k) is None else pod[k], f"items[{i}].{k}")
                              for k in ("metadata", "spec", "status"))
        name = _str(meta.get("name"), f"items[{i}].metadata.name")
        namespace = _str(meta.get("namespace"), f"items[{i}].metadata.namespace") or "default"
        uid = _str(meta.get("uid"), f"items[{i}].metadata.uid")
        for spec_key, status_key, kind in _KINDS:
            ids: dict[str, str] = {}
            for j, st in enumerate(_list(status.get(status_key), f"items[{i}].status.{status_key}")):
                st = _obj(st, f"items[{i}].status.{status_key}[{j}]")
                ids[_str(st.get("name"), f"{status_key}[{j}].name")] = _str(st.get("imageID"), f"{status_key}[{j}]"
                                                                                               ".imageID")
            for j, c in enumerate(_list(spec.get(spec_key), f"items[{i}].spec.{spec_key}")):
                c = _obj(c, f"items[{i}].spec.{spec_key}[{j}]")
                cname = _str(c.get("name"), f"items[{i}].spec.{spec_key}[{j}].name")
                image = _str(c.get("image"), f"items[{i}].spec.{spec_key}[{j}].image")
                if image:
                    out.append(Workload(namespace, name, cname, kind, image, ids.get(cname, ""), uid))
    return sorted(out)


def parse_image_list(text: str, registry: str | None = None) -> list[str]:
    """One ref per line (``#`` comments and blank lines ignored). With ``registry``, a line whose first
    component is not a host (no ``.``/``:``, not ``localhost``, as Docker decides) is taken to live there."""
    out = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        first = line.split("/", 1)[0]
        if registry and ("/" not in line or not any(c in first for c in ".:") and first != "localhost"):
            line = f"{registry}/{line}"
        refs.parse(line)  # a malformed line is a ConfigError naming it
        out.append(line)
    return out


def catalog(client: RegistryClient, host: str, *, max_pages: int = 1000) -> list[str]:
    """Every repository a registry lists in ``/v2/_catalog`` (paginated with ``Link``), sorted."""
    repos: list[str] = []
    url: str | None = "/v2/_catalog?n=1000"
    for _ in range(max_pages):
        if url is None:
            return sorted(set(repos))
        resp = client.request("GET", host, url, scope="registry:catalog:*")
        if resp.status_code != 200:
            resp.close()
            raise RegistryError(f"listing repositories of {host}: HTTP {resp.status_code} (does the registry "
                                "serve /v2/_catalog? pass --images FILE instead)", resp.status_code)
        if len(resp.content) > client.limits.max_json_bytes:
            raise IntegrityError(f"catalog of {host}: response is over {client.limits.max_json_bytes} bytes")
        body = load_json(resp.content, f"catalog of {host}", invalid="{what}: response is not JSON ({detail})")
        page = body.get("repositories") if isinstance(body, dict) else None
        repos.extend(r for r in (page or []) if isinstance(r, str))
        nxt = resp.links.get("next", {}).get("url")
        url = urljoin(resp.url, nxt) if nxt else None
    raise RegistryError(f"listing repositories of {host}: more than {max_pages} pages")


def registry_images(client: RegistryClient, host: str, access_host: str | None = None) -> list[str]:
    """``host/repo:tag`` for every tag of every repository, minus cosign's ``sha256-…`` attachment tags and
    the translation-map repository."""
    from airgap.bundle.load import MAP_REPO

    where = access_host or host
    out = []
    for repo in catalog(client, where):
        if repo == MAP_REPO or repo.endswith(f"/{MAP_REPO}"):
            continue  # the translation maps `airgap load` stores: data, not images
        out += [f"{host}/{repo}:{tag}" for tag in client.list_tags(where, repo) if not _ATTACHMENT_TAG.match(tag)]
    return sorted(out)


def bundle_refs(path: Path, trust: Trust) -> tuple[dict[str, Any], list[str]]:
    """The images a bundle lists, as local ``repo@digest`` refs (through the trust's translation map, which
    ``airgap load --trust-out`` wrote), and a record of the bundle for the evidence.

    Only the bundle manifest and its small entries are read (by the bundle's own safe reader; no blob).
    The manifest is used as a list of digests to audit and nothing else: each image is then verified
    against the operator's trust like any other, so an unsigned bundle cannot vouch for anything."""
    from airgap.bundle.inspect import read_bundle
    from airgap.refs.translate import forward_repo

    reader = read_bundle(path, allow_unsigned=True)
    out = []
    for image in reader.manifest.images:
        local = forward_repo(image.upstream, trust.tmap)
        if local is None:
            raise ConfigError(f"bundle image {image.upstream} is not in the translation map of {trust.source} "
                              "(map.json, written by airgap load): cannot tell where it was loaded")
        out.append(f"{local}@{image.digest}")
    record = {"path": str(path), "name": reader.manifest.name, "version": reader.manifest.version,
              "digest": reader.digest, "images": len(reader.manifest.images)}
    return record, sorted(out)


@dataclass
class Inputs:
    """What was audited, recorded in the evidence (paths as given, plus content digests of files)."""

    registry: str | None = None
    images_file: tuple[str, bytes] | None = None
    pods_file: tuple[str, bytes] | None = None
    bundle: dict[str, Any] | None = None
    refs: list[str] = field(default_factory=list)
    workloads: list[Workload] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        def file(item: tuple[str, bytes] | None) -> dict[str, str] | None:
            return None if item is None else {"path": item[0], "sha256": hashlib.sha256(item[1]).hexdigest()}

        return {"registry": self.registry, "images_file": file(self.images_file),
                "pods_file": file(self.pods_file), "bundle": self.bundle}

    def targets(self) -> dict[str, list[Workload]]:
        """Each ref to verify once, with the pod containers that run it."""
        out: dict[str, list[Workload]] = {r: [] for r in self.refs}
        for w in self.workloads:
            out.setdefault(w.ref, []).append(w)
        return out
