"""Property-based fuzzing of every parser of untrusted input: targets (a parser and a Hypothesis strategy of
inputs for it) shared by tests/fuzz/test_fuzz_parsers.py (a few hundred inputs each, in every test run) and
scripts/fuzz_parsers.py (10,000 each, a table of results).

The invariant, for every target: only :class:`airgap.errors.Error` ever escapes the parser (or it returns a
documented non-exception result, such as an ``Outcome`` with ``ok=False``), and each input takes under a
second. Inputs are structured, not only random bytes: real, valid documents (manifests, signed payloads,
sigstore bundles, trusted roots, bundles, policies, reviews, keys...) mutated at the document level (a value
replaced by one of another type, a field dropped or added, a duplicated key, a huge number, odd unicode, a
subtree nested thousands deep) and then at the byte level (truncated, flipped, spliced).
"""

from __future__ import annotations

import base64
import copy
import functools
import hashlib
import io
import json
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DIGEST = "sha256:" + "ab" * 32
IMAGE = "127.0.0.1:5000/team/app"
MANIFEST_TYPES = ("application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.index.v1+json",
                  "application/vnd.docker.distribution.manifest.v2+json",
                  "application/vnd.docker.distribution.manifest.list.v2+json")


@dataclass(frozen=True)
class Target:
    """One parser under fuzz: ``run(input)`` returns, or raises airgap's Error; anything else is a bug."""

    name: str
    strategy: st.SearchStrategy[Any]
    run: Callable[[Any], object]
    seed: Any  # a valid input the parser accepts: what the strategies mutate (and a warm-up)


# ---- values ---------------------------------------------------------------------------------------

ODD_TEXT = st.sampled_from([
    "", " ", "\x00", "\x7f", "\u0085", "\u2028", "\u202e", "\ufeff", "\U0001f600", "é", "ｆｕｌｌ", "a" * 300,
    "sha256:" + "0" * 64, "sha256-" + "0" * 64 + ".sig", "../../etc/passwd", "/", "-", "@", ":", "*", "**",
    "true", "null", "0x1", "1e999", "-0", "NaN", "{}", "[]", "${x}", "%s", "<script>", "'\"", "\\", "\n\t\r",
    IMAGE, IMAGE + ":1", IMAGE + "@" + DIGEST, "linux/amd64", "docker.io/library/nginx", "https://x.example",
])
TEXT = st.one_of(st.text(max_size=40), ODD_TEXT)
INTEGERS = st.one_of(st.integers(-(2**70), 2**70), st.sampled_from([0, -1, 1, 2**31, 2**63, 2**64, -(2**63) - 1,
                                                                    10**300]))
SCALARS = st.one_of(st.none(), st.booleans(), INTEGERS, st.floats(allow_nan=False, allow_infinity=False), TEXT)
JSON = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                     st.dictionaries(TEXT, inner, max_size=4)), max_leaves=12)


class Raw:
    """Text emitted verbatim where a JSON value goes: what json.dumps cannot write."""

    def __init__(self, text: str) -> None:
        self.text = text


class Dup(dict):  # type: ignore[type-arg]
    """An object that is serialized with one key twice (``extra`` holds the second value)."""

    def __init__(self, base: dict[str, Any], key: str, extra: Any) -> None:
        super().__init__(base)
        self.key, self.extra = key, extra


RAW = st.one_of(
    st.sampled_from(["9" * 5000, "-" + "9" * 4301, "1e999999", "-0", "1E400", "0.0000000000000000000000001e-400",
                     "NaN", "Infinity", '"\\ud800"', '"\\udc00x"', '"\\u0000"', '"\\uDBFF\\uDFFF"', "[]", "{}",
                     '"' + "x" * 70_000 + '"']),
    st.sampled_from([50, 99, 100, 101, 999, 5_000, 100_000]).map(lambda n: "[" * n + "]" * n),
    st.sampled_from([99, 101, 3_000]).map(lambda n: '{"a":' * n + "1" + "}" * n),
)


def encode(value: Any, *, pretty: bool = False) -> str:
    """JSON text of ``value``, writing :class:`Raw` verbatim and :class:`Dup` with its key twice."""
    sep = ", " if pretty else ","
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        pairs = [f"{json.dumps(k)}:{encode(v, pretty=pretty)}" for k, v in value.items()]
        if isinstance(value, Dup):
            pairs.append(f"{json.dumps(value.key)}:{encode(value.extra, pretty=pretty)}")
        return "{" + sep.join(pairs) + "}"
    if isinstance(value, list):
        return "[" + sep.join(encode(v, pretty=pretty) for v in value) + "]"
    return json.dumps(value)


def _slots(doc: Any) -> list[tuple[Any, Any]]:
    """Every (container, key/index) position of ``doc``, iteratively."""
    out: list[tuple[Any, Any]] = []
    todo = [doc]
    while todo:
        item = todo.pop()
        if isinstance(item, dict):
            for k, v in item.items():
                out.append((item, k))
                todo.append(v)
        elif isinstance(item, list):
            for i, v in enumerate(item):
                out.append((item, i))
                todo.append(v)
    return out


@st.composite
def mutated(draw: st.DrawFn, seeds: list[Any], keys: tuple[str, ...] = ()) -> Any:
    """A seed document with up to four structural mutations (replace, retype, delete, add, duplicate key,
    raw text such as huge numbers, unpaired surrogates or deep nesting)."""
    doc = copy.deepcopy(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 4))):
        slots = _slots(doc)
        if not slots:
            doc = draw(JSON)
            continue
        parent, key = draw(st.sampled_from(slots))
        op = draw(st.sampled_from(["replace", "replace", "raw", "delete", "add", "dup", "wrap"]))
        if op == "replace":
            parent[key] = draw(JSON)
        elif op == "raw":
            parent[key] = Raw(draw(RAW))
        elif op == "delete":
            del parent[key]
        elif op == "add" and isinstance(parent, dict):
            parent[draw(st.one_of(st.sampled_from(keys or ("x",)), TEXT))] = draw(JSON)
        elif op == "add":
            parent.insert(key, draw(JSON))
        elif op == "dup" and isinstance(parent, dict):
            value = parent[key]
            parent[key] = Dup(value, next(iter(value)), draw(JSON)) if isinstance(value, dict) and value \
                else value
            if parent is not doc and not isinstance(parent[key], Dup):
                continue
        elif op == "wrap":
            parent[key] = [parent[key]] if draw(st.booleans()) else {"x": parent[key]}
    if isinstance(doc, dict) and doc and draw(st.integers(0, 5)) == 0:
        doc = Dup(doc, draw(st.sampled_from(sorted(doc))), draw(JSON))
    return doc


@st.composite
def byte_noise(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` possibly truncated, with bytes flipped, inserted or a slice repeated."""
    for _ in range(draw(st.integers(0, 2))):
        if not data:
            return draw(st.binary(max_size=64))
        op = draw(st.sampled_from(["truncate", "flip", "insert", "repeat"]))
        at = draw(st.integers(0, len(data)))
        if op == "truncate":
            data = data[:at]
        elif op == "flip" and at < len(data):
            data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1:]
        elif op == "insert":
            data = data[:at] + draw(st.binary(max_size=8) | st.sampled_from([b"\x00", b"\xff", b'"', b"\\", b"{",
                                                                             b"[", b"\xef\xbb\xbf"])) + data[at:]
        else:
            end = draw(st.integers(at, min(len(data), at + 64)))
            data = data[:end] + data[at:end] + data[end:]
    return data


def json_bytes(docs: st.SearchStrategy[Any], *, noise: bool = True) -> st.SearchStrategy[bytes]:
    """Documents from ``docs`` as JSON bytes (compact or spaced), sometimes with byte-level noise, sometimes
    as random bytes altogether."""
    encoded = st.tuples(docs, st.booleans()).map(lambda d: encode(d[0], pretty=d[1]).encode("utf-8", "surrogatepass"))
    if noise:
        encoded = encoded.flatmap(lambda data: st.one_of(st.just(data), byte_noise(data)))
    return st.one_of(encoded, encoded, encoded, st.binary(max_size=200))


# ---- YAML -----------------------------------------------------------------------------------------

YAML_NOISE = st.sampled_from([
    "- " * 150 + "x\n", "[" * 150 + "]" * 150 + "\n", "a: &a [1, *a]\n", "a: *undefined\n", "&x a: 1\n",
    "a0: &a0 [1, 2, 3, 4, 5, 6, 7, 8, 9]\n" + "".join(
        f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]\n" for i in range(1, 8)),
    "b: &b {x: 1}\nc: {<<: *b, x: 2}\n", "d: {<<: [*b, *b]}\n", "e: {<<: 1}\n", "!!set {a, b}\n", "!!binary aGk=\n",
    "!!python/object:os.system {}\n", "!custom x\n", "? [1]\n: 2\n", "t: 2024-02-30\n", "n: 1" + "0" * 5000 + "\n",
    "\t- x\n", "a: \"\\ud800\"\n", "a: |\n  x\n b\n", "--- !!map\n", "%YAML 1.1\n---\n", "a: 1\na: 2\n", "...\n",
    "\x00\n", "a: \x85\n", "spec:\n  noMatchPolicy: deny\n  noMatchPolicy: allow\n", "? ? ? a\n",
])


@st.composite
def yaml_text(draw: st.DrawFn, seeds: list[str]) -> str:
    """A seed YAML text, re-dumped after structural mutations or edited line by line, plus YAML's own hazards
    (aliases, merges, tags, deep nesting, duplicate keys)."""
    text = draw(st.sampled_from(seeds))
    how = draw(st.sampled_from(["dump", "lines", "noise", "as is"]))
    if how == "dump":
        docs = [d for d in yaml.safe_load_all(text)]
        docs = [_plain(draw(mutated([d]))) if d is not None else None for d in docs]
        text = yaml.safe_dump_all(docs, sort_keys=False)
    elif how == "lines":
        lines = text.splitlines(keepends=True)
        for _ in range(draw(st.integers(1, 3))):
            if not lines:
                break
            i = draw(st.integers(0, len(lines) - 1))
            op = draw(st.sampled_from(["repeat", "delete", "indent", "dedent", "replace"]))
            if op == "repeat":
                lines.insert(i, lines[i])
            elif op == "delete":
                del lines[i]
            elif op == "indent":
                lines[i] = "  " + lines[i]
            elif op == "dedent":
                lines[i] = lines[i][2:]
            else:
                lines[i] = draw(st.text(max_size=30)) + "\n"
        text = "".join(lines)
    elif how == "noise":
        lines = text.splitlines(keepends=True)
        at = draw(st.integers(0, len(lines)))
        text = "".join(lines[:at]) + draw(YAML_NOISE) + "".join(lines[at:])
    return text


def _plain(doc: Any) -> Any:
    """A mutated document without the JSON-only markers (YAML dumps plain values)."""
    if isinstance(doc, Raw):
        return doc.text[:100]
    if isinstance(doc, dict):
        return {str(k): _plain(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_plain(v) for v in doc]
    return doc


# ---- the material the seeds are made of (built once, lazily) -------------------------------------

@functools.cache
def material() -> dict[str, Any]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    from airgap.checks import cosign
    from airgap.keys.private import KeySigner
    from airgap.keys.public import public_pem
    from airgap.signing.bundles import build_bundle
    from support.minisigstore import MiniSigstore

    key = ec.generate_private_key(ec.SECP256R1())
    signer = KeySigner(key)
    sigstore = MiniSigstore()
    who = sigstore.issue("ci@example.com", "https://issuer.example")
    payload = cosign.simple_signing_payload(IMAGE, DIGEST, {"k": "v"})
    statement = cosign.statement(IMAGE, DIGEST, "https://slsa.dev/provenance/v0.2",
                                 {"builder": {"id": "x"}, "materials": [{"uri": "git+https://x", "digest": {}}]})
    envelope = cosign.Envelope(cosign.DSSE_PAYLOAD_TYPE_INTOTO, statement,
                               (("", signer.sign(cosign.pae(cosign.DSSE_PAYLOAD_TYPE_INTOTO, statement))),))
    legacy = sigstore.legacy_signature(IMAGE, DIGEST, who)
    attestation = sigstore.legacy_attestation(IMAGE, DIGEST, who)
    pems = [public_pem(key.public_key()), public_pem(rsa.generate_private_key(65537, 2048).public_key()),
            public_pem(ed25519.Ed25519PrivateKey.generate().public_key()), who.cert_pem]
    private = [key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption()),
               key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                 serialization.NoEncryption()),
               _cosign_encrypted(key, b"pw")]
    return {
        "signer": signer, "sigstore": sigstore, "who": who, "payload": payload, "statement": statement,
        "envelope": envelope.to_json(), "legacy": legacy, "attestation": attestation, "pems": pems,
        "private": private,
        "key_bundle": json.loads(build_bundle(signer, IMAGE, DIGEST)),
        "keyless_bundle": json.loads(sigstore.image_bundle(DIGEST, who)),
        "message_bundle": json.loads(sigstore.bundle(DIGEST, who)),
        "root": sigstore.trusted_root(),
        "set": json.loads(legacy.annotations[cosign.ANN_BUNDLE]),
        "tsa": _timestamps(legacy.signature),
    }


def _cosign_encrypted(key: Any, password: bytes) -> bytes:
    """cosign's encrypted key format with a cheap scrypt N (the fuzzer decrypts it thousands of times)."""
    import nacl.secret
    from cryptography.hazmat.primitives import serialization

    from airgap.keys.pem import pem_encode
    from airgap.keys.private import _scrypt

    salt, nonce = b"s" * 32, b"n" * nacl.secret.SecretBox.NONCE_SIZE
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    sealed = nacl.secret.SecretBox(_scrypt(password, salt, 16, 8, 1)).encrypt(der, nonce).ciphertext
    b64 = base64.b64encode
    doc = {"kdf": {"name": "scrypt", "params": {"N": 16, "r": 8, "p": 1}, "salt": b64(salt).decode()},
           "cipher": {"name": "nacl/secretbox", "nonce": b64(nonce).decode()}, "ciphertext": b64(sealed).decode()}
    return pem_encode("ENCRYPTED SIGSTORE PRIVATE KEY", json.dumps(doc).encode())


def _timestamps(signature: bytes) -> dict[str, Any]:
    """An RFC 3161 annotation over ``signature`` from the openssl test TSA, and a root that trusts it (None
    when openssl is not installed: the TSA targets then only fuzz the annotation's shape)."""
    import shutil

    if shutil.which("openssl") is None:
        return {"annotation": {"SignedRFC3161Timestamp": base64.b64encode(b"\x30\x03\x02\x01\x00").decode()},
                "root": None}
    from support.minitsa import MiniTSA, add_tsa

    tsa = MiniTSA(Path(tempfile.mkdtemp(prefix="fuzz-tsa-")))
    response = tsa.timestamp(signature)
    return {"annotation": {"SignedRFC3161Timestamp": base64.b64encode(response).decode()},
            "root": add_tsa(material_root_only(), tsa)}


@functools.cache
def material_root_only() -> dict[str, Any]:
    from support.minisigstore import MiniSigstore

    return MiniSigstore().trusted_root()


@functools.cache
def bundle_material() -> Any:
    from support.bundles import make_bundle

    return make_bundle(Path(tempfile.mkdtemp(prefix="fuzz-bundle-")))


@functools.cache
def spec_dir() -> Path:
    """A directory with a key and a policy file, for bundle specs to name."""
    from airgap.keys.public import public_pem

    path = Path(tempfile.mkdtemp(prefix="fuzz-spec-"))
    (path / "keys").mkdir()
    (path / "keys" / "release.pub").write_bytes(public_pem(material()["signer"].public_key))
    (path / "cip.yaml").write_text(POLICY_SEEDS[0].split("---")[0])
    return path


# ---- seeds ----------------------------------------------------------------------------------------

def _descriptor(media_type: str = "application/vnd.oci.image.layer.v1.tar+gzip", **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": DIGEST, "size": 1234, **extra}


MANIFEST_SEEDS: list[Any] = [
    {"schemaVersion": 2, "mediaType": MANIFEST_TYPES[0],
     "config": _descriptor("application/vnd.oci.image.config.v1+json"),
     "layers": [_descriptor(), _descriptor(annotations={"org.opencontainers.image.title": "x"})],
     "annotations": {"a": "b"}},
    {"schemaVersion": 2, "mediaType": MANIFEST_TYPES[1], "manifests": [
        _descriptor(MANIFEST_TYPES[0], platform={"os": "linux", "architecture": "amd64"}),
        _descriptor(MANIFEST_TYPES[0], platform={"os": "linux", "architecture": "arm64", "variant": "v8"})]},
    {"schemaVersion": 2, "mediaType": MANIFEST_TYPES[2], "config": _descriptor(
        "application/vnd.docker.container.image.v1+json"), "layers": [_descriptor(
            "application/vnd.docker.image.rootfs.diff.tar.gzip")]},
    {"schemaVersion": 2, "mediaType": MANIFEST_TYPES[0],
     "artifactType": "application/vnd.dev.sigstore.bundle.v0.3+json",
     "config": _descriptor("application/vnd.oci.empty.v1+json"), "layers": [_descriptor(
         "application/vnd.dev.sigstore.bundle.v0.3+json")], "subject": _descriptor(MANIFEST_TYPES[1])},
]

POLICY_SEEDS = [
    """apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata: {name: team}
spec:
  images: [{glob: "127.0.0.1:5000/team/**"}]
  authorities:
    - name: release
      key: {name: release}
      ctlog: {disabled: true}
    - name: ci
      keyless:
        identities: [{issuer: "https://issuer.example", subjectRegExp: ".*@example.com"}]
      attestations:
        - name: prov
          predicateType: slsaprovenance
          policy: {type: cel, data: "predicate.builder.id == 'x'"}
      rfc3161timestamp: {trustRootRef: default}
  match: {authorities: 1}
  mode: warn
  dockerReference: strict
---
apiVersion: airgap.dev/v1alpha1
kind: AirgapPolicy
metadata: {name: settings}
spec:
  noMatchPolicy: warn
  allow: ["127.0.0.1:5000/tools/**"]
  approvedRegistries: ["127.0.0.1:5000"]
  mode: enforce
""",
    """apiVersion: v1
kind: List
items:
  - apiVersion: policy.sigstore.dev/v1alpha1
    kind: ClusterImagePolicy
    metadata: {name: one}
    spec:
      images: [{glob: "**"}]
      authorities: [{static: {action: pass}}, {key: {secretRef: {name: release}}}]
""",
]

SPEC_SEEDS = ["""apiVersion: airgap/v1
kind: Bundle
metadata: {name: demo, version: 1.0.0}
created: 2024-01-01T00:00:00Z
images:
  - 127.0.0.1:5000/team/app0:1.0
  - ref: quay.io/keycloak/keycloak:21.1.2
    platforms: [linux/amd64]
keys:
  - {name: release, path: keys/release.pub}
trustedRoots: [public-good]
policies:
  - name: inline
    images: [{glob: "127.0.0.1:5000/team/**"}]
    authorities: [{key: {name: release}, ctlog: {disabled: true}}]
policyFiles: [cip.yaml]
noMatchPolicy: deny
allow: ["127.0.0.1:5000/tools/**"]
"""]


def _review(kind: str = "Pod") -> dict[str, Any]:
    spec = {"initContainers": [{"name": "init", "image": "reg/init:1"}],
            "containers": [{"name": "app", "image": IMAGE + ":1"}, {"name": "side", "image": IMAGE + "@" + DIGEST}],
            "ephemeralContainers": [{"name": "dbg", "image": "reg/debug:1"}]}
    obj = {"Pod": {"spec": spec}, "CronJob": {"spec": {"jobTemplate": {"spec": {"template": {"spec": spec}}}}}}.get(
        kind, {"spec": {"template": {"spec": spec}}})
    group = {"Pod": "", "CronJob": "batch"}.get(kind, "apps")  # the group/version the webhook understands
    obj = {"apiVersion": f"{group}/v1" if group else "v1", "kind": kind, **obj}
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "u1", "kind": {"group": group, "version": "v1", "kind": kind}, "operation": "CREATE",
        "namespace": "ns", "name": "n", "dryRun": False, "object": {"metadata": {"name": "n"}, **obj}}}


REF_SEEDS = ["nginx", "nginx:1.25", "docker.io/library/nginx:1.25", "localhost:5000/a/b/c:tag",
             "127.0.0.1:5000/team/app@" + DIGEST, "[::1]:5000/x:y", "quay.io/keycloak/keycloak:21.1.2@" + DIGEST,
             "registry.example.com/a_b/c-d/e.f:v1.0-rc_1", "ghcr.io/" + "a/" * 40 + "b"]


@st.composite
def ref_text(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(REF_SEEDS))
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.one_of(st.sampled_from(list(":/@.-_A[]% \x00é") + ["sha256:", "//", "::"]),
                                         st.text(max_size=4))) + text[at + draw(st.integers(0, 2)):]
    return text


# ---- runners --------------------------------------------------------------------------------------

def _check(outcome: Any) -> object:
    """A signature check returns an Outcome; a failed one must say why."""
    assert outcome.ok or outcome.reason, outcome
    return outcome


def _run_bundle(data: bytes) -> None:
    from airgap.bundle.inspect import _policies
    from airgap.bundle.reader import BundleReader

    reader = BundleReader(io.BytesIO(data), allow_unsigned=True)
    _policies(reader.files.get("trust/policy.yaml", b""))
    for _digest, _size, chunks in reader.blobs():
        for _chunk in chunks:
            pass
    reader.finish()


def _run_spec(text: str) -> None:
    from airgap.bundle.spec import BundleSpec

    path = spec_dir() / "spec.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    BundleSpec.load(path, env={}).trust_files()


def _run_policy(text: str) -> None:
    from airgap.policy.policyset import PolicySet
    from airgap.refs import parse

    key = material()["signer"].public_key
    policy = PolicySet.from_yaml(text, "policy.yaml", key_resolver=lambda kind, name: (key,))
    ref = parse(IMAGE + ":1")
    policy.pre_decision(ref)
    for p in policy.select(ref):
        for a in p.authorities:
            for spec in a.attestations:
                spec.evaluate({"builder": {"id": "x"}})


def _run_review(data: bytes) -> None:
    from airgap.admission.review import AdmissionRequest, uid_hint

    uid_hint(data)
    request = AdmissionRequest.from_bytes(data)
    _ = request.unique_images


def _run_root(data: bytes) -> None:
    from airgap.checks.roots import TrustedRoot

    TrustedRoot.from_bytes(data, "trusted_root.json").to_sigstore()


def _run_public_pem(data: bytes) -> None:
    from airgap.keys.public import load_public_key, load_public_keys_pem

    try:
        load_public_key(data)
    finally:
        load_public_keys_pem(data)


def _run_private_pem(data: bytes) -> None:
    from airgap.keys.private import decrypt_private_key

    decrypt_private_key(data, b"pw")


def _run_key_manifest(data: bytes) -> None:
    from airgap.verification.trust import Trust

    (trust_dir() / "keys.json").write_bytes(data)
    trust = Trust.load(trust_dir())
    trust.key_manifest()


@functools.cache
def trust_dir() -> Path:
    """A trust directory with one key (``keys/release.pub``) whose key manifest the fuzzer rewrites."""
    from airgap.keys.public import public_pem

    path = Path(tempfile.mkdtemp(prefix="fuzz-trust-"))
    (path / "keys").mkdir()
    (path / "keys" / "release.pub").write_bytes(public_pem(material()["signer"].public_key))
    return path


def _key_manifest_seed() -> dict[str, Any]:
    from airgap.keys.public import key_id

    return {"schemaVersion": 1, "keys": [{"name": "release", "id": key_id(material()["signer"].public_key),
                                          "algorithm": "ecdsa-p256", "source": "keys/release.pub",
                                          "policies": ["team"]}]}


def _run_docker_config(data: bytes) -> None:
    from airgap.oci.dockerconfig import DockerConfig

    path = spec_dir() / "docker-config.json"
    path.write_bytes(data)
    DockerConfig((str(path),)).files()


def _key_authority() -> Any:
    from airgap.checks.outcome import KeyAuthority

    return KeyAuthority((material()["signer"].public_key,))


def _keyless_authority() -> Any:
    from airgap.checks.keyless import Identity
    from airgap.checks.outcome import KeylessAuthority

    return KeylessAuthority((Identity(issuer="https://issuer.example", subject="ci@example.com"),), _root())


@functools.cache
def _root() -> Any:
    from airgap.checks.roots import TrustedRoot

    return TrustedRoot.from_bytes(json.dumps(material()["root"]).encode())


@functools.cache
def _tsa_root() -> Any:
    from airgap.checks.roots import TrustedRoot

    root = material()["tsa"]["root"]
    return TrustedRoot.from_bytes(json.dumps(root).encode()) if root else _root()


def _run_legacy(args: tuple[bytes, dict[str, Any]]) -> bool:
    from airgap.checks.cosign import ANN_SIGNATURE
    from airgap.checks.legacy import check_simple_signing

    payload, annotations = args
    annotations = {str(k): str(v) for k, v in annotations.items()} if isinstance(annotations, dict) else {}
    return any([_check(check_simple_signing(payload, annotations.get(ANN_SIGNATURE, ""), annotations,
                                            expected_digest=DIGEST, authority=authority, trusted_root=_root(),
                                            require_tlog=True)).ok
                for authority in (_key_authority(), _keyless_authority())])


def _run_attestation(args: tuple[bytes, dict[str, Any]]) -> bool:
    from airgap.checks.legacy import check_attestation

    envelope, annotations = args
    annotations = {str(k): str(v) for k, v in annotations.items()} if isinstance(annotations, dict) else {}
    return any([_check(check_attestation(envelope, annotations, expected_digest=DIGEST, authority=authority,
                                         trusted_root=_root())).ok
                for authority in (_key_authority(), _keyless_authority())])


def _run_sigstore_bundle(data: bytes) -> bool:
    from airgap.checks.bundle import check_sigstore_bundle

    return any([_check(check_sigstore_bundle(data, expected_digest=DIGEST, authority=_key_authority(),
                                             require_tlog=False)).ok,
                _check(check_sigstore_bundle(data, expected_digest=DIGEST, authority=_keyless_authority())).ok])


def _run_set(data: bytes) -> None:
    from airgap.checks.tlog import check_body, verify_set

    entry = verify_set(data, _root())
    check_body(entry, data=material()["legacy"].payload, signature=material()["legacy"].signature,
               spki=_spki(material()["who"]))


def _spki(who: Any) -> bytes:
    from airgap.keys.public import spki_der

    return spki_der(who.certificate.public_key())


def _run_tsa(data: bytes) -> None:
    from airgap.checks.tsa import verify_annotation

    verify_annotation(data, material()["legacy"].signature, _tsa_root())


def _run_bundle_manifest(data: bytes) -> None:
    from airgap.bundle.manifest import BundleManifest

    BundleManifest.from_bytes(data).entry_names()


def _run_manifest(args: tuple[bytes, str | None]) -> None:
    from airgap.oci.manifest import Manifest

    data, media_type = args
    m = Manifest.from_bytes(data, media_type, what="manifest")
    _ = (m.descriptor, m.config, [d.to_json() for d in (*m.manifests, *m.blobs)])


def _run_cosign(kind: str) -> Callable[[bytes], None]:
    def run(data: bytes) -> None:
        from airgap.checks import cosign

        if kind == "payload":
            cosign.SimpleSigning.from_bytes(data)
        elif kind == "envelope":
            cosign.Envelope.from_bytes(data).pae  # noqa: B018
        else:
            cosign.Statement.from_bytes(data).names_digest(DIGEST)

    return run


def _run_map(data: bytes) -> None:
    from airgap.refs.translation_map import TranslationMap

    tmap = TranslationMap.from_json(data)
    for entry in tmap.entries:
        tmap.by_local(entry.local)
    tmap.to_json()


def _run_ref(text: str) -> None:
    from airgap.refs import parse
    from airgap.refs.translate import zarf_forward

    ref = parse(text)
    _ = (str(ref), ref.name, ref.identifier)
    zarf_forward(ref, "127.0.0.1:31999")


def _run_loaders(data: bytes) -> None:
    from airgap.jsondoc import load_json
    from airgap.yamldoc import load_all

    try:
        load_json(data, "doc")
    finally:
        load_all(data.decode("utf-8", "replace"), "doc")


def _run_challenge(text: str) -> None:
    from airgap.oci.auth import parse_challenge

    parse_challenge(text)


def _run_pods(data: bytes) -> None:
    from airgap.audit.inputs import parse_pods

    parse_pods(data)


def _run_cel(data: bytes) -> bool:
    from airgap.jsondoc import load_json

    predicate = load_json(data, "predicate")
    results = [condition.explain({"predicate": predicate}) for condition in _conditions()]
    assert all(ok or reason for ok, reason in results)
    return any(ok for ok, _ in results)


@functools.cache
def _conditions() -> list[Any]:
    from airgap.policy.cel import CelCondition

    return [CelCondition.compile(s) for s in ("predicate.builder.id == 'x'", "size(predicate.materials) > 0",
                                               "has(predicate.x) && predicate.a.b.c.d > 1.5",
                                               "predicate.materials.all(m, m.uri.startsWith('git'))")]


# ---- targets --------------------------------------------------------------------------------------

def _pem_text(pems: list[bytes]) -> st.SearchStrategy[bytes]:
    def body(pem: bytes) -> st.SearchStrategy[bytes]:
        lines = pem.splitlines(keepends=True)
        return st.one_of(st.just(pem), byte_noise(pem),
                         st.integers(1, max(1, len(lines) - 2)).map(lambda i: b"".join(lines[:i] + lines[i + 1:])),
                         st.binary(max_size=300).map(lambda b: lines[0] + base64.encodebytes(b) + lines[-1]))
    return st.sampled_from(pems).flatmap(body)


def _der(pem: str) -> bytes:
    return base64.b64decode("".join(line for line in pem.splitlines() if not line.startswith("-----")))


def _pem(der: bytes) -> str:
    return "-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(der).decode() + "-----END CERTIFICATE-----\n"


def _tar_entries(data: bytes) -> list[tuple[str, bytes]]:
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]  # type: ignore[union-attr]


def _tar(entries: list[tuple[str, bytes]]) -> bytes:
    from airgap.bundle.writer import BLOCK, RECORD, ustar_header

    out = b""
    for name, data in entries:
        out += ustar_header(name, len(data), 1_700_000_000) + data + bytes(-len(data) % BLOCK)
    out += bytes(2 * BLOCK)
    return out + bytes(-len(out) % RECORD)


@st.composite
def bundle_bytes(draw: st.DrawFn) -> bytes:
    """The real bundle, its manifest re-serialized after mutations (and its files and blobs reshuffled), or
    its bytes mutated raw (headers, sizes, padding)."""
    built = bundle_material()
    how = draw(st.sampled_from(["manifest", "entries", "bytes"]))
    if how == "bytes":
        data = built.data
        for _ in range(draw(st.integers(1, 3))):
            at = draw(st.integers(0, len(data) - 1))
            data = data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1:]
        return draw(st.one_of(st.just(data), st.integers(0, len(data)).map(lambda n: data[:n])))
    entries = _tar_entries(built.data)
    if how == "manifest":
        doc = draw(mutated([json.loads(built.manifest.to_bytes())], ("images", "files", "blobs", "keys")))
        entries[0] = (entries[0][0], encode(doc).encode("utf-8", "surrogatepass"))
    else:
        for _ in range(draw(st.integers(1, 2))):
            i = draw(st.integers(0, len(entries) - 1))
            op = draw(st.sampled_from(["drop", "repeat", "swap", "data", "rename"]))
            if op == "drop":
                del entries[i]
            elif op == "repeat":
                entries.insert(i, entries[i])
            elif op == "swap":
                j = draw(st.integers(0, len(entries) - 1))
                entries[i], entries[j] = entries[j], entries[i]
            elif op == "data":
                entries[i] = (entries[i][0], draw(byte_noise(entries[i][1])))
            else:
                entries[i] = (draw(st.sampled_from(["../x", "/abs", "trust/policy.yaml", "index.json", "blobs/sha256/"
                                                    + "0" * 64, "a" * 99])), entries[i][1])
    return _tar(entries) if entries else b""


def targets() -> list[Target]:
    """Every untrusted-input parser, with its inputs (see the module docstring)."""
    from airgap.checks.cosign import ANN_CERTIFICATE

    m = material()
    legacy, attestation = m["legacy"], m["attestation"]
    signed = [json.loads(legacy.payload), json.loads(m["payload"])]
    annotation_docs = st.dictionaries(st.sampled_from(list(legacy.annotations)), TEXT, max_size=3)
    cert_der = _der(legacy.annotations[ANN_CERTIFICATE])
    noisy_cert = byte_noise(cert_der).map(lambda der: {**legacy.annotations, ANN_CERTIFICATE: _pem(der)})
    legacy_annotations = st.one_of(st.just(legacy.annotations), annotation_docs, noisy_cert, noisy_cert,
                                   st.sampled_from(sorted(legacy.annotations)).flatmap(
                                       lambda k: mutated([legacy.annotations[k]]).map(
                                           lambda v: {**legacy.annotations, k: encode(v)})))
    statement = json.loads(m["statement"])
    envelope = m["envelope"]
    bundle_manifest = json.loads(bundle_material().manifest.to_bytes())
    bundles = [m["key_bundle"], m["keyless_bundle"], m["message_bundle"]]
    reviews = [_review(k) for k in ("Pod", "Deployment", "CronJob")]
    tmap = [{"upstream": "docker.io/library/nginx:1.25", "local": IMAGE + ":1", "digest": DIGEST}]
    docker = {"auths": {"r.example": {"auth": "dTpw"}}, "credsStore": "x", "credHelpers": {"a.example": "y"}}
    pods = {"kind": "List", "items": [{"metadata": {"name": "p", "namespace": "n", "uid": "u"},
                                       "spec": {"containers": [{"name": "c", "image": IMAGE}]},
                                       "status": {"containerStatuses": [{"name": "c", "imageID": DIGEST}]}}]}
    challenge = 'Bearer realm="https://auth.example/token",service="registry",scope="repository:a:pull"'

    def js(doc: Any) -> bytes:
        return encode(doc).encode()

    return [
        Target("image refs (refs.parse)", st.one_of(ref_text(), TEXT), _run_ref, REF_SEEDS[2]),
        Target("OCI manifests and indexes", st.tuples(json_bytes(mutated(MANIFEST_SEEDS, (
            "schemaVersion", "mediaType", "manifests", "layers", "config", "subject", "artifactType"))),
            st.sampled_from([None, *MANIFEST_TYPES, "text/plain"])), _run_manifest, (js(MANIFEST_SEEDS[0]), None)),
        Target("simple-signing payloads", json_bytes(mutated(signed, (
            "critical", "identity", "image", "docker-manifest-digest", "type", "optional"))), _run_cosign("payload"),
            legacy.payload),
        Target("DSSE envelopes", json_bytes(mutated([envelope], ("payload", "payloadType", "signatures", "sig"))),
               _run_cosign("envelope"), js(envelope)),
        Target("in-toto statements", json_bytes(mutated([statement], ("_type", "subject", "predicateType",
                                                                       "predicate", "digest"))),
               _run_cosign("statement"), m["statement"]),
        Target("legacy .sig checks (key + keyless)", st.tuples(json_bytes(mutated(signed)), legacy_annotations),
               _run_legacy, (legacy.payload, legacy.annotations)),
        Target("legacy .att checks (key + keyless)", st.tuples(
            json_bytes(mutated([json.loads(attestation.payload), envelope])),
            st.one_of(st.just(attestation.annotations), annotation_docs)), _run_attestation,
            (attestation.payload, attestation.annotations)),
        Target("sigstore bundles", st.one_of(byte_noise(base64.b64decode(
            m["keyless_bundle"]["verificationMaterial"]["certificate"]["rawBytes"])).map(
                lambda der: js({**m["keyless_bundle"], "verificationMaterial": {
                    **m["keyless_bundle"]["verificationMaterial"],
                    "certificate": {"rawBytes": base64.b64encode(der).decode()}}})), json_bytes(mutated(bundles, (
            "verificationMaterial", "dsseEnvelope", "messageSignature", "tlogEntries", "publicKey", "certificate",
            "x509CertificateChain", "timestampVerificationData", "rfc3161Timestamps", "mediaType")))),
            _run_sigstore_bundle, js(m["keyless_bundle"])),
        Target("trusted roots", json_bytes(mutated([m["root"]], ("tlogs", "ctlogs", "certificateAuthorities",
                                                                 "timestampAuthorities", "validFor", "publicKey"))),
               _run_root, js(m["root"])),
        Target("Rekor SET annotations", json_bytes(mutated([m["set"]], ("Payload", "SignedEntryTimestamp", "body",
                                                                         "integratedTime", "logIndex", "logID"))),
               _run_set, js(m["set"])),
        Target("RFC 3161 annotations", st.one_of(
            json_bytes(mutated([m["tsa"]["annotation"]], ("SignedRFC3161Timestamp",))),
            byte_noise(base64.b64decode(m["tsa"]["annotation"]["SignedRFC3161Timestamp"])).map(
                lambda der: js({"SignedRFC3161Timestamp": base64.b64encode(der).decode()}))),
               _run_tsa, js(m["tsa"]["annotation"]) if m["tsa"]["root"] else None),
        Target("bundle tar reader", bundle_bytes(), _run_bundle, bundle_material().data),
        Target("bundle manifests", json_bytes(mutated([bundle_manifest], (
            "schema", "images", "files", "blobs", "keys", "blobCount", "blobBytes", "platforms", "attachments"))),
            _run_bundle_manifest, bundle_material().manifest.to_bytes()),
        Target("policy YAML (PolicySet.from_yaml)", yaml_text(POLICY_SEEDS), _run_policy, POLICY_SEEDS[0]),
        Target("bundle specs", yaml_text(SPEC_SEEDS), _run_spec, SPEC_SEEDS[0]),
        Target("AdmissionReviews", json_bytes(mutated(reviews, (
            "request", "object", "spec", "containers", "image", "uid", "kind", "operation"))), _run_review,
            js(reviews[2])),
        Target("PEM public keys", _pem_text(m["pems"]), _run_public_pem, m["pems"][0]),
        Target("PEM private keys", _pem_text(m["private"]), _run_private_pem, m["private"][2]),
        Target("translation maps", json_bytes(mutated([tmap], ("upstream", "local", "digest"))), _run_map, js(tmap)),
        Target("Docker config", json_bytes(mutated([docker])), _run_docker_config, js(docker)),
        Target("key manifests (trust keys.json)", json_bytes(mutated([_key_manifest_seed()], (
            "keys", "name", "id", "source", "policies"))), _run_key_manifest, js(_key_manifest_seed())),
        Target("pods files", json_bytes(mutated([pods])), _run_pods, js(pods)),
        Target("CEL over attestation predicates", json_bytes(mutated([statement["predicate"]])), _run_cel,
               js(statement["predicate"])),
        Target("WWW-Authenticate challenges", st.one_of(TEXT, st.sampled_from([
            challenge, 'Basic realm="x"', 'Bearer realm="a\\"b"'])).flatmap(
                lambda t: st.one_of(st.just(t), st.text().map(lambda s: t + s))), _run_challenge, challenge),
        Target("JSON/YAML loaders", st.one_of(json_bytes(JSON), yaml_text(POLICY_SEEDS + SPEC_SEEDS).map(
            lambda t: t.encode("utf-8", "surrogatepass"))), _run_loaders, js({"a": [1, None, "x"]})),
    ]


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
