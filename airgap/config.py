"""Limits and knobs in one place, with the reasons for their defaults.

Every number that bounds how much we read, how long we wait or how much we do at once lives here, so a
reviewer can see the whole resource envelope at a glance and tests can shrink it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

KiB = 1024
MiB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    # A manifest or index is held in memory to be parsed and hashed; real ones are a few KiB.
    # containerd and distribution cap manifests at 4 MiB: anything larger is hostile or broken.
    max_manifest_bytes: int = 4 * MiB
    # JSON documents we parse from registries (tag lists, token responses, referrers indexes).
    max_json_bytes: int = 16 * MiB
    # Read size for streaming blobs: large enough to amortise per-call overhead, small enough that
    # `concurrency` of them in flight stays far below the 120 MB RSS budget.
    chunk_bytes: int = 1 * MiB
    # Blobs up to this size are uploaded in one PUT; larger ones in PATCH chunks of `upload_chunk_bytes`.
    monolithic_upload_max: int = 512 * MiB
    upload_chunk_bytes: int = 128 * MiB
    # Network: connect/read timeouts (seconds) for one socket operation; a silent server fails, it never hangs.
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    # Stall detector: once a response has started, it must deliver `stall_bytes` per `stall_seconds` spent
    # waiting for it, or it is aborted (and retried like a reset). A server that drips a byte a second
    # resets every per-read timeout; this bounds it even when no overall deadline is set (copy, pack, load).
    stall_bytes: int = 16 * KiB
    stall_seconds: float = 30.0
    # Overall deadline (seconds, None: none) of an operation (airgap/oci/deadline.py): every connect, send,
    # receive and retry wait obeys it. `timeout` for a few images' worth of registry work (`verify`, `sign`,
    # `attest`, one `verify_image`): three minutes, as cosign's --timeout. `bulk_timeout` for commands whose
    # work grows with the data (copy, pack, load: gigabytes; audit: a whole registry): none, the per-read
    # timeouts and the stall detector bound them instead. `-t/--timeout` overrides either.
    timeout: float | None = 180.0
    bulk_timeout: float | None = None
    # A Docker credential helper (`docker-credential-<name> get`) must answer within this many seconds.
    credential_helper_timeout: float = 30.0
    # Retries of one request on 429/5xx/connection reset; the whole transfer is bounded by
    # attempts x (timeout + backoff), so a permanently failing registry fails in bounded time.
    retries: int = 4
    backoff_base: float = 0.2
    backoff_max: float = 5.0
    # Cap on a server's Retry-After we are willing to honour before giving up that attempt's wait.
    retry_after_max: float = 10.0
    # Blobs moved at once (`-j`). Four saturates a local registry's ingest on two cores.
    concurrency: int = 4
    # How deep we follow referrers of referrers (a signature on an SBOM on an image is depth 2).
    max_referrer_depth: int = 3
    # Bounded work per image verified: what a registry attaches to an image is untrusted and could be made
    # to cost unbounded time and memory. A signature manifest with more layers than this is refused (cosign
    # caps signature layers at 1000 too); one attached layer (a .sig payload, an .att envelope, a sigstore
    # bundle) over ``max_signature_layer_bytes`` is skipped as a failed candidate (cosign's default payload cap
    # is 128 MiB; real payloads are KiBs and SBOM attestations a few MiB); everything fetched for one image
    # (signature manifests, referrer manifests, layers) over ``max_attached_bytes`` stops the verification with
    # a denial; more than ``max_referrers`` referrers of one image are refused. Exceeded caps deny with a reason.
    max_signature_layers: int = 1000
    max_signature_layer_bytes: int = 4 * MiB
    max_attached_bytes: int = 32 * MiB
    max_referrers: int = 1000
    # How many manifests deep an index may nest (an index naming indexes naming manifests...). Real images
    # are two deep (an index of platform manifests), rarely three; a registry or a bundle can chain thousands,
    # and every walk over the graph (copy, pack, load) recurses once per level: refused past this.
    max_index_depth: int = 8
    # Pagination guard for tag lists.
    max_tag_pages: int = 1000
    # Bundles: the manifest and the small non-blob entries (trust files, oci-layout, index.json) are read
    # into memory to be hashed and parsed; blobs always stream. Real manifests are KiBs to a few MiB.
    max_bundle_manifest_bytes: int = 32 * MiB
    max_bundle_file_bytes: int = 32 * MiB
    # How deeply a JSON or YAML document may nest (objects/arrays, mappings/sequences; a scalar adds none).
    # Every document airgap reads goes through airgap.jsondoc / airgap.yamldoc, which refuse anything deeper
    # before any recursive code sees it, so nothing downstream (CEL conversion, deepcopy, YAML dumping, JSON
    # encoding) can approach Python's recursion limit. Real manifests, payloads, bundles, policies and
    # AdmissionReviews nest under 20 levels (an SBOM predicate's components a few more); Go's encoding/json
    # stops at 10,000, Python's own parser crashes at about 1,000.
    max_nesting_depth: int = 100
    # Nodes a YAML document may expand to once aliases are followed (each `*alias` counts the nodes it
    # repeats): aliases are fine, a "billion laughs" document is not. Without aliases a document has
    # fewer nodes than bytes, so this only ever bites on alias bombs.
    max_yaml_nodes: int = 1_000_000


@dataclass(frozen=True)
class RegistryOptions:
    """How to reach registries: TLS trust, which hosts may be plain HTTP, credentials."""

    limits: Limits = field(default_factory=Limits)
    # Hosts (host[:port]) where plain HTTP and unverified TLS are allowed, like `--insecure-registry`.
    insecure: frozenset[str] = frozenset()
    # PEM file of extra CA certificates (a private registry CA).
    ca_file: str | None = None
    # Docker config files to read credentials from; the default config is always consulted.
    auth_configs: tuple[str, ...] = ()
    # Hosts (host[:port], lowercase, default port of the redirect's scheme when omitted) a registry may
    # redirect us to, like `--allow-redirect` (blob storage, a CDN). Redirects elsewhere, and from https to
    # http, are refused; redirects within the registry's own host:port (and http -> https) are followed.
    redirect_hosts: frozenset[str] = frozenset()
    user_agent: str = "airgap/0.1"
