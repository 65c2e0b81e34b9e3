"""`airgap verify`: decide offline whether images served by the local registry may run, and say why."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from airgap.commands.common import (
    allow_insecure_registry_option,
    conflict,
    echo,
    emit_json,
    make_options,
    parse_annotations,
    registry_alias_option,
    registry_hosts,
    registry_options,
    timeout_option,
)

if TYPE_CHECKING:
    from airgap.verification.result import VerificationResult


def _render(result: VerificationResult) -> str:
    """The human report of one result. Every value in it may come from the registry (refs it resolved, identities
    in certificates, reasons quoting what it served): each is made one inert line with :func:`printable`."""
    from airgap.terminal import printable as p

    mark = {"allow": "OK  ", "warn": "WARN", "deny": "FAIL"}[result.decision]
    lines = [f"{mark} {p(result.ref)}" + (f"@{p(result.digest)}" if result.digest and "@" not in result.ref else "")]
    if result.upstream and result.upstream.split("@")[0].rsplit(":", 1)[0] not in result.ref:
        lines.append(f"     upstream {p(result.upstream)} ({p(result.upstream_source)})")
    for policy in result.policies:
        lines.append(f"     policy {p(policy.name)} [{policy.mode}]: {'passed' if policy.ok else 'FAILED'}")
        for auth in policy.authorities:
            winner = next((e for e in auth.evidence if e.ok), None)
            if auth.ok and winner is not None:
                who = f"key {winner.key_id}" if winner.key_id else f"identity {winner.identity} ({winner.issuer})"
                lines.append(f"       authority {p(auth.name)}: {p(winner.kind)} signature at {p(winner.location)} "
                             f"verified with {p(who)}")
                for check in (c for c in winner.checks if c["ok"]):
                    lines.append(f"         - {p(check['name'])}: {p(check['detail'])}")
            elif auth.ok:
                lines.append(f"       authority {p(auth.name)}: passed (static)")
            else:
                lines.append(f"       authority {p(auth.name)}: {p(auth.reason)}")
    lines += [f"     warning: {p(w)}" for w in result.warnings]
    lines += [f"     reason: {p(r)}" for r in result.reasons]
    return "\n".join(lines)


@click.command()
@click.argument("images", nargs=-1, required=True, metavar="REF...")
@click.option("--trust", "trust_dir", type=click.Path(file_okay=False), default=None,
              help="Trust directory: keys/, trusted_root.json, policy.yaml, map.json. With "
                   "--certificate-identity only its roots and map.json are used: the identity is the policy.")
@click.option("--key", "key_refs", multiple=True, metavar="KEYREF",
              help="Public key (file, env://VAR, k8s secret dir, pkcs11:); repeat for any-of.")
@click.option("--certificate-identity", default=None, help="Keyless: the certificate SAN to require.")
@click.option("--certificate-identity-regexp", default=None, help="Keyless: SAN regexp (whole string).")
@click.option("--certificate-oidc-issuer", default=None, help="Keyless: the OIDC issuer to require.")
@click.option("--certificate-oidc-issuer-regexp", default=None, help="Keyless: issuer regexp (whole string).")
@click.option("--trusted-root", "trusted_roots", multiple=True, type=click.Path(dir_okay=False, exists=True),
              help="Sigstore trusted_root.json for keyless checks [the public-good root shipped with airgap].")
@click.option("--certificate-chain", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Keyless: PEM CA chain (root last), the only anchor for the signing certificates (as cosign).")
@click.option("--insecure-ignore-tlog", is_flag=True,
              help="With --key/--certificate-*: accept signatures without a verified Rekor entry (as cosign).")
@click.option("--insecure-ignore-sct", is_flag=True,
              help="Keyless: do not require an embedded SCT in the certificate (as cosign).")
@click.option("-a", "--annotations", "annotation_pairs", multiple=True, metavar="KEY=VALUE",
              help="Every accepted signature must carry this signed annotation (cosign's -a); repeatable.")
@click.option("--signature-dir", type=click.Path(exists=True, file_okay=False), default=None, metavar="DIR",
              help="Take signatures from DIR (what sign --output-dir writes) instead of the registry.")
@click.option("--local-image", is_flag=True,
              help="Each REF is an OCI image layout on disk (oci:PATH[:TAG], or PATH; cosign save writes one): "
                   "verified without any registry.")
@registry_alias_option
@click.option("--signature-repo", "signature_repos", multiple=True, metavar="REPO",
              help="Look for signatures in REPO [env COSIGN_REPOSITORY].")
@click.option("-j", "--jobs", type=click.IntRange(1, 64), default=8, help="Images verified at once [8].")
@click.option("--json", "as_json", is_flag=True, help="Print the evidence records as JSON.")
@registry_options
@allow_insecure_registry_option
@timeout_option("timeout")
def verify(images: tuple[str, ...], trust_dir: str | None, key_refs: tuple[str, ...],
           certificate_identity: str | None, certificate_identity_regexp: str | None,
           certificate_oidc_issuer: str | None, certificate_oidc_issuer_regexp: str | None,
           trusted_roots: tuple[str, ...], certificate_chain: str | None, insecure_ignore_tlog: bool,
           insecure_ignore_sct: bool, annotation_pairs: tuple[str, ...], signature_dir: str | None,
           local_image: bool, aliases: tuple[str, ...], signature_repos: tuple[str, ...], jobs: int,
           as_json: bool, insecure: tuple[str, ...], ca_file: str | None) -> None:
    """Verify images in the local registry offline; exit 0 only when every one may run.

    With --trust DIR the directory's policy decides (refs are translated back to their upstream names
    through its map.json). With --key or --certificate-identity/--certificate-oidc-issuer, every image
    must carry a signature from that key or identity (with --trust too, the identity replaces the directory's
    policy; its trusted roots and map.json still apply). No network beyond the registry named in each REF
    (its --registry-alias address, the token service it names, and redirects only to --allow-redirect hosts).
    """
    from airgap.errors import ConfigError
    from airgap.oci.registry import RegistryClient
    from airgap.refs.translate import Aliases
    from airgap.verification.adhoc import policy_for_identity, policy_for_keys
    from airgap.verification.trust import Trust
    from airgap.verification.verifier import Verifier

    keyless = any((certificate_identity, certificate_identity_regexp, certificate_oidc_issuer,
                   certificate_oidc_issuer_regexp))
    _check_usage(trust_dir, key_refs, keyless, certificate_chain, insecure_ignore_sct, insecure_ignore_tlog,
                 local_image, signature_repos, signature_dir)
    if not trust_dir and not key_refs and not keyless:
        raise ConfigError("nothing to verify against: give --trust DIR, --key KEYREF or "
                          "--certificate-identity/--certificate-oidc-issuer")
    annotations = parse_annotations(annotation_pairs, "-a/--annotations")
    roots = {f"root{i}" if i else "default": Path(p).read_bytes() for i, p in enumerate(trusted_roots)}
    if trust_dir:
        trust = Trust.load(trust_dir)
        trust.roots.update(roots)
    else:
        from airgap.keys.public import public_pem
        from airgap.keys.references import load_public_keys

        pems = [(f"{ref}#{i}" if i else ref, public_pem(k)) for ref in key_refs
                for i, k in enumerate(load_public_keys(ref))]
        trust = Trust.from_keys(pems, roots=roots)
    policy = None
    if keyless:
        policy = policy_for_identity(trust, identity=certificate_identity, identity_regexp=certificate_identity_regexp,
                                     issuer=certificate_oidc_issuer, issuer_regexp=certificate_oidc_issuer_regexp,
                                     require_tlog=not insecure_ignore_tlog, require_sct=not insecure_ignore_sct,
                                     certificate_chain=Path(certificate_chain).read_bytes() if certificate_chain
                                     else None)
    elif key_refs:
        policy = policy_for_keys(trust, require_tlog=not insecure_ignore_tlog)
    repos = list(signature_repos) or ([os.environ["COSIGN_REPOSITORY"]] if os.environ.get("COSIGN_REPOSITORY")
                                      else [])
    parsed_aliases = Aliases.parse(list(aliases))
    named = registry_hosts([] if local_image else [*images, *repos])
    named += tuple(parsed_aliases.access_host(h) for h in named)
    verifier = Verifier(trust, policy, RegistryClient(make_options(insecure, ca_file, named=named)),
                        parsed_aliases, repos, timeout=None,  # -t/--timeout bounds the command
                        signature_dir=Path(signature_dir) if signature_dir else None, local_images=local_image,
                        annotations=annotations)
    warnings = _policy_warnings(trust, policy)
    if keyless and trust_dir:
        warnings.insert(0, f"--certificate-identity replaces the policy of --trust {trust_dir} (its trusted roots "
                           "and map.json still apply)")
    for warning in warnings:
        echo(f"warning: {warning}", err=True)
    results = verifier.verify_many(list(images), jobs=jobs)
    if as_json:
        emit_json(results_json(results) | {"policy_warnings": warnings})
    else:
        for result in results:
            echo(_render(result))
    if not all(results):
        denied = sum(1 for r in results if not r)
        if not as_json:
            echo(f"error: {denied} of {len(results)} image(s) failed verification", err=True)
        sys.exit(1)


def _check_usage(trust_dir: str | None, key_refs: tuple[str, ...], keyless: bool, certificate_chain: str | None,
                 insecure_ignore_sct: bool, insecure_ignore_tlog: bool, local_image: bool,
                 signature_repos: tuple[str, ...], signature_dir: str | None) -> None:
    """Flags that cannot go together: a usage error (exit 2) naming both."""
    if trust_dir and key_refs:
        conflict("--trust", "--key", "with --trust the directory's keys and policy decide; give one")
    if key_refs and keyless:
        conflict("--key", "--certificate-identity/--certificate-oidc-issuer",
                 "a signature is checked with a key or keyless, not both (as in cosign); give one")
    if insecure_ignore_tlog and trust_dir and not keyless:
        conflict("--insecure-ignore-tlog", "--trust", "with --trust the policy says whether a log entry is needed "
                 "(ctlog: {disabled: true})")
    if (certificate_chain or insecure_ignore_sct) and not keyless:
        flag = "--certificate-chain" if certificate_chain else "--insecure-ignore-sct"
        raise click.UsageError(f"{flag} is for keyless verification: give it with --certificate-identity and "
                               "--certificate-oidc-issuer")
    if local_image and trust_dir and not keyless:
        raise click.UsageError("--local-image with --trust: an image in a layout has no registry name for the "
                               "trust's policies to select; verify it with --key (without --trust) or "
                               "--certificate-identity")
    if local_image and signature_repos:
        conflict("--local-image", "--signature-repo", "the signatures are in the layout (or --signature-dir)")
    if signature_dir and signature_repos:
        conflict("--signature-dir", "--signature-repo", "the signatures come from the directory only")


def results_json(results: list[VerificationResult]) -> dict[str, Any]:
    """``{"results": [...], "summary": {...}}``, the same shape whatever the number of images
    (schemas/verify.schema.json); ``summary.ok`` is what the exit status says."""
    decisions = [r.decision for r in results]
    return {"results": [r.evidence for r in results],
            "summary": {"images": len(results), "allow": decisions.count("allow"), "warn": decisions.count("warn"),
                        "deny": decisions.count("deny"), "ok": all(results)}}


def _policy_warnings(trust: Any, policy: Any) -> list[str]:
    """What the policy files in effect (the command line's, else the trust's and each site bundle's) warn about."""
    if policy is not None:
        return list(policy.warnings)
    sets = [t.policy for t in (trust, *trust.scopes.values()) if t.policy is not None]
    return [w for s in sets for w in s.warnings]


def register(cli: click.Group) -> None:
    cli.add_command(verify)
