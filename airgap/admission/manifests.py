"""Deploying the webhook: a CA and serving certificate for its Service, the Kubernetes objects, Helm values.

``make_certs`` writes ``ca.crt``, ``tls.crt``, ``tls.key`` (ECDSA P-256) for the Service DNS names the
API server uses (``NAME.NS.svc`` and friends). ``render`` prints, as multi-document YAML: Namespace,
ServiceAccount, the trust ConfigMap (keys, trusted roots, policy, map, a whole site directory: public
material, mapped back to its tree by the volume's items), the TLS Secret (or a Secret of yours),
Deployment (2 replicas, non-root, read-only root FS, resources, probes), Service, PodDisruptionBudget (with
2 replicas or more: minAvailable 1 of 1 would block node drains), then
the MutatingWebhookConfiguration (``/mutate``: pins verified digests) and the ValidatingWebhookConfiguration
(``/validate``), both with caBundle, failurePolicy Fail, sideEffects None, admissionReviewVersions [v1],
timeoutSeconds and the same namespaceSelector: never kube-system, the webhook's own namespace, or a namespace
labelled ``airgap.dev/exclude=true`` (so the webhook can always be repaired and the control plane never
waits on it), and with opt-in only namespaces labelled ``airgap.dev/include=true``.

``helm_values`` gives the values for ``charts/airgap-webhook`` that make the chart render exactly the same
objects (the chart's templates are the second spelling of ``render``; tests/integration/test_webhook_chart.py
renders both with the real Helm and compares them object by object).

The container's memory limit (:data:`MEMORY_LIMIT`) is not a guess: :func:`memory_budget` adds up the worst
case of every bound the webhook enforces (connections, buffered bodies, the one large body being parsed,
concurrent verifications with their per-image budget, caches) over the measured baseline, and the
unit tests keep that sum under the limit for the default configuration. Raising a bound (say
``--max-connections``) means raising the limit by what :func:`memory_budget` says.
"""

from __future__ import annotations

import base64
import datetime
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airgap.errors import ConfigError
from airgap.fileio import write_atomic

PORT = 8443
MiB = 1024 * 1024
MEMORY_LIMIT = "512Mi"
MEMORY_REQUEST = "128Mi"
# Measured on CPython 3.11 / uvloop 0.23 / OpenSSL 3 (tests/integration/test_webhook_memory.py re-measures the whole):
BASELINE_BYTES = 80 * MiB  # the process with sigstore, CEL and a trust directory loaded (70 MB measured)
CONNECTION_BYTES = 56 * 1024  # a TLS connection mid-handshake (the costliest phase; ~30 KiB once up)
DECISION_BYTES = 1024  # one cached per-image decision
TAG_WINDOW_BYTES = 512  # one tag window entry, its strings counted unshared (470 bytes measured)
TRUST_MOUNT = "/etc/airgap/trust"
TLS_MOUNT = "/etc/airgap/tls"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_KEY_CHARS = re.compile(r"[^-._a-zA-Z0-9]")
RULES = (
    ("", ("pods", "pods/ephemeralcontainers", "replicationcontrollers")),
    ("apps", ("deployments", "replicasets", "statefulsets", "daemonsets")),
    ("batch", ("jobs", "cronjobs")),
)


def memory_budget(config: Any = None) -> dict[str, int]:
    """Worst-case bytes of each part of a webhook process under ``config`` (a WebhookConfig; the defaults
    when None), all at once, and their ``total``: every connection mid-handshake, the body buffer full,
    the largest hostile body being parsed, every verification slot holding its whole per-image budget
    plus the largest manifest and a blob being joined, and both caches full."""
    from airgap.admission.budget import (
        JSON_OBJECT_FACTOR,
        MANIFEST_OBJECT_FACTOR,
        WEBHOOK_CACHE_BYTES,
        webhook_limits,
        worst_verification_bytes,
    )
    from airgap.admission.service import PARSE_INLINE_MAX, REF_CACHE_SIZE, WebhookConfig
    from airgap.config import Limits

    cfg = config or WebhookConfig(trust_dir="")
    limits = webhook_limits(cfg.registry.limits if cfg.registry is not None else Limits(), cfg.deadline)
    parts = {
        "baseline": BASELINE_BYTES,
        "connections": cfg.max_connections * CONNECTION_BYTES,
        "buffered_bodies": cfg.max_buffered_bytes,
        # One large body in the parser thread and one small one on the event loop, at most, at a time.
        "parsing": (cfg.max_body + PARSE_INLINE_MAX) * JSON_OBJECT_FACTOR,
        "verifications": cfg.max_verifications * worst_verification_bytes(cfg.max_signature_bytes, limits),
        # The registry client's content cache may be all parsed manifests; decisions, the tag window (as many
        # entries) and parsed references.
        "caches": WEBHOOK_CACHE_BYTES * MANIFEST_OBJECT_FACTOR + (cfg.cache_size + REF_CACHE_SIZE) * DECISION_BYTES
        + cfg.cache_size * TAG_WINDOW_BYTES,
    }
    parts["total"] = sum(parts.values())
    return parts


def _check_name(value: str, what: str) -> str:
    if not _DNS_LABEL.match(value):
        raise ConfigError(f"{what} {value!r} is not a valid Kubernetes name (lowercase letters, digits, '-')")
    return value


def service_names(service: str, namespace: str) -> list[str]:
    return [service, f"{service}.{namespace}", f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.cluster.local"]


@dataclass(frozen=True)
class CertFiles:
    ca: Path
    cert: Path
    key: Path


def make_certs(service: str, namespace: str, out: str | Path, *, days: int = 365, ips: Sequence[str] = ()
               ) -> CertFiles:
    """A fresh CA and a serving certificate for the Service's DNS names (and ``ips``, for an API server that
    reaches the webhook by ``clientConfig.url`` at an address), written to ``out``."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    _check_name(service, "service")
    _check_name(namespace, "namespace")
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"airgap webhook CA ({namespace}/{service})")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=days))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    names = service_names(service, namespace)
    try:
        addresses = [ipaddress.ip_address(ip) for ip in ips]
    except ValueError as exc:
        raise ConfigError(f"--ip: {exc}") from None
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    sans += [x509.IPAddress(a) for a in addresses]
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[2])]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    directory = Path(out)
    directory.mkdir(parents=True, exist_ok=True)
    files = CertFiles(directory / "ca.crt", directory / "tls.crt", directory / "tls.key")
    write_atomic(files.ca, ca.public_bytes(serialization.Encoding.PEM), mode=0o644)
    write_atomic(files.cert, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    write_atomic(files.key, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()), mode=0o600)
    return files


@dataclass
class Settings:
    """What ``airgap webhook manifests`` (and ``webhook values``, for the Helm chart) asks for."""

    image: str
    trust_dir: Path
    certs_dir: Path
    name: str = "airgap-webhook"
    namespace: str = "airgap-system"
    mode: str = "enforce"
    timeout_seconds: int = 10
    replicas: int = 2
    aliases: tuple[str, ...] = ()
    extra_args: tuple[str, ...] = field(default=())
    tag_reuse_window: float = 3.0  # the mutating webhook's tag window (WebhookConfig.tag_reuse_window)
    opt_in: bool = False  # only namespaces labelled airgap.dev/include=true are reviewed
    exclude_namespaces: tuple[str, ...] = ()  # never reviewed, besides kube-system and the webhook's own
    namespace_object: bool = True  # render the Namespace (off for `helm install --create-namespace`)
    tls_secret: str = ""  # an existing kubernetes.io/tls Secret to mount instead of rendering one


INCLUDE_LABEL = "airgap.dev/include"
EXCLUDE_LABEL = "airgap.dev/exclude"
RESOURCES = {"requests": {"cpu": "100m", "memory": MEMORY_REQUEST}, "limits": {"cpu": "1", "memory": MEMORY_LIMIT}}
# A ConfigMap holds at most 1 MiB (etcd's object limit is 1.5 MiB); its keys are at most 253 characters.
CONFIGMAP_MAX_BYTES = 1024 * 1024
CONFIGMAP_MAX_KEY = 253


def default_image(trust_dir: Path) -> str:
    """The airgap image to run when ``--image`` is not given: the one ``airgap load`` recorded in the trust
    directory or site (the bundle carried airgap's own image, see :mod:`airgap.bundle.selfcarry`)."""
    from airgap.bundle.selfcarry import TRUST_FILE, recorded_image

    image = recorded_image(trust_dir)
    if image is None:
        raise ConfigError(f"no --image given, and {trust_dir} records no airgap image (it has no {TRUST_FILE} and "
                          "is not a site that loaded one): pass --image, or load a bundle whose spec names "
                          "airgap.image with --trust-out or --site")
    return image


def _trust_files(trust_dir: Path) -> list[tuple[str, str, str]]:
    """(ConfigMap key, path under the mount, text) for every file of the trust directory.

    ConfigMap keys cannot contain '/': a file's key is its relative path with '/' as '.' and any other character
    a key cannot hold as '-', and the Deployment's volume maps each key back to its path (``items``), so a
    site directory (``site.json``, ``bundles/<name>-<digest>/...``) arrives as the same tree."""
    if not trust_dir.is_dir():
        raise ConfigError(f"trust directory {trust_dir} does not exist")
    from airgap.site.state import LOCK_FILE
    from airgap.verification.scopes import is_site

    site = is_site(trust_dir)
    out = []
    # In the order of their paths as strings: the chart sorts them the same way (sortAlpha).
    for path in sorted((p for p in trust_dir.rglob("*") if p.is_file()),
                       key=lambda p: p.relative_to(trust_dir).as_posix()):
        rel = path.relative_to(trust_dir).as_posix()
        if site and rel == LOCK_FILE:
            continue  # the site's writer lock: nothing the webhook reads
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"trust file {path} is not UTF-8 text") from None
        out.append((configmap_key(rel), rel, text))
    if not site and not any(rel == "policy.yaml" for _, rel, _ in out):  # a site's bundles bring their policies
        raise ConfigError(f"trust directory {trust_dir} has no policy.yaml: the webhook would deny everything")
    seen: dict[str, str] = {}
    for key, rel, _ in out:
        if key in seen:
            raise ConfigError(f"trust files {seen[key]} and {rel} would share the ConfigMap key {key}: rename one")
        if len(key) > CONFIGMAP_MAX_KEY:
            raise ConfigError(f"trust file {rel}: its ConfigMap key is over {CONFIGMAP_MAX_KEY} characters")
        seen[key] = rel
    size = sum(len(key) + len(text.encode()) for key, _, text in out)
    if size > CONFIGMAP_MAX_BYTES:
        raise ConfigError(f"trust directory {trust_dir} is {size} bytes: over the {CONFIGMAP_MAX_BYTES}-byte limit "
                          f"of a ConfigMap")
    return out


def configmap_key(rel: str) -> str:
    """The ConfigMap key of a trust file at ``rel`` (the chart computes the same, see _helpers.tpl)."""
    return _KEY_CHARS.sub("-", rel.replace("/", "."))


def namespace_selector(s: Settings) -> dict[str, Any]:
    """Which namespaces both webhooks review: never kube-system, the webhook's own namespace or any excluded
    one (by name: a label could be removed by whoever may edit the namespace, the name cannot), never a
    namespace labelled ``airgap.dev/exclude=true``, and with ``opt_in`` only those labelled
    ``airgap.dev/include=true``."""
    for ns in s.exclude_namespaces:
        _check_name(ns, "excluded namespace")
    expressions: list[dict[str, Any]] = [
        {"key": "kubernetes.io/metadata.name", "operator": "NotIn",
         "values": sorted({s.namespace, "kube-system", *s.exclude_namespaces})},
        {"key": EXCLUDE_LABEL, "operator": "NotIn", "values": ["true"]},
    ]
    if s.opt_in:
        expressions.append({"key": INCLUDE_LABEL, "operator": "In", "values": ["true"]})
    return {"matchExpressions": expressions}


def number(value: float) -> str:
    """A number as an argument, as Helm prints it: ``3``, ``2.5``."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _check(s: Settings) -> None:
    _check_name(s.name, "name")
    _check_name(s.namespace, "namespace")
    if s.tls_secret:
        _check_name(s.tls_secret, "TLS secret")
    if s.mode not in ("enforce", "warn", "audit"):
        raise ConfigError(f"mode {s.mode!r} is not enforce, warn or audit")
    if not 1 <= s.timeout_seconds <= 30:
        raise ConfigError("--timeout-seconds must be 1..30 (the API server's limit)")
    if not 0 <= s.tag_reuse_window <= 60:
        raise ConfigError("--tag-reuse-window must be 0..60 seconds")
    if not s.image or any(c.isspace() for c in s.image):
        raise ConfigError(f"image {s.image!r} is not an image reference")


def render(s: Settings) -> list[dict[str, Any]]:
    """The Kubernetes objects, in apply order (the mutating webhook's configuration before the validating
    one: the API server calls every mutating webhook before any validating one)."""
    _check(s)
    try:
        ca_pem = (s.certs_dir / "ca.crt").read_bytes()
        tls = {} if s.tls_secret else {"tls.crt": (s.certs_dir / "tls.crt").read_bytes(),
                                        "tls.key": (s.certs_dir / "tls.key").read_bytes()}
    except OSError as exc:
        raise ConfigError(f"{exc.filename}: {exc.strerror} (run `airgap webhook certs` first)") from None
    files = _trust_files(s.trust_dir)
    labels = {"app.kubernetes.io/name": s.name, "app.kubernetes.io/part-of": "airgap"}
    meta = {"name": s.name, "namespace": s.namespace, "labels": labels}
    deadline = max(1.0, s.timeout_seconds - 2.0)
    args = ["webhook", "serve", "--trust", TRUST_MOUNT, "--tls-cert", f"{TLS_MOUNT}/tls.crt",
            "--tls-key", f"{TLS_MOUNT}/tls.key", "--port", str(PORT), "--mode", s.mode, "--deadline", f"{deadline:g}",
            "--tag-reuse-window", number(s.tag_reuse_window)]
    for alias in s.aliases:
        args += ["--registry-alias", alias]
    args += list(s.extra_args)
    container = {
        "name": "webhook", "image": s.image, "imagePullPolicy": "IfNotPresent", "args": args,
        # Two malloc arenas instead of 8 per core: the worker threads' arenas fragment the memory budget.
        "env": [{"name": "MALLOC_ARENA_MAX", "value": "2"}],
        "ports": [{"name": "https", "containerPort": PORT, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "https", "scheme": "HTTPS"}, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "https", "scheme": "HTTPS"}, "periodSeconds": 10},
        "resources": RESOURCES,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
                            "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}},
        "volumeMounts": [{"name": "trust", "mountPath": TRUST_MOUNT, "readOnly": True},
                         {"name": "tls", "mountPath": TLS_MOUNT, "readOnly": True},
                         {"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108 - an emptyDir, not the host's /tmp
    }
    pod = {
        "metadata": {"labels": labels},
        "spec": {
            "serviceAccountName": s.name, "automountServiceAccountToken": False,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "fsGroup": 65532,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [container],
            "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                           "whenUnsatisfiable": "ScheduleAnyway",
                                           "labelSelector": {"matchLabels": labels}}],
            "volumes": [
                {"name": "trust", "configMap": {"name": f"{s.name}-trust",
                                                "items": [{"key": k, "path": p} for k, p, _ in files]}},
                {"name": "tls", "secret": {"secretName": s.tls_secret or f"{s.name}-tls"}},
                {"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}},
            ],
        },
    }
    ca_bundle = base64.b64encode(ca_pem).decode()
    selector = namespace_selector(s)

    def hook(name: str, path: str) -> dict[str, Any]:
        return {
            "name": name,
            "clientConfig": {"service": {"name": s.name, "namespace": s.namespace, "path": path, "port": 443},
                             "caBundle": ca_bundle},
            "rules": [{"apiGroups": [group], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
                       "resources": list(resources), "scope": "Namespaced"} for group, resources in RULES],
            "failurePolicy": "Fail", "sideEffects": "None", "admissionReviewVersions": ["v1"],
            "timeoutSeconds": s.timeout_seconds, "matchPolicy": "Equivalent", "namespaceSelector": selector,
        }

    # Called again when a later mutating webhook changes the object (e.g. injects a sidecar by tag).
    mutating = {**hook(f"pin.{s.name}.{s.namespace}.airgap.dev", "/mutate"), "reinvocationPolicy": "IfNeeded"}
    validating = hook(f"{s.name}.{s.namespace}.airgap.dev", "/validate")
    objects: list[dict[str, Any]] = []
    if s.namespace_object:
        objects.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": s.namespace, "labels": labels}})
    objects += [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta, "automountServiceAccountToken": False},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {**meta, "name": f"{s.name}-trust"},
         "data": {k: text for k, _, text in files}},
    ]
    if not s.tls_secret:
        objects.append({"apiVersion": "v1", "kind": "Secret", "metadata": {**meta, "name": f"{s.name}-tls"},
                        "type": "kubernetes.io/tls",
                        "data": {k: base64.b64encode(v).decode() for k, v in tls.items()}})
    objects += [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
         "spec": {"replicas": s.replicas, "selector": {"matchLabels": labels}, "template": pod,
                  "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": meta,
         "spec": {"selector": labels, "ports": [{"name": "https", "port": 443, "targetPort": "https",
                                                 "protocol": "TCP"}]}},
    ]
    if s.replicas > 1:  # minAvailable 1 of 1 replica would block every node drain for good
        objects.append({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": meta,
                        "spec": {"minAvailable": 1, "selector": {"matchLabels": labels}}})
    objects += [
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
         "metadata": {"name": s.name, "labels": labels}, "webhooks": [mutating]},
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
         "metadata": {"name": s.name, "labels": labels}, "webhooks": [validating]},
    ]
    return objects


def render_yaml(s: Settings) -> str:
    import yaml

    return yaml.safe_dump_all(render(s), sort_keys=False, explicit_start=True)


def split_image(image: str) -> dict[str, str]:
    """``repository``, ``tag`` and ``digest`` of an image reference as written (the chart's ``image`` values);
    the chart joins them back to the same text."""
    rest, _, digest = image.partition("@")
    slash, colon = rest.rfind("/"), rest.rfind(":")
    repository, tag = (rest[:colon], rest[colon + 1:]) if colon > slash else (rest, "")
    return {"repository": repository, "tag": tag, "digest": digest}


def helm_values(s: Settings) -> dict[str, Any]:
    """Values for ``charts/airgap-webhook`` that render the same objects as :func:`render` does for ``s``
    (``helm template NAME CHART --namespace NS -f values.yaml`` with ``s.namespace`` as NS)."""
    _check(s)
    files = _trust_files(s.trust_dir)
    try:
        # Bytes as they are (no newline translation): the chart base64-encodes this text for the Secret.
        tls = {"existingSecret": s.tls_secret, "ca": (s.certs_dir / "ca.crt").read_bytes().decode()}
        if not s.tls_secret:
            tls |= {"crt": (s.certs_dir / "tls.crt").read_bytes().decode(),
                    "key": (s.certs_dir / "tls.key").read_bytes().decode()}
    except OSError as exc:
        raise ConfigError(f"{exc.filename}: {exc.strerror} (run `airgap webhook certs` first)") from None
    except UnicodeDecodeError:
        raise ConfigError(f"the certificates in {s.certs_dir} are not PEM text") from None
    return {
        "name": s.name, "createNamespace": s.namespace_object, "mode": s.mode, "replicas": s.replicas,
        "timeoutSeconds": s.timeout_seconds, "tagReuseWindow": s.tag_reuse_window,
        "image": {**split_image(s.image), "pullPolicy": "IfNotPresent"},
        "resources": RESOURCES,
        "namespaceSelector": {"optIn": s.opt_in, "excludeNamespaces": list(s.exclude_namespaces)},
        "registryAliases": list(s.aliases), "extraArgs": list(s.extra_args),
        "trust": {"files": [{"path": rel, "content": text} for _, rel, text in files]},
        "tls": tls,
    }


def render_values_yaml(s: Settings) -> str:
    """:func:`helm_values` as YAML, multi-line texts (PEM, policies) as literal blocks."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
        block = "\n" in value and not any(c in value for c in "\r\t") and value == value.rstrip(" ")
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if block else None)

    Dumper.add_representer(str, text)
    header = (f"# Helm values for charts/airgap-webhook, written by `airgap webhook values`:\n"
              f"#   helm install {s.name} charts/airgap-webhook --namespace {s.namespace} -f THIS_FILE\n")
    return header + yaml.dump(helm_values(s), Dumper=Dumper, sort_keys=False)
