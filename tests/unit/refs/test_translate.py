"""Ref translation: Zarf vectors, prefix rules both ways, the translation map, refusal to guess, aliases."""

import json
import zlib
from pathlib import Path

import pytest

from airgap import refs
from airgap.errors import ConfigError
from airgap.refs import translate
from airgap.refs.translate import Aliases, PrefixRules
from airgap.refs.translation_map import TranslationMap

D = "sha256:" + "84605f731c6a18194794c51e70021c671ab064654b751aa57e905bce55be13de"
D2 = "sha256:" + "3fbc632167424a6d997e74f52b878d7cc478225cffac6bc977eedfe51c7f4e79"
HOST = "127.0.0.1:31999"


def crc(name: str) -> int:
    return zlib.crc32(name.encode())


# Literal expectations from Zarf's own src/pkg/transform/image_test.go (target host "gitlab.com/project").
ZARF_VECTORS = [
    ("nginx", "gitlab.com/project/library/nginx:latest-zarf-3793515731", "gitlab.com/project/library/nginx:latest"),
    ("nginx:1.23.3", "gitlab.com/project/library/nginx:1.23.3-zarf-3793515731",
     "gitlab.com/project/library/nginx:1.23.3"),
    ("zarf-dev/zarf-agent:v0.22.1", "gitlab.com/project/zarf-dev/zarf-agent:v0.22.1-zarf-2183797434",
     "gitlab.com/project/zarf-dev/zarf-agent:v0.22.1"),
    ("defenseunicorns/zarf-agent:v0.22.1", "gitlab.com/project/defenseunicorns/zarf-agent:v0.22.1-zarf-4283503412",
     "gitlab.com/project/defenseunicorns/zarf-agent:v0.22.1"),
    (f"zarf-dev/zarf-agent@{D}", f"gitlab.com/project/zarf-dev/zarf-agent@{D}",
     f"gitlab.com/project/zarf-dev/zarf-agent@{D}"),
    (f"busybox:latest@{D2}", f"gitlab.com/project/library/busybox@{D2}", f"gitlab.com/project/library/busybox@{D2}"),
    ("ghcr.io/stefanprodan/podinfo:6.3.3", "gitlab.com/project/stefanprodan/podinfo:6.3.3-zarf-2985051089",
     "gitlab.com/project/stefanprodan/podinfo:6.3.3"),
    ("registry1.dso.mil/ironbank/opensource/zarf-dev/zarf/zarf-agent:v0.25.0",
     "gitlab.com/project/ironbank/opensource/zarf-dev/zarf/zarf-agent:v0.25.0-zarf-1211467612",
     "gitlab.com/project/ironbank/opensource/zarf-dev/zarf/zarf-agent:v0.25.0"),
    ("registry1.dso.mil/ironbank/opensource/defenseunicorns/zarf/zarf-agent:v0.25.0",
     "gitlab.com/project/ironbank/opensource/defenseunicorns/zarf/zarf-agent:v0.25.0-zarf-2003217571",
     "gitlab.com/project/ironbank/opensource/defenseunicorns/zarf/zarf-agent:v0.25.0"),
    # already on the target host (Zarf: HasPrefix(targetHost, host)): unchanged
    ("gitlab.com/project/gitea/gitea:1.19.3-rootless-zarf-3431384023",
     "gitlab.com/project/gitea/gitea:1.19.3-rootless-zarf-3431384023",
     "gitlab.com/project/gitea/gitea:1.19.3-rootless-zarf-3431384023"),
    ("oci://10.43.130.183:5000/stefanprodan/manifests/podinfo",
     "gitlab.com/project/stefanprodan/manifests/podinfo:latest-zarf-531355090",
     "gitlab.com/project/stefanprodan/manifests/podinfo:latest"),
]


@pytest.mark.parametrize(("src", "with_crc", "plain"), ZARF_VECTORS)
def test_zarf_vectors_from_zarf_tests(src: str, with_crc: str, plain: str) -> None:
    assert str(translate.forward(src, "zarf", "gitlab.com/project")) == with_crc
    assert str(translate.forward(src, "zarf-plain", "gitlab.com/project")) == plain


@pytest.mark.parametrize(
    ("src", "name"),
    [
        ("nginx:1.25", "docker.io/library/nginx"),
        ("index.docker.io/library/nginx:1.25", "docker.io/library/nginx"),
        ("bitnami/redis:7.2", "docker.io/bitnami/redis"),
        ("quay.io/keycloak/keycloak:21.1.2", "quay.io/keycloak/keycloak"),
        ("registry.example.com:8443/a/b/c:v1", "registry.example.com:8443/a/b/c"),
        ("ghcr.io/acme/app", "ghcr.io/acme/app"),
    ],
)
def test_zarf_crc_is_zlib_crc32_of_the_repository_name(src: str, name: str) -> None:
    ref = refs.parse(src)
    out = translate.forward(ref, "zarf", HOST)
    path = name.split("/", 1)[1]
    assert str(out) == f"{HOST}/{path}:{ref.tag}-zarf-{crc(name)}"
    assert translate.zarf_crc(name) == crc(name)


def test_zarf_literal_nginx_crc() -> None:
    assert translate.zarf_crc("docker.io/library/nginx") == 3793515731
    assert str(translate.forward("nginx:1.23.3", "zarf", HOST)) == f"{HOST}/library/nginx:1.23.3-zarf-3793515731"


def test_zarf_leaves_refs_on_the_target_host_alone() -> None:
    local = refs.parse(f"{HOST}/library/nginx:1.25-zarf-3793515731")
    assert translate.forward(local, "zarf", HOST) is local


@pytest.mark.parametrize("target", ["", "registry", "registry/x", "host:5000/", "bad host:1"])
def test_zarf_rejects_bad_target(target: str) -> None:
    with pytest.raises(ConfigError, match="invalid target registry"):
        translate.forward("nginx", "zarf", target)


def test_unknown_mode() -> None:
    with pytest.raises(ConfigError, match="unknown translation mode 'mirror'"):
        translate.forward("nginx", "mirror", HOST)


# --- prefix rules ---------------------------------------------------------------------------------------

RULES = PrefixRules.parse([
    f"docker.io={HOST}/docker.io",
    f"ghcr.io/acme={HOST}/acme",
    f"ghcr.io={HOST}/ghcr",
    f"index.docker.io/library={HOST}/hub-library",
])


@pytest.mark.parametrize(
    ("upstream", "local"),
    [
        ("nginx:1.25", f"{HOST}/hub-library/nginx:1.25"),  # longest prefix (docker.io/library) wins
        ("bitnami/redis:7", f"{HOST}/docker.io/bitnami/redis:7"),
        ("ghcr.io/acme/app@" + D, f"{HOST}/acme/app@" + D),
        ("ghcr.io/acme-other/app:v1", f"{HOST}/ghcr/acme-other/app:v1"),  # component boundary
        ("ghcr.io/x/y:v1@" + D, f"{HOST}/ghcr/x/y:v1@" + D),
    ],
)
def test_prefix_forward_and_reverse(upstream: str, local: str) -> None:
    out = translate.forward(upstream, "prefix", RULES)
    assert str(out) == local
    back, how = RULES.reverse(out)
    assert back == refs.parse(upstream)
    assert how.startswith("prefix rule ")


def test_prefix_forward_uncovered_is_an_error() -> None:
    with pytest.raises(ConfigError, match="no prefix rule covers quay.io/a/b"):
        translate.forward("quay.io/a/b", "prefix", RULES)
    assert RULES.forward("quay.io/a/b") is None


def test_prefix_first_listed_wins_among_equal_prefixes() -> None:
    rules = PrefixRules.parse(["quay.io=mirror.local/one", "quay.io->mirror.local/two"])
    assert str(rules.forward("quay.io/a/b:1")) == "mirror.local/one/a/b:1"


def test_prefix_reverse_refuses_what_forward_never_produces() -> None:
    # docker.io/library/* goes to hub-library, so HOST/docker.io/library/nginx is not a translation output.
    up, why = RULES.reverse(f"{HOST}/docker.io/library/nginx:1")
    assert up is None and "longer rule" in why
    up, why = RULES.reverse("elsewhere.local/x:1")
    assert up is None and "no prefix rule target covers" in why


def test_prefix_reverse_ambiguous_targets() -> None:
    rules = PrefixRules.parse(["quay.io=mirror.local/m", "ghcr.io=mirror.local/m"])
    up, why = rules.reverse("mirror.local/m/a:1")
    assert up is None and why.startswith("ambiguous")


@pytest.mark.parametrize("spec", ["docker.io", "=x.local", "docker.io=", "bad host=x.local", "a.io=noport"])
def test_prefix_rule_syntax(spec: str) -> None:
    with pytest.raises(ConfigError):
        PrefixRules.parse([spec])


# --- translation map and reverse --------------------------------------------------------------------------


def _map() -> TranslationMap:
    tmap = TranslationMap()
    for up in ("nginx:1.23.3", "ghcr.io/acme/app:v1"):
        ref = refs.parse(up)
        digest = D if "nginx" in up else D2
        tmap.add(ref, translate.forward(ref, "zarf", HOST), digest)
        tmap.add(ref, translate.forward(ref, "zarf-plain", HOST), digest)
    return tmap


def test_reverse_by_local_ref_tag_and_digest() -> None:
    tmap = _map()
    up, how = translate.reverse(f"{HOST}/library/nginx:1.23.3-zarf-3793515731", tmap=tmap)
    assert str(up) == f"docker.io/library/nginx:1.23.3@{D}"
    assert how.startswith("translation map: ")
    up, _ = translate.reverse(f"{HOST}/library/nginx:1.23.3", tmap=tmap)
    assert str(up) == f"docker.io/library/nginx:1.23.3@{D}"
    up, _ = translate.reverse(f"{HOST}/acme/app@{D2}", tmap=tmap)
    assert str(up) == f"ghcr.io/acme/app:v1@{D2}"


def test_reverse_by_digest_when_the_local_name_is_unknown() -> None:
    up, how = translate.reverse(f"{HOST}/renamed/thing:x", tmap=_map(), digest=D2)
    assert str(up) == f"ghcr.io/acme/app:v1@{D2}"
    assert how == f"translation map: digest {D2}"


def test_reverse_ambiguous_digest_is_refused() -> None:
    tmap = _map()
    tmap.add("quay.io/other/app:1", f"{HOST}/other/app:1", D2)
    up, why = translate.reverse(f"{HOST}/renamed/thing@{D2}", tmap=tmap)
    assert up is None
    assert why == f"ambiguous: digest {D2} maps to ghcr.io/acme/app, quay.io/other/app"


def test_reverse_never_guesses_a_zarf_crc_tag() -> None:
    up, why = translate.reverse(f"{HOST}/library/nginx:1.23.3-zarf-3793515731")
    assert up is None
    assert "Zarf crc tag: not reversible without the translation map" in why
    up, why = translate.reverse(f"{HOST}/library/nginx:9.9-zarf-3793515731", tmap=_map())
    assert up is None and "not reversible without the translation map" in why


def test_reverse_falls_back_to_prefix_rules_then_gives_up() -> None:
    up, how = translate.reverse(f"{HOST}/acme/app:v2", tmap=_map(), rules=RULES)
    assert str(up) == "ghcr.io/acme/app:v2" and how == f"prefix rule ghcr.io/acme={HOST}/acme"
    up, why = translate.reverse("other.local/x:1", tmap=_map(), rules=RULES)
    assert up is None and why.startswith("other.local/x:1: not in the translation map; no prefix rule")


def test_map_round_trips_through_json(tmp_path: Path) -> None:
    tmap = _map()
    path = tmp_path / "map.json"
    tmap.save(path)
    loaded = TranslationMap.load(path)
    assert sorted(map(str, (e.local for e in loaded.entries))) == sorted(map(str, (e.local for e in tmap.entries)))
    assert path.read_bytes() == loaded.to_json()  # sorted: saving is reproducible
    rows = json.loads(path.read_text())
    assert {"upstream": "docker.io/library/nginx:1.23.3", "local": f"{HOST}/library/nginx:1.23.3-zarf-3793515731",
            "digest": D} in rows


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not JSON"),
        ('{"a": 1}', "expected a JSON list"),
        ('[{"upstream": "nginx", "local": "x.local/n"}]', "entry 0: expected exactly the string fields"),
        ('[{"upstream": "nginx", "local": "x.local/n", "digest": "sha256:zz"}]', "entry 0: bad digest"),
        ('[{"upstream": "NGINX", "local": "x.local/n", "digest": "' + D + '"}]', "entry 0: invalid image reference"),
    ],
)
def test_map_rejects_malformed_json(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        TranslationMap.from_json(text, "map.json")
    assert str(err.value).startswith("map.json: ")
    assert message in str(err.value)


def test_forward_repo_for_policy_sources() -> None:
    tmap = _map()
    assert str(translate.forward_repo("ghcr.io/acme/app", tmap)) == f"{HOST}/acme/app"
    assert translate.forward_repo("ghcr.io/acme/sigs", tmap) is None
    assert str(translate.forward_repo("ghcr.io/acme/sigs", tmap, RULES)) == f"{HOST}/acme/sigs"


# --- access aliases -----------------------------------------------------------------------------------------


def test_aliases() -> None:
    aliases = Aliases.parse([f"{HOST}=docker-registry.zarf.svc.cluster.local:5000"])
    assert aliases.access_host(HOST) == "docker-registry.zarf.svc.cluster.local:5000"
    assert aliases.access_host("ghcr.io") == "ghcr.io"
    assert not Aliases.parse([])


@pytest.mark.parametrize("spec", ["nohost", "a.io=", "=b.io", "a b=c.io"])
def test_alias_syntax(spec: str) -> None:
    with pytest.raises(ConfigError, match="invalid registry alias"):
        Aliases.parse([spec])


def test_alias_conflict() -> None:
    with pytest.raises(ConfigError, match="given twice"):
        Aliases.parse(["a.io=b.io", "a.io=c.io"])
