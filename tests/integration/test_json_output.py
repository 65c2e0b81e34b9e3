"""Every `--json` document, as real commands print it on real inputs, against its JSON Schema (schemas/).

One scenario (two real registries, signed images, a bundle, its split and delta forms, a site) runs every command
that has `--json`, successes and failures; each document must validate against its schema (every object closed:
a field added without its schema fails here), keys are snake_case (maps keyed by file names, and the fields of a
wire format quoted as written, excepted), and sizes are integers. A command that gains `--json` without a case
here fails `test_every_json_command_is_covered`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from conftest import pusher_for
from jsonschema import Draft202012Validator
from support.images import push_image
from support.registries import Registry
from support.schemas import BASE, SCHEMAS_DIR, check
from support.signing import KeyPair, write_keypair

from airgap.cli import cli
from airgap.oci.registry import RegistryClient
from airgap.signing.sign import sign_image

# command path -> the schema of its --json document
SCHEMA_OF = {
    "copy": "copy", "pack": "pack", "load": "load", "inspect": "inspect", "verify": "verify",
    "verify-bundle": "verify-bundle", "sign": "sign", "attest": "sign", "verify-attestation": "verify-attestation",
    "key generate": "key", "key import": "key", "key public": "key-public", "site list": "site-list",
    "site show": "site-show", "site remove": "site-remove", "site inventory": "site-inventory",
    "triangulate": "triangulate", "generate-key-pair": "key", "import-key-pair": "key",
}
WIRE_MAPS = {"files", "settings", "roots", "key_manifest", "subjects", "bundle"}  # keyed by names, or quoted as written
SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")


def bad_keys(doc: Any, path: str = "") -> list[str]:
    """Keys that are not snake_case, outside maps keyed by names or quoting a wire format."""
    out: list[str] = []
    if isinstance(doc, dict):
        for key, value in doc.items():
            if not SNAKE.match(key):
                out.append(f"{path}/{key}")
            if key not in WIRE_MAPS:
                out += bad_keys(value, f"{path}/{key}")
    elif isinstance(doc, list):
        for i, item in enumerate(doc):
            out += bad_keys(item, f"{path}[{i}]")
    return out


def floats_named_like_sizes(doc: Any, path: str = "") -> list[str]:
    out: list[str] = []
    if isinstance(doc, dict):
        for key, value in doc.items():
            if re.search(r"(^|_)(size|bytes)$", key) and not (value is None or isinstance(value, int)):
                out.append(f"{path}/{key}={value!r}")
            out += floats_named_like_sizes(value, f"{path}/{key}")
    elif isinstance(doc, list):
        for item in doc:
            out += floats_named_like_sizes(item, path)
    return out


@dataclass
class Run:
    args: list[str]
    exit_code: int
    stdout: str
    stderr: str

    @property
    def doc(self) -> Any:
        return json.loads(self.stdout)


@dataclass
class World:
    src: Registry
    dst: Registry
    key: KeyPair
    tmp: Path
    runs: dict[str, list[Run]] = field(default_factory=dict)

    def run(self, *args: str, code: int = 0, env: dict[str, str] | None = None) -> Run:
        result = CliRunner().invoke(cli, list(args), catch_exceptions=False,
                                    env={"AIRGAP_CACHE_DIR": str(self.tmp / "cache"), **(env or {})})
        run = Run(list(args), result.exit_code, result.stdout, result.stderr)
        assert result.exit_code == code, (args, result.stdout, result.stderr)
        words = [a for a in args if not a.startswith("-")]
        name = " ".join(words[:2]) if words[0] in ("key", "site") else words[0]
        self.runs.setdefault(name, []).append(run)
        return run


@pytest.fixture(scope="module")
def world(module_registry_factory: Callable[..., Registry], tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("json")
    w = World(module_registry_factory(), module_registry_factory(), write_keypair(tmp / "keys", "release"), tmp)
    src = w.src.host
    pusher = pusher_for(w.src)
    push_image(pusher, "team/app", "1.0", platforms=("linux/amd64", "linux/arm64"), layer_sizes=(40_000,))
    push_image(pusher, "team/tool", "1.0", layer_sizes=(30_000,))
    push_image(pusher, "team/unsigned", "1.0")
    sign_image(f"{src}/team/app:1.0", w.key.signer, client=RegistryClient(), recursive=True)
    (tmp / "release.pub").write_bytes(w.key.public_pem)
    (tmp / "spec.yaml").write_text(f"""\
apiVersion: airgap/v1
kind: Bundle
metadata: {{name: demo, version: 1.0.0}}
created: 2024-01-01T00:00:00Z
images: [{src}/team/app:1.0]
airgap: {{image: {src}/team/tool:1.0}}
keys: [{{name: release, path: release.pub}}]
policies:
  - name: team
    images: [{{glob: "{src}/team/**"}}]
    authorities: [{{key: {{name: release}}, ctlog: {{disabled: true}}}}]
""")
    pub, key = str(tmp / "release.pub"), str(w.key.private_path)
    # the connected side: sign, attest, copy, pack (whole, split)
    w.run("sign", "--json", "--key", key, f"{src}/team/tool:1.0")
    (tmp / "pred.json").write_text('{"builder": {"id": "ci"}}')
    w.run("attest", "--json", "--key", key, "--predicate", str(tmp / "pred.json"), "--type", "slsaprovenance",
          f"{src}/team/tool:1.0")
    w.run("copy", "--json", f"{src}/team/app:1.0", f"oci:{tmp / 'layout'}:1.0")
    w.run("pack", "--json", str(tmp / "spec.yaml"), "-o", str(tmp / "demo.tar"), "--key", key)
    (tmp / "media").mkdir()
    w.run("pack", "--json", str(tmp / "spec.yaml"), "-o", str(tmp / "media" / "demo.tar"), "--key", key,
          "--split-size", "32K")
    w.run("inspect", "--json", str(tmp / "demo.tar"))
    w.run("inspect", "--json", str(tmp / "media"), "--key", pub)
    w.run("verify-bundle", "--json", str(tmp / "demo.tar"), "--key", pub)
    # the disconnected side: load (into a site), verify, audit, the site
    w.run("load", "--json", str(tmp / "media"), "--registry", w.dst.host, "--key", pub, "--site", str(tmp / "site"),
          "--trust-out", str(tmp / "trust"))
    w.run("load", "--json", str(tmp / "demo.tar"), "--registry", w.dst.host, "--key", pub)  # already loaded
    app = f"{w.dst.host}/team/app:1.0"
    w.run("verify", "--json", "--trust", str(tmp / "trust"), app)
    w.run("verify", "--json", "--key", pub, "--insecure-ignore-tlog", f"{src}/team/app:1.0",
          f"{src}/team/unsigned:1.0", code=1)
    w.run("site", "list", "--json", "--site", str(tmp / "site"))
    w.run("site", "show", "demo", "--json", "--site", str(tmp / "site"))
    w.run("site", "inventory", "--json", "--registry", w.dst.host, "-o", str(tmp / "inventory.json"), "--key", key)
    w.run("pack", "--json", str(tmp / "spec.yaml"), "-o", str(tmp / "delta.tar"), "--key", key, "--delta",
          str(tmp / "inventory.json"), "--delta-key", pub)
    w.run("inspect", "--json", str(tmp / "delta.tar"), "--key", pub)
    w.run("verify-bundle", "--json", str(tmp / "delta.tar"), "--key", pub)
    w.run("load", "--json", str(tmp / "delta.tar"), "--registry", f"{w.dst.host}/delta", "--key", pub)
    audit = CliRunner().invoke(cli, ["audit", "--registry", w.dst.host, "--images", str(_lines(tmp, app)), "--trust",
                                     str(tmp / "trust"), "-o", str(tmp / "evidence"), "--format", "json", "--key", key],
                               catch_exceptions=False)
    assert audit.exit_code == 0, audit.stderr
    w.runs["audit"] = [Run(["audit"], 0, audit.stdout, audit.stderr)]
    w.run("verify-attestation", "--json", str(tmp / "evidence" / "audit.vsa.json"), "--key", pub, "--evidence",
          str(tmp / "evidence" / "audit.json"))
    # keys
    pw = {"COSIGN_PASSWORD": "s3cret"}
    w.run("key", "generate", "--json", "--output-prefix", str(tmp / "k2"), env=pw)
    w.run("key", "import", "--json", str(w.key.private_path), "--output-prefix", str(tmp / "k3"), env=pw)
    w.run("key", "public", "--json", pub)
    w.run("generate-key-pair", "--json", "--output-key-prefix", str(tmp / "k4"), env=pw)
    w.run("import-key-pair", "--json", "--key", str(w.key.private_path), "--output-key-prefix", str(tmp / "k5"), env=pw)
    w.run("triangulate", "--json", f"{src}/team/app:1.0")
    w.run("triangulate", "--json", "--type", "attestation", f"{src}/team/tool:1.0")
    w.run("key", "public", "--json", str(tmp / "k2.key"), env=pw)
    w.run("site", "remove", "demo", "--json", "--site", str(tmp / "site"))
    yield w


def _lines(tmp: Path, *refs: str) -> Path:
    path = tmp / "images.txt"
    path.write_text("".join(f"{r}\n" for r in refs))
    return path


def json_commands(group: click.Group, prefix: str = "") -> set[str]:
    out: set[str] = set()
    for name, command in group.commands.items():
        path = f"{prefix}{name}"
        if isinstance(command, click.Group):
            out |= json_commands(command, f"{path} ")
        elif any("--json" in p.opts for p in command.params if isinstance(p, click.Option)):
            out.add(path)
    return out


def test_every_json_command_is_covered() -> None:
    assert json_commands(cli) == set(SCHEMA_OF)


def test_every_schema_is_a_valid_schema() -> None:
    for path in SCHEMAS_DIR.glob("*.schema.json"):
        schema = json.loads(path.read_text())
        Draft202012Validator.check_schema(schema)
        assert schema["$id"] == BASE + path.name


@pytest.mark.parametrize("command", sorted(SCHEMA_OF))
def test_json_documents_match_their_schema(world: World, command: str) -> None:
    runs = world.runs.get(command)
    assert runs, f"the scenario never ran {command} --json"
    for run in runs:
        doc = run.doc
        check(SCHEMA_OF[command], doc)
        assert not bad_keys(doc), (run.args, bad_keys(doc))
        assert not floats_named_like_sizes(doc), (run.args, floats_named_like_sizes(doc))


def test_one_shape_whatever_the_count(world: World) -> None:
    one, two = (run.doc for run in world.runs["verify"])
    assert len(one["results"]) == 1 and one["summary"]["ok"] is True
    assert len(two["results"]) == 2 and two["summary"] == {"images": 2, "allow": 1, "warn": 0, "deny": 1, "ok": False}
    single, many = (run.doc for run in world.runs["key public"])
    assert len(single["keys"]) == 1 and len(many["keys"]) == 1
    whole, split, delta = (run.doc for run in world.runs["inspect"])
    assert whole["created"] == "2024-01-01T00:00:00Z" and whole["parts"] is None and whole["delta"] is None
    assert split["parts"]["part_size"] == 32 * 1024 and split["parts"]["signed_by"] == world.key.key_id
    assert delta["delta"]["omitted_blobs"] > 0
    loads = world.runs["load"]
    assert loads[0].doc["parts"] is not None and loads[1].doc["already_loaded"] is True
    assert loads[2].doc["delta"]["kind"] == "inventory"


def test_audit_evidence_matches_its_schema(world: World) -> None:
    doc = world.runs["audit"][0].doc
    check("audit-evidence", doc)
    on_disk = json.loads((world.tmp / "evidence" / "audit.json").read_text())
    check("audit-evidence", on_disk)


@pytest.mark.parametrize(("args", "code"), [
    (["inspect", "--json", "/nonexistent/demo.tar"], 2),
    (["load", "--json", "demo.tar"], 2),  # a usage error: --registry is missing
    (["verify", "--json", "127.0.0.1:1/team/app:1.0"], 2),  # nothing to verify against
    (["copy", "--json", "-t", "5s", "127.0.0.1:1/team/app:1.0", "oci:out"], 1),  # nothing listens there
    (["site", "show", "nobody", "--json", "--site", "."], 2),
    (["key", "public", "--json", "nonexistent.pub"], 2),
    (["inspect", "--json", "--bundle-digest", "sha256:12", "demo.tar"], 2),
])
def test_errors_are_json_documents_too(world: World, args: list[str], code: int, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(world.tmp)
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == code, (result.stdout, result.stderr)
    doc = json.loads(result.stdout)
    check("error", doc)
    assert doc["exit_code"] == code
    assert "rror" in result.stderr  # the human line stays on stderr
    assert result.stderr.strip().splitlines()[-1].lower().startswith("error: ")


def test_pack_to_stdout_puts_its_documents_on_stderr(world: World, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["pack", "--json", str(world.tmp / "spec.yaml"), "-o", "-", "--no-verify"],
                                catch_exceptions=False)
    assert result.exit_code == 0
    assert result.stdout_bytes[:512].startswith(b"airgap-bundle.json")  # the bundle, and nothing else
    check("pack", json.loads(result.stderr))
    result = CliRunner().invoke(cli, ["pack", "--json", str(tmp_path / "missing.yaml"), "-o", "-"],
                                catch_exceptions=False)
    assert result.exit_code == 2 and result.stdout == ""
    doc, _end = json.JSONDecoder().raw_decode(result.stderr[result.stderr.index("{"):])
    check("error", doc)
