"""Audit evidence: which images were checked, against which trust and policy, with what result, and why.

An audit reuses the verifier (:class:`airgap.api.Verifier`): there is no second verification path. This
module gathers the images to audit (a registry's catalog, a list of refs, the running pods of a cluster),
runs the verifier over them once each, and builds one versioned JSON evidence document that every other
output is rendered from (:mod:`airgap.audit_render` for Markdown/HTML, :mod:`airgap.audit_reports` for
Kubernetes PolicyReports and the signed SLSA verification summary).

Reproducibility: the document is a pure function of the inputs (trust, policy, registry contents, pods),
sorted at every level, with exactly one non-reproducible field, ``generated_at``, at the top. Renderers
and reports take their timestamps from that one field.

Threat model: the registry and the pods file are untrusted input. Pod JSON is parsed defensively (wrong
shapes are an error naming the path, never a crash); everything pulled from the registry goes through the
verifier, which hashes every byte.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

from airgap import __version__, refs
from airgap.errors import ConfigError, IntegrityError, RegistryError

if TYPE_CHECKING:
    from airgap.api import Verifier
    from airgap.oci.registry import RegistryClient
    from airgap.trust import Trust
    from airgap.verify import VerificationResult

SCHEMA_VERSION = 1
KIND = "AuditEvidence"
API_VERSION = "airgap.dev/v1alpha1"
STATUSES = ("PASS", "FAIL", "WARN", "ERROR", "SKIP")
# Cosign's attachment tags and the Referrers fallback tag: artifacts about images, not images to audit.
_ATTACHMENT_TAG = re.compile(r"^sha256-[0-9a-f]{64}(\.(sig|att|sbom))?$")
_DIGEST_IN_ID = re.compile(r"(sha256:[0-9a-f]{64})$")


# ---- inputs ---------------------------------------------------------------------------------------

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


_KINDS = (("containers", "containerStatuses", "container"),
          ("initContainers", "initContainerStatuses", "initContainer"),
          ("ephemeralContainers", "ephemeralContainerStatuses", "ephemeralContainer"))


def parse_pods(data: bytes) -> list[Workload]:
    """Every container of every pod in a ``v1 PodList`` (or a single Pod), sorted."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise IntegrityError(f"pods file: not valid JSON ({exc})") from None
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
            for j, st in enumerate(status.get(status_key) or []):
                st = _obj(st, f"items[{i}].status.{status_key}[{j}]")
                ids[_str(st.get("name"), f"{status_key}[{j}].name")] = _str(st.get("imageID"), f"{status_key}[{j}]"
                                                                                               ".imageID")
            for j, c in enumerate(spec.get(spec_key) or []):
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
        try:
            body = json.loads(resp.content)
        except ValueError:
            raise IntegrityError(f"catalog of {host}: response is not JSON") from None
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
    from airgap.translate import forward_repo

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


# ---- results --------------------------------------------------------------------------------------

def status_of(result: VerificationResult) -> str:
    """PASS / FAIL / WARN / ERROR / SKIP, as a PolicyReport counts them.

    ERROR: the image could not be evaluated (not found, registry down, origin unknown). SKIP: admitted
    without a signature check (allow-list, ``noMatchPolicy: allow``). WARN: admitted with warnings."""
    if result.digest is None or result.upstream is None:
        return "ERROR"
    if result.decision == "deny":
        return "FAIL"
    if not result.policies:  # decided without a signature check: allow-list or noMatchPolicy
        return "WARN" if result.decision == "warn" else "SKIP"
    return "WARN" if result.decision == "warn" else "PASS"


def _signatures(evidence: dict[str, Any]) -> list[dict[str, Any]]:
    """The signatures that verified, flattened from policies -> authorities -> evidence."""
    seen: dict[tuple[str, ...], dict[str, Any]] = {}
    for policy in evidence.get("policies", []):
        for auth in policy.get("authorities", []):
            for ev in auth.get("evidence", []):
                if ev.get("ok"):
                    item = {"policy": policy["name"], "authority": auth["name"], "kind": ev["kind"],
                            "location": ev["location"], "layer_digest": ev["layer_digest"],
                            "key_id": ev.get("key_id"), "identity": ev.get("identity"), "issuer": ev.get("issuer")}
                    seen[tuple(str(v) for v in item.values())] = item
    return [seen[k] for k in sorted(seen)]


def image_record(result: VerificationResult, workloads: Iterable[Workload] = ()) -> dict[str, Any]:
    """One image in the evidence document: the verifier's own evidence record plus the audit's status."""
    ev = result.evidence
    return {
        "ref": result.ref,
        "digest": result.digest,
        "upstream": result.upstream,
        "upstream_source": result.upstream_source,
        "status": status_of(result),
        "decision": result.decision,
        "reasons": list(result.reasons),
        "warnings": list(result.warnings),
        "verified_by": _signatures(ev),
        "policies": ev["policies"],
        "workloads": [w.to_json() for w in sorted(set(workloads))],
    }


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


def rfc3339(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_evidence(results: Sequence[VerificationResult], trust: Trust, inputs: Inputs, *,
                   workloads: dict[str, list[Workload]] | None = None,
                   now: datetime.datetime | None = None) -> dict[str, Any]:
    """The evidence document (see the module docstring). ``now`` is the only non-reproducible input."""
    workloads = workloads or {}
    images = sorted((image_record(r, workloads.get(r.ref, ())) for r in results),
                    key=lambda d: (d["ref"], d["digest"] or ""))
    counts = {s: sum(1 for i in images if i["status"] == s) for s in STATUSES}
    policy_digests = sorted({r.policy_digest for r in results if r.policy_digest})
    policy_digest = policy_digests[0] if len(policy_digests) == 1 else (
        trust.policy.digest if trust.policy is not None else None)
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "schema_version": SCHEMA_VERSION,
        "generated_at": rfc3339(now or datetime.datetime.now(datetime.UTC)),
        "tool": {"name": "airgap", "version": __version__},
        "inputs": inputs.to_json(),
        "trust": {
            "source": trust.source,
            "digest": trust.digest,
            "roots": {n: "sha256:" + hashlib.sha256(d).hexdigest() for n, d in sorted(trust.roots.items())},
            "key_manifest": trust.key_manifest(),
        },
        "policy": {"digest": policy_digest, "source": trust.policy.where if trust.policy is not None else None},
        "summary": {"images": len(images), **counts,
                    "result": "PASSED" if images and not counts["FAIL"] and not counts["ERROR"] else "FAILED"},
        "images": images,
    }


def without_timestamp(doc: dict[str, Any]) -> dict[str, Any]:
    """The evidence minus its one non-reproducible field: equal for equal inputs."""
    return {k: v for k, v in doc.items() if k != "generated_at"}


def dumps(doc: dict[str, Any]) -> bytes:
    """The evidence file's bytes: sorted keys, two-space indent, trailing newline (stable for digests)."""
    return (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def run_audit(verifier: Verifier, inputs: Inputs, *, jobs: int = 8,
              now: datetime.datetime | None = None) -> dict[str, Any]:
    """Verify every target once (through the shared verifier) and build the evidence document."""
    targets = inputs.targets()
    if not targets:
        raise ConfigError("nothing to audit: the inputs name no images")
    ordered = sorted(targets)
    results = verifier.verify_many(ordered, jobs=jobs)
    return build_evidence(results, verifier.trust, inputs, workloads=targets, now=now)
