"""Human reports of the audit evidence: Markdown, and a self-contained HTML page.

Both are pure functions of the evidence document (:func:`airgap.audit.evidence.build_evidence`), so a saved
``audit.json`` can be re-rendered later and equal evidence renders to equal text. Everything that came
from a registry, a pod or a policy is untrusted text: HTML escapes every value (no markup, scripts or
URLs from the input survive), Markdown escapes the characters that would break a table or start markup.
The HTML page loads nothing: inline CSS, no scripts, no fonts, no images, no links out.
"""

from __future__ import annotations

import html
import re
from typing import Any

_STATUS_ORDER = ("FAIL", "ERROR", "WARN", "SKIP", "PASS")
_COLORS = {"PASS": "#1a7f37", "FAIL": "#cf222e", "WARN": "#9a6700", "ERROR": "#8250df", "SKIP": "#57606a"}
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+!|~])")


def _signer(image: dict[str, Any]) -> str:
    who = sorted({s["key_id"] or f"{s['identity']} ({s['issuer']})" for s in image["verified_by"]})
    return ", ".join(who)


def _why(image: dict[str, Any]) -> str:
    return "; ".join(image["reasons"] + image["warnings"])


def _rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Images, worst first, then by ref (the evidence itself is sorted by ref only)."""
    return sorted(doc["images"], key=lambda i: (_STATUS_ORDER.index(i["status"]), i["ref"], i["digest"] or ""))


def _counts(doc: dict[str, Any]) -> str:
    s = doc["summary"]
    return ", ".join(f"{s[k]} {k}" for k in ("PASS", "FAIL", "WARN", "ERROR", "SKIP"))


# ---- Markdown ----------------------------------------------------------------------------------------

def _md(text: object) -> str:
    """One table cell: markup characters escaped, newlines flattened."""
    return _MD_SPECIAL.sub(r"\\\1", str(text if text is not None else "")).replace("\r", " ").replace("\n", " ")


def to_markdown(doc: dict[str, Any]) -> str:
    s = doc["summary"]
    lines = [
        f"# airgap audit: {s['result']}",
        "",
        f"- Generated: {_md(doc['generated_at'])} by airgap {_md(doc['tool']['version'])}",
        f"- Images: {s['images']} ({_counts(doc)})",
        f"- Trust: {_md(doc['trust']['source'])} (`{doc['trust']['digest']}`)",
        f"- Policy digest: `{doc['policy']['digest']}`",
        f"- Keys: {len(doc['trust']['key_manifest']['keys'])}",
        "",
        "## Summary",
        "",
        "| Status | Image | Digest | Upstream | Verified by | Reasons |",
        "|---|---|---|---|---|---|",
    ]
    for image in _rows(doc):
        lines.append("| " + " | ".join([
            f"**{image['status']}**", _md(image["ref"]), f"`{image['digest']}`" if image["digest"] else "",
            _md(image["upstream"]), _md(_signer(image)), _md(_why(image)),
        ]) + " |")
    lines += ["", "## Keys", "", "| Name | Key id | Algorithm | Policies |", "|---|---|---|---|"]
    for key in doc["trust"]["key_manifest"]["keys"]:
        lines.append(f"| {_md(key['name'])} | `{key['id']}` | {_md(key['algorithm'])} | "
                     f"{_md(', '.join(key['policies']))} |")
    workloads = [(w, i) for i in doc["images"] for w in i["workloads"]]
    if workloads:
        lines += ["", "## Workloads", "", "| Namespace | Pod | Container | Image | Status |", "|---|---|---|---|---|"]
        for w, image in sorted(workloads, key=lambda p: (p[0]["namespace"], p[0]["pod"], p[0]["container"])):
            lines.append(f"| {_md(w['namespace'])} | {_md(w['pod'])} | {_md(w['container'])} | "
                         f"{_md(w['image'])} | **{image['status']}** |")
    lines += ["", "## Details", ""]
    for image in doc["images"]:
        lines += [f"### {image['status']} {_md(image['ref'])}", ""]
        lines.append(f"- digest `{image['digest']}`; upstream {_md(image['upstream'])} "
                     f"({_md(image['upstream_source'])})")
        for policy in image["policies"]:
            lines.append(f"- policy {_md(policy['name'])} [{_md(policy['mode'])}]: "
                         f"{'passed' if policy['ok'] else 'FAILED'}")
            for auth in policy["authorities"]:
                lines.append(f"  - authority {_md(auth['name'])}: {'ok' if auth['ok'] else _md(auth['reason'])}")
                for ev in auth["evidence"]:
                    who = ev["key_id"] or f"{ev['identity']} ({ev['issuer']})"
                    lines.append(f"    - {'ok' if ev['ok'] else 'failed'}: {_md(ev['kind'])} at "
                                 f"{_md(ev['location'])} ({_md(who)})" + (f": {_md(ev['reason'])}" if ev["reason"]
                                                                          else ""))
        lines += [f"- reason: {_md(r)}" for r in image["reasons"]]
        lines += [f"- warning: {_md(w)}" for w in image["warnings"]]
        lines.append("")
    return "\n".join(lines)


# ---- HTML ----------------------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#1f2328;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d0d7de}
.meta{color:#57606a;margin:0 0 16px}.cards{display:flex;gap:12px;margin:16px 0}
.card{border-radius:8px;padding:10px 16px;color:#fff;min-width:90px}.card b{display:block;font-size:24px}
table{border-collapse:collapse;width:100%;margin:8px 0}th,td{border:1px solid #d0d7de;padding:5px 8px;
text-align:left;vertical-align:top;overflow-wrap:anywhere}th{background:#f6f8fa}
tr:nth-child(even) td{background:#fbfcfd}
code{font:12px ui-monospace,SFMono-Regular,Menlo,monospace;word-break:break-all}
.badge{display:inline-block;border-radius:10px;padding:1px 9px;color:#fff;font-weight:600;font-size:12px;
white-space:nowrap}
.banner{padding:10px 14px;border-radius:8px;color:#fff;font-weight:600;font-size:16px}
details{margin:6px 0}summary{cursor:pointer}ul{margin:4px 0 4px 18px;padding:0}
"""


def _e(text: object) -> str:
    return html.escape(str(text if text is not None else ""), quote=True)


def _short(digest: str | None) -> str:
    """A digest as a table shows it: algorithm and 12 hex digits, the whole value in the tooltip."""
    if not digest:
        return ""
    alg, _, hexpart = digest.partition(":")
    return f'<code title="{_e(digest)}">{_e(alg)}:{_e(hexpart[:12])}&hellip;</code>'


def _upstream(ref: str | None) -> str:
    if not ref:
        return ""
    name, at, digest = ref.partition("@")
    return _e(name) + (f"@{_short(digest)}" if at else "")


def _badge(status: str) -> str:
    return f'<span class="badge" style="background:{_COLORS[status]}">{_e(status)}</span>'


def _table(head: list[str], rows: list[list[str]]) -> str:
    out = ["<table><thead><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr></thead><tbody>"]
    out += ["<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows]
    return "\n".join([*out, "</tbody></table>"])


def _details(image: dict[str, Any]) -> str:
    items = [f"<li>digest <code>{_e(image['digest'])}</code>; upstream {_e(image['upstream'])} "
             f"({_e(image['upstream_source'])})</li>"]
    for policy in image["policies"]:
        auths = []
        for auth in policy["authorities"]:
            evs = "".join(
                f"<li>{'ok' if ev['ok'] else 'failed'}: {_e(ev['kind'])} at <code>{_e(ev['location'])}</code> "
                f"({_e(ev['key_id'] or str(ev['identity']) + ' / ' + str(ev['issuer']))})"
                + (f": {_e(ev['reason'])}" if ev["reason"] else "") + "</li>" for ev in auth["evidence"])
            auths.append(f"<li>authority {_e(auth['name'])}: {'ok' if auth['ok'] else _e(auth['reason'])}"
                         + (f"<ul>{evs}</ul>" if evs else "") + "</li>")
        items.append(f"<li>policy {_e(policy['name'])} [{_e(policy['mode'])}]: "
                     f"{'passed' if policy['ok'] else 'FAILED'}<ul>{''.join(auths)}</ul></li>")
    items += [f"<li>reason: {_e(r)}</li>" for r in image["reasons"]]
    items += [f"<li>warning: {_e(w)}</li>" for w in image["warnings"]]
    return (f"<details><summary>{_badge(image['status'])} {_e(image['ref'])}</summary>"
            f"<ul>{''.join(items)}</ul></details>")


def to_html(doc: dict[str, Any]) -> str:
    s = doc["summary"]
    passed = s["result"] == "PASSED"
    cards = "".join(f'<div class="card" style="background:{_COLORS[k]}"><b>{s[k]}</b>{k}</div>'
                    for k in ("PASS", "FAIL", "WARN", "ERROR", "SKIP"))
    summary = _table(["Status", "Image", "Digest", "Upstream", "Verified by", "Reasons"], [
        [_badge(i["status"]), _e(i["ref"]), _short(i["digest"]), _upstream(i["upstream"]),
         f"<code>{_e(_signer(i))}</code>", _e(_why(i))] for i in _rows(doc)])
    keys = _table(["Name", "Key id", "Algorithm", "Policies"], [
        [_e(k["name"]), f"<code>{_e(k['id'])}</code>", _e(k["algorithm"]), _e(", ".join(k["policies"]))]
        for k in doc["trust"]["key_manifest"]["keys"]])
    workloads = sorted(((w, i) for i in doc["images"] for w in i["workloads"]),
                       key=lambda p: (p[0]["namespace"], p[0]["pod"], p[0]["container"]))
    pods = ("<h2>Workloads</h2>" + _table(["Namespace", "Pod", "Container", "Image", "Status"], [
        [_e(w["namespace"]), _e(w["pod"]), _e(w["container"]), _e(w["image"]), _badge(i["status"])]
        for w, i in workloads])) if workloads else ""
    details = "\n".join(_details(i) for i in doc["images"])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>airgap audit: {_e(s['result'])}</title><style>{_CSS}</style></head>
<body>
<div class="banner" style="background:{_COLORS['PASS' if passed else 'FAIL']}">airgap audit: {_e(s['result'])}</div>
<p class="meta">Generated {_e(doc['generated_at'])} by airgap {_e(doc['tool']['version'])} &middot;
trust {_e(doc['trust']['source'])} <code>{_e(doc['trust']['digest'])}</code> &middot;
policy <code>{_e(doc['policy']['digest'])}</code></p>
<div class="cards">{cards}</div>
<h2>Summary ({s['images']} image(s))</h2>
{summary}
{pods}
<h2>Keys</h2>
{keys}
<h2>Details</h2>
{details}
</body></html>
"""
