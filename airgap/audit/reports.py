"""Kubernetes PolicyReports rendered from the audit evidence.

**PolicyReports** (``wgpolicyk8s.io/v1alpha2``, the shape Kyverno writes): one ``PolicyReport`` per namespace
with a result per (pod, container, policy), and one ``ClusterPolicyReport`` with a result per audited image.
Result values are the CRD's lowercase ``pass|fail|warn|error|skip``; ``summary`` counts them.
"""

from __future__ import annotations

import datetime
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass


REPORT_API = "wgpolicyk8s.io/v1alpha2"


REPORT_NAME = "airgap-audit"


SOURCE = "airgap"


_POLICY_RULE = "image-signature"


def _seconds(doc: dict[str, Any]) -> int:
    moment = datetime.datetime.strptime(doc["generated_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    return int(moment.timestamp())


def _global_rule(image: dict[str, Any]) -> str:
    """Which of airgap's global settings decided an image that no policy verified."""
    said = " ".join(image["reasons"] + image["warnings"])
    if image["status"] == "ERROR":
        return "verify"
    if "allow-list" in said:
        return "allow-list"
    if "registry not approved" in said:
        return "approved-registries"
    if "noMatchPolicy" in said:
        return "no-match-policy"
    return "verify"


def _image_results(image: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(policy, rule, result, message) for one image: one per matching policy, else one for the setting
    that decided it."""
    if image["status"] == "ERROR" or not image["policies"]:
        message = "; ".join(image["reasons"] + image["warnings"]) or "admitted"
        return [("airgap", _global_rule(image), image["status"].lower(), message)]
    out = []
    for policy in image["policies"]:
        if policy["ok"]:
            who = [s for s in image["verified_by"] if s["policy"] == policy["name"]]
            signer = ", ".join(sorted({s["key_id"] or f"{s['identity']} ({s['issuer']})" for s in who}))
            result, message = "pass", f"signature verified ({signer})" if signer else "authorities satisfied"
        else:
            result = "warn" if policy["mode"] == "warn" else "fail"
            message = "; ".join(f"{a['name']}: {a['reason']}" for a in policy["authorities"] if not a["ok"])
        out.append((policy["name"], _POLICY_RULE, result, message or "authorities not satisfied"))
    return out


def _result(policy: str, rule: str, result: str, message: str, seconds: int, properties: dict[str, str],
            resource: dict[str, str] | None) -> dict[str, Any]:
    item: dict[str, Any] = {
        "source": SOURCE, "policy": policy, "rule": rule, "result": result, "message": message[:1024],
        "scored": True, "category": "Image Verification", "severity": "high",
        "timestamp": {"seconds": seconds, "nanos": 0},
        "properties": {k: v for k, v in sorted(properties.items()) if v},
    }
    if resource is not None:
        item["resources"] = [resource]
    return item


def _report(kind: str, namespace: str | None, results: list[dict[str, Any]]) -> dict[str, Any]:
    results.sort(key=lambda r: (json.dumps(r.get("resources"), sort_keys=True), r["policy"], r["rule"],
                                r["properties"].get("image", "")))
    meta: dict[str, Any] = {"name": REPORT_NAME, "labels": {"app.kubernetes.io/managed-by": SOURCE}}
    if namespace is not None:
        meta["namespace"] = namespace
    summary = {k: sum(1 for r in results if r["result"] == k) for k in ("pass", "fail", "warn", "error", "skip")}
    return {"apiVersion": REPORT_API, "kind": kind, "metadata": meta, "summary": summary, "results": results}


def policy_reports(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """One PolicyReport per namespace that runs an audited pod (sorted), then the ClusterPolicyReport."""
    seconds = _seconds(doc)
    by_ns: dict[str, list[dict[str, Any]]] = {}
    cluster: list[dict[str, Any]] = []
    for image in doc["images"]:
        props = {"image": image["ref"], "digest": image["digest"] or "", "upstream": image["upstream"] or ""}
        for policy, rule, result, message in _image_results(image):
            cluster.append(_result(policy, rule, result, message, seconds, props, None))
            for w in image["workloads"]:
                resource = {"apiVersion": "v1", "kind": "Pod", "name": w["pod"], "namespace": w["namespace"]}
                if w["uid"]:
                    resource["uid"] = w["uid"]
                by_ns.setdefault(w["namespace"], []).append(_result(
                    policy, rule, result, message, seconds, {**props, "container": w["container"]}, resource))
    reports = [_report("PolicyReport", ns, by_ns[ns]) for ns in sorted(by_ns)]
    return [*reports, _report("ClusterPolicyReport", None, cluster)]


def reports_yaml(reports: list[dict[str, Any]]) -> str:
    """Multi-document YAML for ``kubectl apply -f`` (keys sorted, so equal evidence gives equal text)."""
    import yaml

    return yaml.safe_dump_all(reports, sort_keys=True, default_flow_style=False, explicit_start=True)
