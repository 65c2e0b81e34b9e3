"""Deploying the webhook: a CA and serving certificate for its Service, and the Kubernetes objects.

``make_certs`` writes ``ca.crt``, ``tls.crt``, ``tls.key`` (ECDSA P-256) for the Service DNS names the
API server uses (``NAME.NS.svc`` and friends). ``render`` prints, as multi-document YAML: Namespace,
ServiceAccount, the trust ConfigMap (keys, trusted roots, policy, map: public material), the TLS Secret,
Deployment (2 replicas, non-root, read-only root FS, resources, probes), Service, PodDisruptionBudget and
the ValidatingWebhookConfiguration (caBundle, failurePolicy Fail, sideEffects None, admissionReviewVersions
[v1], timeoutSeconds, a namespaceSelector exempting its own namespace and kube-system, so the webhook can
always be repaired and the control plane never waits on it).

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


def make_certs(service: str, namespace: str, out: str | Path, *, days: int = 365) -> CertFiles:
    """A fresh CA and a serving certificate for the Service's DNS names, written to ``out``."""
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
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[2])]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
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
    """What ``airgap webhook manifests`` asks for."""

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


def _trust_files(trust_dir: Path) -> list[tuple[str, str, str]]:
    """(ConfigMap key, path under the mount, text) for every file of the trust directory."""
    if not trust_dir.is_dir():
        raise ConfigError(f"trust directory {trust_dir} does not exist")
    out = []
    for path in sorted(p for p in trust_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(trust_dir).as_posix()
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"trust file {path} is not UTF-8 text") from None
        out.append((_KEY_CHARS.sub("-", rel.replace("/", ".")), rel, text))
    if not any(rel == "policy.yaml" for _, rel, _ in out):
        raise ConfigError(f"trust directory {trust_dir} has no policy.yaml: the webhook would deny everything")
    return out


def render(s: Settings) -> list[dict[str, Any]]:
    """The Kubernetes objects, in apply order."""
    _check_name(s.name, "name")
    _check_name(s.namespace, "namespace")
    if not 1 <= s.timeout_seconds <= 30:
        raise ConfigError("--timeout-seconds must be 1..30 (the API server's limit)")
    try:
        ca_pem = (s.certs_dir / "ca.crt").read_bytes()
        tls = {"tls.crt": (s.certs_dir / "tls.crt").read_bytes(), "tls.key": (s.certs_dir / "tls.key").read_bytes()}
    except OSError as exc:
        raise ConfigError(f"{exc.filename}: {exc.strerror} (run `airgap webhook certs` first)") from None
    files = _trust_files(s.trust_dir)
    labels = {"app.kubernetes.io/name": s.name, "app.kubernetes.io/part-of": "airgap"}
    meta = {"name": s.name, "namespace": s.namespace, "labels": labels}
    deadline = max(1.0, s.timeout_seconds - 2.0)
    args = ["webhook", "serve", "--trust", TRUST_MOUNT, "--tls-cert", f"{TLS_MOUNT}/tls.crt",
            "--tls-key", f"{TLS_MOUNT}/tls.key", "--port", str(PORT), "--mode", s.mode, "--deadline", f"{deadline:g}"]
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
        "resources": {"requests": {"cpu": "100m", "memory": MEMORY_REQUEST},
                      "limits": {"cpu": "1", "memory": MEMORY_LIMIT}},
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
                {"name": "tls", "secret": {"secretName": f"{s.name}-tls"}},
                {"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}},
            ],
        },
    }
    webhook = {
        "name": f"{s.name}.{s.namespace}.airgap.dev",
        "clientConfig": {"service": {"name": s.name, "namespace": s.namespace, "path": "/validate", "port": 443},
                         "caBundle": base64.b64encode(ca_pem).decode()},
        "rules": [{"apiGroups": [group], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
                   "resources": list(resources), "scope": "Namespaced"} for group, resources in RULES],
        "failurePolicy": "Fail", "sideEffects": "None", "admissionReviewVersions": ["v1"],
        "timeoutSeconds": s.timeout_seconds, "matchPolicy": "Equivalent",
        "namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn",
                                                    "values": sorted({s.namespace, "kube-system"})}]},
    }
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": s.namespace, "labels": labels}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta, "automountServiceAccountToken": False},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {**meta, "name": f"{s.name}-trust"},
         "data": {k: text for k, _, text in files}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {**meta, "name": f"{s.name}-tls"},
         "type": "kubernetes.io/tls", "data": {k: base64.b64encode(v).decode() for k, v in tls.items()}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
         "spec": {"replicas": s.replicas, "selector": {"matchLabels": labels}, "template": pod,
                  "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": meta,
         "spec": {"selector": labels, "ports": [{"name": "https", "port": 443, "targetPort": "https",
                                                 "protocol": "TCP"}]}},
        {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": meta,
         "spec": {"minAvailable": 1, "selector": {"matchLabels": labels}}},
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
         "metadata": {"name": s.name, "labels": labels}, "webhooks": [webhook]},
    ]


def render_yaml(s: Settings) -> str:
    import yaml

    return yaml.safe_dump_all(render(s), sort_keys=False, explicit_start=True)
