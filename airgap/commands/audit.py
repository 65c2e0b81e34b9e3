"""`airgap audit` (evidence, human reports, PolicyReports, a signed VSA) and `airgap verify-attestation`."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any

import click

from airgap.commands.common import (
    echo,
    emit_json,
    make_options,
    registry_alias_option,
    registry_options,
    timeout_option,
)

FORMATS = ("json", "md", "html", "policyreport")
OUTPUT_FILES = {"json": "audit.json", "md": "audit.md", "html": "audit.html", "policyreport": "policyreports.yaml"}
VSA_FILE = "audit.vsa.json"


def _render(doc: dict[str, Any], fmt: str) -> str:
    from airgap.audit.evidence import dumps
    from airgap.audit.render import to_html, to_markdown
    from airgap.audit.reports import policy_reports, reports_yaml

    if fmt == "json":
        return dumps(doc).decode()
    if fmt == "md":
        return to_markdown(doc)
    if fmt == "html":
        return to_html(doc)
    return reports_yaml(policy_reports(doc))


def _write_outputs(out: Path, files: dict[str, bytes]) -> None:
    """Every output as one change (:func:`airgap.fileio.write_files`): a failure or a Ctrl-C while writing
    leaves the earlier outputs as they were, and removes the directory when this run created it."""
    from airgap.fileio import write_files

    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        write_files(out, files, mode=0o644)
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()  # only when empty: never what something else put there
        raise


@click.command()
@click.option("--trust", "trust_dir", type=click.Path(file_okay=False), required=True,
              help="Trust directory: keys/, trusted_root.json, policy.yaml, map.json.")
@click.option("--registry", "registry", default=None, metavar="HOST",
              help="The local registry; without --images/--bundle, every tag of every repository it lists.")
@click.option("--images", "images_file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="File of refs to audit, one per line (lines without a host live on --registry).")
@click.option("--pods", "pods_file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Output of `kubectl get pods -A -o json`: audit the images the cluster runs.")
@click.option("--bundle", "bundle", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Audit the images a bundle file lists, where `airgap load` put them (the trust's map.json).")
@click.option("-o", "--output-dir", type=click.Path(file_okay=False), default=None,
              help="Write every output here: audit.json, audit.md, audit.html, policyreports.yaml "
                   "(and audit.vsa.json with --key).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
              help="Print this output to stdout [json without -o; nothing with -o].")
@click.option("--key", "key_ref", default=None, metavar="KEYREF",
              help="Sign a SLSA verification summary attestation with this key (password: COSIGN_PASSWORD).")
@registry_alias_option
@click.option("-j", "--jobs", type=click.IntRange(1, 64), default=8, help="Images verified at once [8].")
@click.option("--exit-zero", is_flag=True, help="Exit 0 even when images fail (the reports still say so).")
@registry_options
@timeout_option("bulk_timeout")
def audit(trust_dir: str, registry: str | None, images_file: str | None, pods_file: str | None, bundle: str | None,
          output_dir: str | None, fmt: str | None, key_ref: str | None, aliases: tuple[str, ...], jobs: int,
          exit_zero: bool, insecure: tuple[str, ...], ca_file: str | None) -> None:
    """Audit images against the trust directory's policy and write reproducible evidence.

    Inputs (combine freely): --registry HOST (every repository and tag it lists), --images FILE,
    --pods FILE (the running cluster), --bundle FILE. Each image is verified once, through the same
    verifier as `airgap verify`. Outputs: a versioned JSON evidence document, Markdown and HTML reports,
    PolicyReports/ClusterPolicyReport (wgpolicyk8s.io/v1alpha2), and with --key a signed VSA that
    `airgap verify-attestation` or `cosign verify-blob-attestation` checks offline. Exit 1 when any image
    fails or cannot be checked (after writing every output), unless --exit-zero.
    """
    from airgap.audit.evidence import STATUSES, dumps, run_audit
    from airgap.audit.inputs import Inputs, bundle_refs, parse_image_list, parse_pods, registry_images
    from airgap.errors import ConfigError
    from airgap.oci.registry import RegistryClient
    from airgap.refs.translate import Aliases
    from airgap.verification.trust import Trust
    from airgap.verification.verifier import Verifier

    if not (registry or images_file or pods_file or bundle):
        raise ConfigError("nothing to audit: give --registry HOST, --images FILE, --pods FILE or --bundle FILE")
    signer = None
    if key_ref:
        from airgap.keys.references import load_signer

        signer = load_signer(key_ref)  # before the audit: a wrong password should not cost a full run
    trust = Trust.load(trust_dir)
    access = Aliases.parse(list(aliases))
    client = RegistryClient(make_options(insecure, ca_file))
    inputs = Inputs(registry=registry)
    if images_file:
        data = Path(images_file).read_bytes()
        inputs.images_file = (images_file, data)
        inputs.refs += parse_image_list(data.decode("utf-8", "replace"), registry)
    if pods_file:
        data = Path(pods_file).read_bytes()
        inputs.pods_file = (pods_file, data)
        inputs.workloads = parse_pods(data)
    if bundle:
        inputs.bundle, bundle_images = bundle_refs(Path(bundle), trust)
        inputs.refs += bundle_images
    if registry and not images_file and not bundle:
        inputs.refs += registry_images(client, registry, access.access_host(registry))
    repos = [os.environ["COSIGN_REPOSITORY"]] if os.environ.get("COSIGN_REPOSITORY") else []
    verifier = Verifier(trust, None, client, access, repos)
    doc = run_audit(verifier, inputs, jobs=jobs)
    evidence = dumps(doc)
    vsa = None
    if signer is not None:
        from airgap.audit.vsa import sign_vsa

        vsa = sign_vsa(signer, doc, evidence)
    if output_dir:
        _write_outputs(Path(output_dir), {filename: evidence if name == "json" else _render(doc, name).encode()
                                          for name, filename in OUTPUT_FILES.items()}
                       | ({VSA_FILE: vsa} if vsa is not None else {}))
    if fmt or not output_dir:
        echo(_render(doc, fmt or "json"), nl=False)
    summary = doc["summary"]
    failed = summary["FAIL"] + summary["ERROR"]
    echo(f"audit: {summary['images']} image(s): " + ", ".join(
        f"{summary[k]} {k}" for k in STATUSES) + (f"; written to {output_dir}" if output_dir else ""),
        err=True)
    if failed and not exit_zero:
        echo(f"error: {failed} of {summary['images']} image(s) failed the audit", err=True)
        sys.exit(1)


@click.command("verify-attestation")
@click.argument("attestation", type=click.Path(dir_okay=False, exists=True))
@click.option("--key", "key_refs", multiple=True, required=True, metavar="KEYREF",
              help="Public key that must have signed it (file, env://VAR, k8s secret dir, pkcs11:); repeat for any-of.")
@click.option("--evidence", type=click.Path(dir_okay=False, exists=True), default=None,
              help="The evidence file (audit.json): require a subject with its digest.")
@click.option("--type", "predicate_type", default=None,
              help="Predicate type to require [https://slsa.dev/verification_summary/v1].")
@click.option("--require-passed", is_flag=True, help="Also fail unless the summary says PASSED.")
@click.option("--json", "as_json", is_flag=True, help="Print what was verified as JSON.")
def verify_attestation(attestation: str, key_refs: tuple[str, ...], evidence: str | None,
                       predicate_type: str | None, require_passed: bool, as_json: bool) -> None:
    """Check a verification summary attestation (a DSSE envelope, as `airgap audit --key` writes it) offline.

    Exit 0 when a signature verifies with --key and the statement has the predicate type (and, with
    --evidence, names that file's digest); --require-passed also needs verificationResult PASSED.
    """
    from airgap.audit.vsa import VSA_PREDICATE, verify_vsa
    from airgap.errors import VerificationError
    from airgap.keys.references import load_public_keys

    keys = [k for ref in key_refs for k in load_public_keys(ref)]
    check = verify_vsa(Path(attestation).read_bytes(), keys,
                       evidence=Path(evidence).read_bytes() if evidence else None,
                       predicate_type=predicate_type or VSA_PREDICATE)
    if as_json:
        emit_json(check.to_json())
    else:
        echo(f"Verified OK: {attestation} signed by {check.key_id}")
        echo(f"  predicate {check.predicate_type}: {check.verification_result or '(none)'} "
                   f"for {check.resource_uri or '(no resourceUri)'} at {check.time_verified or '(no time)'}")
        echo(f"  {len(check.subjects)} subject(s)" + ("; evidence digest matches" if check.evidence_checked
                                                            else ""))
    if require_passed and check.verification_result != "PASSED":
        raise VerificationError(f"the attestation is authentic but records {check.verification_result or 'no result'}"
                                ", not PASSED")


def register(cli: click.Group) -> None:
    cli.add_command(audit)
    cli.add_command(verify_attestation)
