import pytest

from airgap import refs
from airgap.errors import ConfigError

D = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nginx", "docker.io/library/nginx:latest"),
        ("nginx:1.23.3", "docker.io/library/nginx:1.23.3"),
        ("index.docker.io/nginx", "docker.io/library/nginx:latest"),
        ("registry-1.docker.io/bitnami/redis:7", "docker.io/bitnami/redis:7"),
        ("docker.io/team/app@" + D, "docker.io/team/app@" + D),
        ("quay.io/keycloak/keycloak:21.1.2", "quay.io/keycloak/keycloak:21.1.2"),
        ("127.0.0.1:5000/team/app:1.0", "127.0.0.1:5000/team/app:1.0"),
        ("localhost/app", "localhost/app:latest"),
        ("localhost:31999/a/b/c:v1@" + D, "localhost:31999/a/b/c:v1@" + D),
        ("[::1]:5000/x:y", "[::1]:5000/x:y"),
        ("registry1.dso.mil/ironbank/opensource/nginx:1.25", "registry1.dso.mil/ironbank/opensource/nginx:1.25"),
    ],
)
def test_parse_normalizes(text: str, expected: str) -> None:
    assert str(refs.parse(text)) == expected


@pytest.mark.parametrize(
    "text",
    ["", "UPPER/case", "nginx:bad tag", "nginx@sha256:abc", "a//b", "-leading/x", "host:port:/x", "nginx:"],
)
def test_parse_rejects_with_clear_error(text: str) -> None:
    with pytest.raises(ConfigError) as err:
        refs.parse(text)
    assert "invalid image reference" in str(err.value)


def test_digest_only_reference_gets_no_default_tag() -> None:
    ref = refs.parse("ghcr.io/o/r@" + D)
    assert ref.tag is None and ref.identifier == D
    assert refs.parse("ghcr.io/o/r", default_tag=None).tag is None


@pytest.mark.parametrize(
    ("host", "loop"),
    [("127.0.0.1:5000", True), ("127.9.9.9", True), ("localhost:31999", True), ("[::1]:5000", True),
     ("10.0.0.1:5000", False), ("registry.local", False), ("[2001:db8::1]:5000", False)],
)
def test_loopback_hosts(host: str, loop: bool) -> None:
    assert refs.is_loopback_host(host) is loop


def test_docker_hub_api_host() -> None:
    assert refs.api_host("docker.io") == "registry-1.docker.io"
    assert refs.api_host("quay.io") == "quay.io"
