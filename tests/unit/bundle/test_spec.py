"""The bundle spec: the issue's example loads, trust files load as a trust directory, errors name file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from airgap.bundle.spec import BundleSpec
from airgap.errors import ConfigError

EXAMPLE = """apiVersion: airgap/v1
kind: Bundle
metadata: {name: demo, version: 1.0.0}
images:
  - 127.0.0.1:5000/team/app0:1.0          # shorthand
  - ref: quay.io/keycloak/keycloak:21.1.2
    platforms: [linux/amd64]
keys:
  - {name: release, path: keys/release.pub}
trustedRoots: [public-good]
policies:
  - name: team
    images: [{glob: "127.0.0.1:5000/team/**"}]
    authorities: [{key: {name: release}, ctlog: {disabled: true}}]
noMatchPolicy: deny
"""

CIP_FILE = """apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata: {name: keycloak}
spec:
  images: [{glob: "quay.io/keycloak/**"}]
  authorities: [{key: {secretRef: {name: release}}}]
"""


@pytest.fixture
def spec_dir(tmp_path: Path) -> Path:
    from cryptography.hazmat.primitives.asymmetric import ec

    from airgap.keys.public import public_pem

    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "release.pub").write_bytes(public_pem(ec.generate_private_key(ec.SECP256R1()).public_key()))
    (tmp_path / "cip.yaml").write_text(CIP_FILE)
    return tmp_path


def load(spec_dir: Path, text: str, env: dict[str, str] | None = None) -> BundleSpec:
    (spec_dir / "demo.yaml").write_text(text)
    return BundleSpec.load(spec_dir / "demo.yaml", env=env or {})


def test_issue_example(spec_dir: Path) -> None:
    s = load(spec_dir, EXAMPLE + "policyFiles: [cip.yaml]\n")
    assert (s.name, s.version, s.created) == ("demo", "1.0.0", 0)
    assert [(i.ref, i.platforms) for i in s.images] == [
        ("127.0.0.1:5000/team/app0:1.0", None), ("quay.io/keycloak/keycloak:21.1.2", ("linux/amd64",))]
    assert [(k.name, k.path) for k in s.keys] == [("release", (spec_dir / "keys/release.pub").resolve())]
    assert s.trusted_roots == ("public-good",)
    assert dict(s.key_policies) == {"release": ("keycloak", "team")}
    assert "secretRef" not in s.policy_yaml()  # rewritten to key.name: keys live in the key manifest


def test_trust_files_load_as_a_trust_directory(spec_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    from airgap.bundle.inspect import write_trust
    from airgap.refs import parse
    from airgap.verification.trust import Trust

    s = load(spec_dir, EXAMPLE + "policyFiles: [cip.yaml]\n")
    files = s.trust_files()
    assert sorted(files) == ["trust/keys.json", "trust/keys/release.pub", "trust/policy.yaml",
                             "trust/trusted_roots/public-good.json"]
    out = tmp_path_factory.mktemp("trust")
    write_trust(files, out)
    trust = Trust.load(out)
    assert trust.key_manifest() == s.key_manifest()
    assert trust.policy is not None and trust.policy.no_match == "deny"
    assert [p.name for p in trust.policy.select(parse("quay.io/keycloak/keycloak:1"))] == ["keycloak"]
    assert trust.trusted_root("public-good") is not None
    assert s.trust_files() == files  # deterministic


@pytest.mark.parametrize(("created", "env", "epoch"), [
    ("created: 2024-01-01T00:00:00Z\n", {}, 1704067200),
    ("created: '2024-01-01T01:00:00+01:00'\n", {}, 1704067200),
    ("created: 1700000000\n", {"SOURCE_DATE_EPOCH": "5"}, 1700000000),
    ("", {"SOURCE_DATE_EPOCH": "1234"}, 1234),
    ("", {}, 0),
])
def test_created(spec_dir: Path, created: str, env: dict[str, str], epoch: int) -> None:
    assert load(spec_dir, EXAMPLE + created, env).created == epoch


ERRORS = [
    (("platforms: [linux/amd64]", "platforms: linux/amd64"),
     r"demo.yaml:7: images\[1\].platforms: expected a list of os/arch"),
    (("platforms: [linux/amd64]", "platforms: [amd64]"), r"demo.yaml:7: images\[1\].platforms: expected a list"),
    (("app0:1.0", "App0:1.0"), r"demo.yaml:5: images\[0\]: invalid image reference"),
    (("app0:1.0          # shorthand", "app0:1.0\n  - 127.0.0.1:5000/team/app0:1.0"),
     r"demo.yaml:6: images\[1\]: .* listed twice"),
    (("apiVersion: airgap/v1", "apiVersion: airgap/v2"), "demo.yaml:1: apiVersion: expected airgap/v1"),
    (("noMatchPolicy: deny", "nomatch: deny"), r"demo.yaml:15: nomatch: unknown field"),
    (("{name: demo, version: 1.0.0}", "{version: 1.0.0}"), "demo.yaml:3: metadata.name: required field missing"),
    (("{name: demo,", "{name: Demo_1,"), "demo.yaml:3: metadata.name: invalid name"),
    (("keys/release.pub", "keys/missing.pub"), r"demo.yaml:9: keys\[0\].path: no such file"),
    (("keys/release.pub", "cip.yaml"), r"demo.yaml:9: keys\[0\].path: .*not a PEM public key"),
    (("{key: {name: release}", "{key: {name: other}"), r"demo.yaml:12: policies\[0\]: .*no key named 'other'"),
    (("authorities: [{key", "authorities: [{kee"), r"demo.yaml:12: policies\[0\]: .*unknown field"),
    (("    images: [{glob", "    owner: x\n    images: [{glob"), r"demo.yaml:13: policies\[0\].owner: unknown field"),
    (("noMatchPolicy: deny", "noMatchPolicy: maybe"), "demo.yaml:15: .*noMatchPolicy: invalid value 'maybe'"),
    (("trustedRoots: [public-good]", "trustedRoots: [nope.json]"), r"demo.yaml:10: trustedRoots\[0\]: no such file"),
    (("kind: Bundle", "kind: Bundle\nkind: Other"), "demo.yaml:3: kind: duplicate key"),
    (("images:\n", "images: [\n"), "demo.yaml:.*: invalid YAML"),
    (("noMatchPolicy: deny", "policyFiles: [keys/release.pub]"), r"policyFiles\[0\]"),
]


@pytest.mark.parametrize(("edit", "message"), ERRORS, ids=[m for _e, m in ERRORS])
def test_errors_name_file_line_and_field(spec_dir: Path, edit: tuple[str, str], message: str) -> None:
    assert edit[0] in EXAMPLE
    with pytest.raises(ConfigError, match=message) as info:
        load(spec_dir, EXAMPLE.replace(edit[0], edit[1], 1))
    assert "\n" not in str(info.value)


def test_policy_file_must_hold_cips(spec_dir: Path) -> None:
    (spec_dir / "bad.yaml").write_text("kind: ConfigMap\n")
    with pytest.raises(ConfigError, match=r"demo.yaml:16: policyFiles\[0\]: .*only ClusterImagePolicy"):
        load(spec_dir, EXAMPLE + "policyFiles: [bad.yaml]\n")
    (spec_dir / "dupe.yaml").write_text(CIP_FILE.replace("keycloak}", "team}"))
    with pytest.raises(ConfigError, match="duplicate policy name 'team'"):
        load(spec_dir, EXAMPLE + "policyFiles: [dupe.yaml]\n")


def test_bad_source_date_epoch(spec_dir: Path) -> None:
    with pytest.raises(ConfigError, match="SOURCE_DATE_EPOCH"):
        load(spec_dir, EXAMPLE, {"SOURCE_DATE_EPOCH": "yesterday"})


# ---- airgap.image: airgap's own image ------------------------------------------------------------------------

def test_airgap_image_is_one_more_image(spec_dir: Path) -> None:
    s = load(spec_dir, EXAMPLE + "airgap:\n  image: 127.0.0.1:5000/tools/airgap:0.1.0\n")
    assert s.airgap_image == "127.0.0.1:5000/tools/airgap:0.1.0"
    assert [(i.ref, i.platforms) for i in s.images][-1] == ("127.0.0.1:5000/tools/airgap:0.1.0", None)
    assert len(s.images) == 3
    s = load(spec_dir, EXAMPLE + "airgap: {image: {ref: 127.0.0.1:5000/tools/airgap:0.1.0, "
                                 "platforms: [linux/arm64]}}\n")
    assert (s.images[-1].platforms, s.airgap_image) == (("linux/arm64",), "127.0.0.1:5000/tools/airgap:0.1.0")
    assert load(spec_dir, EXAMPLE).airgap_image is None
    alone = load(spec_dir, EXAMPLE.replace("images:\n  - 127.0.0.1:5000/team/app0:1.0          # shorthand\n"
                                           "  - ref: quay.io/keycloak/keycloak:21.1.2\n    platforms: [linux/amd64]\n",
                                           "images: []\n") + "airgap: {image: 127.0.0.1:5000/tools/airgap:0.1.0}\n")
    assert [i.ref for i in alone.images] == ["127.0.0.1:5000/tools/airgap:0.1.0"]  # a bundle of airgap alone
    with pytest.raises(ConfigError, match=r"demo.yaml:4: images: required field missing"):
        load(spec_dir, EXAMPLE.replace("images:\n  - 127.0.0.1:5000/team/app0:1.0          # shorthand\n"
                                       "  - ref: quay.io/keycloak/keycloak:21.1.2\n    platforms: [linux/amd64]\n",
                                       "images: []\n"))


AIRGAP_ERRORS = [
    ("airgap: registry.example.com/airgap:1\n", r"demo.yaml:16: airgap: expected a mapping, got str"),
    ("airgap: {}\n", r"demo.yaml:16: airgap.image: required field missing"),
    ("airgap:\n  image: x:1\n  cli: true\n", r"demo.yaml:18: airgap.cli: unknown field"),
    ("airgap:\n  image: Tools/Airgap:1\n", r"demo.yaml:17: airgap.image: invalid image reference"),
    ("airgap:\n  image: {ref: x:1, platforms: amd64}\n", r"demo.yaml:17: airgap.image.platforms: expected a list"),
    ("airgap:\n  image: 127.0.0.1:5000/team/app0:1.0\n",
     r"demo.yaml:17: airgap.image: .* listed twice \(also images\[0\]\)"),
]


@pytest.mark.parametrize(("extra", "message"), AIRGAP_ERRORS, ids=[m for _e, m in AIRGAP_ERRORS])
def test_airgap_errors_name_file_line_and_field(spec_dir: Path, extra: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load(spec_dir, EXAMPLE + extra)
    assert "\n" not in str(info.value)


def test_the_example_specs_load() -> None:
    examples = sorted((Path(__file__).parents[3] / "bundles").glob("*.yaml"))
    assert len(examples) >= 5
    loaded = {p.name: BundleSpec.load(p, env={}) for p in examples}
    assert loaded["site-kit.yaml"].airgap_image == "127.0.0.1:5000/tools/airgap:0.1.0"
