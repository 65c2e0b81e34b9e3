"""What a registry holds, read with plain HTTP (not airgap's client): every repository of the catalog, every
tag and the digest it names, and a check that each tag's whole graph (child manifests, configs, layers) is there
with the right sizes. Two registries loaded the same way must give the same snapshot."""

from __future__ import annotations

import requests

ACCEPT = ",".join([
    "application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
])
MAP_REPO = "airgap/maps"


def catalog(url: str) -> list[str]:
    repos: list[str] = []
    page: str | None = f"{url}/v2/_catalog?n=1000"
    while page:
        r = requests.get(page, timeout=30)
        r.raise_for_status()
        repos += r.json().get("repositories") or []
        nxt = r.links.get("next", {}).get("url")
        page = (nxt if nxt.startswith("http") else url + nxt) if nxt else None
    return sorted(repos)


def tags(url: str, repo: str) -> dict[str, str]:
    """tag -> digest (every tag of ``repo``; empty when the repository does not exist)."""
    r = requests.get(f"{url}/v2/{repo}/tags/list", timeout=30)
    if r.status_code == 404:
        return {}
    out = {}
    for tag in r.json().get("tags") or []:
        head = requests.head(f"{url}/v2/{repo}/manifests/{tag}", headers={"Accept": ACCEPT}, timeout=30)
        head.raise_for_status()
        out[tag] = head.headers["Docker-Content-Digest"]
    return out


def check_graph(url: str, repo: str, ref: str) -> None:
    """Every manifest, config and layer ``repo:ref`` names is in ``repo`` with the size it is listed with."""
    todo = [ref]
    while todo:
        r = requests.get(f"{url}/v2/{repo}/manifests/{todo.pop()}", headers={"Accept": ACCEPT}, timeout=30)
        assert r.status_code == 200, f"{repo}: {r.status_code}"
        doc = r.json()
        todo += [m["digest"] for m in doc.get("manifests") or []]
        blobs = [doc["config"], *(doc.get("layers") or [])] if "config" in doc else []
        for blob in blobs:
            head = requests.head(f"{url}/v2/{repo}/blobs/{blob['digest']}", timeout=30)
            assert head.status_code == 200, f"{repo}: blob {blob['digest']} is missing"
            assert int(head.headers["Content-Length"]) == blob["size"], f"{repo}: blob {blob['digest']} size"


def snapshot(url: str, *, check: bool = True) -> dict[str, dict[str, str]]:
    """repo -> tag -> digest for every repository with tags. The translation maps name the registry they were
    loaded into, so for ``airgap/maps`` only the tags are kept (digests blanked)."""
    out: dict[str, dict[str, str]] = {}
    for repo in catalog(url):
        tagged = tags(url, repo)
        if not tagged:
            continue
        if check:
            for tag in tagged:
                check_graph(url, repo, tag)
        out[repo] = {t: "" for t in tagged} if repo == MAP_REPO else tagged
    return out
