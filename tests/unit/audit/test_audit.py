"""The audit's pure parts: statuses, the evidence document, Markdown/HTML rendering (escaping, no external
resources), PolicyReports, the VSA statement and its offline check, and the pods/images parsers."""

from __future__ import annotations

import base64
import datetime
import json
import re
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from airgap.audit import render as audit_render
from airgap.audit.evidence import SCHEMA_VERSION, build_evidence, dumps, status_of, without_timestamp
from airgap.audit.inputs import Inputs, Workload, parse_image_list, parse_pods
from airgap.audit.reports import policy_reports, reports_yaml
from airgap.audit.vsa import sign_vsa, verify_vsa
from airgap.errors import ConfigError, IntegrityError, VerificationError
from airgap.keys.private import KeySigner
from airgap.keys.public import key_id, public_pem
from airgap.verification.result import AuthorityResult, PolicyResult, SignatureEvidence, VerificationResult
from airgap.verification.trust import Trust

HOST = "127.0.0.1:5000"
D1, D2, D3 = ("sha256:" + c * 64 for c in "abc")
HOSTILE = '<script>alert("x")</script> | `code` [link](http://evil.example/) <img src=http://evil.example/a.png>'
SIGNER = KeySigner(ec.generate_private_key(ec.SECP256R1()))
KID = key_id(SIGNER.public_key)


def result(ref: str, digest: str | None, decision: str, *, policies: list[PolicyResult] | None = None,
           reasons: list[str] | None = None, warnings: list[str] | None = None) -> VerificationResult:
    return VerificationResult(ref=ref, digest=digest, upstream=f"{ref.rsplit(':', 1)[0]}@{digest}" if digest else None,
                              upstream_source="no translation configured: verified as named",
                              allowed=decision != "deny", decision=decision, reasons=reasons or [],
                              warnings=warnings or [], policies=policies or [], policy_digest=D3, trust_digest=D2)


def signed_policy(ok: bool, mode: str = "enforce", reason: str = "") -> PolicyResult:
    ev = SignatureEvidence(kind="signature-key", location=f"{HOST}/team/app:sha256-{'a' * 64}.sig",
                           layer_digest=D2, ok=ok, reason=reason, key_id=KID if ok else None)
    return PolicyResult("team", mode, ok, [AuthorityResult("release", ok, "" if ok else f"no signature verified "
                                                                                          f"({reason})", [ev])])


RESULTS = [
    result(f"{HOST}/team/app:1.0", D1, "allow", policies=[signed_policy(True)]),
    result(f"{HOST}/team/bad:1", D2, "deny", policies=[signed_policy(False, reason=HOSTILE)],
           reasons=[f"policy team: release: {HOSTILE}"]),
    result(f"{HOST}/team/soft:1", D3, "warn", policies=[signed_policy(False, "warn", "nope")],
           warnings=["policy team: release: nope"]),
    result(f"{HOST}/misc/tool:1", D1, "warn", warnings=["no policy matches x (noMatchPolicy: warn)"]),
    result(f"{HOST}/vendor/ok:1", D2, "allow", warnings=["allowed by allow-list glob 'v/**'"]),
    result(f"{HOST}/gone:1", None, "deny", reasons=[f"{HOST}/gone:1: manifest unknown"]),
    result(f"{HOST}/ext:1", D3, "deny", reasons=["registry not approved: ext is not under x"]),
]
NOW = datetime.datetime(2024, 5, 1, 12, 0, 0, tzinfo=datetime.UTC)


def evidence(results: list[VerificationResult] = RESULTS, workloads: dict[str, list[Workload]] | None = None,
             now: datetime.datetime = NOW) -> dict[str, Any]:
    trust = Trust.from_keys([("release", public_pem(SIGNER.public_key))])
    return build_evidence(results, trust, Inputs(registry=HOST), workloads=workloads, now=now)


def test_statuses_follow_the_decision_and_what_decided_it() -> None:
    assert [status_of(r) for r in RESULTS] == ["PASS", "FAIL", "WARN", "WARN", "SKIP", "ERROR", "FAIL"]


def test_evidence_is_sorted_versioned_and_reproducible() -> None:
    doc = evidence()
    assert doc["schema_version"] == SCHEMA_VERSION and doc["generated_at"] == "2024-05-01T12:00:00Z"
    assert [i["ref"] for i in doc["images"]] == sorted(r.ref for r in RESULTS)
    assert doc["summary"] == {"images": 7, "PASS": 1, "FAIL": 2, "WARN": 2, "ERROR": 1, "SKIP": 1, "result": "FAILED"}
    assert doc["policy"]["digest"] == D3
    later = evidence(list(reversed(RESULTS)), now=NOW + datetime.timedelta(hours=1))
    assert later["generated_at"] != doc["generated_at"]
    assert without_timestamp(later) == without_timestamp(doc)
    assert dumps(doc).replace(b"12:00:00", b"13:00:00") == dumps(later)
    app = next(i for i in doc["images"] if i["ref"].endswith("app:1.0"))
    assert app["verified_by"] == [{"policy": "team", "authority": "release", "kind": "signature-key",
                                   "location": f"{HOST}/team/app:sha256-{'a' * 64}.sig", "layer_digest": D2,
                                   "key_id": KID, "identity": None, "issuer": None}]


def test_html_is_self_contained_and_escapes_everything() -> None:
    page = audit_render.to_html(evidence())
    assert "<script" not in page and "<img" not in page and "evil.example/a.png>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert not re.search(r"""<[a-z]+[^>]*\b(src|href|on[a-z]+)\s*=|url\(|@import|<link|<iframe|<object""", page, re.I)
    assert "default-src 'none'" in page  # and a CSP that would block anything that slipped through
    assert page.count("<tr>") == 1 + 7 + 1 + 1  # summary head + rows, keys head + 1 key
    assert 'class="badge" style="background:#cf222e">FAIL' in page


def test_markdown_escapes_table_breakers_and_markup() -> None:
    md = audit_render.to_markdown(evidence())
    bad_row = next(line for line in md.splitlines() if line.startswith("| **FAIL** |") and "bad" in line)
    assert bad_row.count(" | ") == 5  # the hostile '|' did not add a column
    assert "\\<script\\>" in md and "\\[link\\]\\(http://evil.example/\\)" in md and "\\`code\\`" in md
    assert md.splitlines()[0] == "# airgap audit: FAILED"
    first = [line.split(" | ")[0] for line in md.splitlines() if line.startswith("| **")]
    assert first[:3] == ["| **FAIL**", "| **FAIL**", "| **ERROR**"]  # worst first


def _workload(ns: str, pod: str, container: str, image: str) -> Workload:
    return Workload(ns, pod, container, "container", image, "", f"uid-{pod}")


def test_policy_reports_count_like_kyverno() -> None:
    workloads = {RESULTS[0].ref: [_workload("prod", "web", "app", RESULTS[0].ref)],
                 RESULTS[1].ref: [_workload("prod", "web", "side", RESULTS[1].ref),
                                  _workload("dev", "job", "x", RESULTS[1].ref)],
                 RESULTS[5].ref: [_workload("dev", "gone", "g", RESULTS[5].ref)]}
    reports = policy_reports(evidence(workloads=workloads))
    assert [(r["kind"], r["metadata"].get("namespace")) for r in reports] == [
        ("PolicyReport", "dev"), ("PolicyReport", "prod"), ("ClusterPolicyReport", None)]
    dev, prod, cluster = reports
    assert prod["summary"] == {"pass": 1, "fail": 1, "warn": 0, "error": 0, "skip": 0}
    assert dev["summary"] == {"pass": 0, "fail": 1, "warn": 0, "error": 1, "skip": 0}
    assert cluster["summary"] == {"pass": 1, "fail": 2, "warn": 2, "error": 1, "skip": 1}
    rules = {r["properties"]["image"]: r["rule"] for r in cluster["results"]}
    assert rules == {RESULTS[0].ref: "image-signature", RESULTS[1].ref: "image-signature",
                     RESULTS[2].ref: "image-signature", RESULTS[3].ref: "no-match-policy",
                     RESULTS[4].ref: "allow-list", RESULTS[5].ref: "verify", RESULTS[6].ref: "approved-registries"}
    passed = next(r for r in prod["results"] if r["result"] == "pass")
    assert passed["timestamp"] == {"seconds": int(NOW.timestamp()), "nanos": 0}
    assert passed["resources"][0] == {"apiVersion": "v1", "kind": "Pod", "name": "web", "namespace": "prod",
                                      "uid": "uid-web"}
    assert KID in passed["message"] and passed["properties"]["container"] == "app"
    text = reports_yaml(reports)
    assert text.count("---") == 3 and text == reports_yaml(policy_reports(
        evidence(workloads=workloads)))


def test_vsa_round_trip_and_tampering() -> None:
    doc = evidence(RESULTS[:1])
    ev = dumps(doc)
    envelope = sign_vsa(SIGNER, doc, ev)
    check = verify_vsa(envelope, [SIGNER.public_key], evidence=ev)
    assert check.key_id == KID and check.verification_result == "PASSED" and check.evidence_checked
    assert check.resource_uri == f"oci://{HOST}/team/app:1.0" and check.time_verified == "2024-05-01T12:00:00Z"
    statement = json.loads(base64.b64decode(json.loads(envelope)["payload"]))
    assert statement["predicate"]["verifiedLevels"] == ["SLSA_BUILD_LEVEL_0", "AIRGAP_SIGNATURE_POLICY_PASSED"]
    assert statement["predicate"]["policy"]["digest"] == {"sha256": "c" * 64}
    assert {s["name"] for s in statement["subject"]} == {"audit.json", f"{HOST}/team/app:1.0"}
    other = KeySigner(ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(VerificationError, match="no signature verifies"):
        verify_vsa(envelope, [other.public_key])
    with pytest.raises(VerificationError, match="evidence file's digest"):
        verify_vsa(envelope, [SIGNER.public_key], evidence=ev + b" ")
    forged = json.loads(envelope)
    forged["payload"] = base64.b64encode(base64.b64decode(forged["payload"]).replace(b"PASSED", b"FAILED")).decode()
    with pytest.raises(VerificationError, match="no signature verifies"):
        verify_vsa(json.dumps(forged).encode(), [SIGNER.public_key])
    with pytest.raises(VerificationError, match="predicate type"):
        verify_vsa(envelope, [SIGNER.public_key], predicate_type="https://example/other")
    with pytest.raises(VerificationError, match="not valid JSON"):
        verify_vsa(b"garbage", [SIGNER.public_key])
    failed = verify_vsa(sign_vsa(SIGNER, evidence(), ev), [SIGNER.public_key])
    assert failed.verification_result == "FAILED"


def test_pods_parser_takes_every_container_kind_and_the_running_digest() -> None:
    pods = {"kind": "List", "items": [{
        "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
        "spec": {"containers": [{"name": "a", "image": "nginx:1.25"}],
                 "initContainers": [{"name": "i", "image": f"{HOST}/x@{D1}"}],
                 "ephemeralContainers": [{"name": "e", "image": f"{HOST}/dbg:1"}]},
        "status": {"containerStatuses": [{"name": "a", "imageID": f"docker.io/library/nginx@{D2}"}]},
    }]}
    out = parse_pods(json.dumps(pods).encode())
    assert [(w.kind, w.container, w.ref) for w in out] == [
        ("container", "a", f"docker.io/library/nginx@{D2}"), ("ephemeralContainer", "e", f"{HOST}/dbg:1"),
        ("initContainer", "i", f"{HOST}/x@{D1}")]
    single = parse_pods(json.dumps({"kind": "Pod", **pods["items"][0]}).encode())
    assert len(single) == 3
    for bad, message in ((b"[", "not valid JSON"), (b"[]", "the document is not an object"),
                         (b'{"items": 3}', "no 'items' list"), (b'{"items": [{"spec": []}]}', r"items\[0\].spec")):
        with pytest.raises(IntegrityError, match=message):
            parse_pods(bad)


def test_image_list_puts_hostless_lines_on_the_registry() -> None:
    text = f"# c\nteam/app:1\n\n{HOST}/a/b:2  # pinned\nlocalhost:5000/c:3\nregistry.example/d:4\nbusybox\n"
    assert parse_image_list(text, HOST) == [f"{HOST}/team/app:1", f"{HOST}/a/b:2", "localhost:5000/c:3",
                                                  "registry.example/d:4", f"{HOST}/busybox"]
    assert parse_image_list("team/app:1\n") == ["team/app:1"]
    with pytest.raises(ConfigError):
        parse_image_list("Bad/UPPER:1\n", HOST)
