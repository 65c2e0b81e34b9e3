"""Image globs: policy-controller's table (pkg/apis/glob/glob_test.go) plus airgap's documented differences."""

import pytest

from airgap.errors import PolicyError
from airgap.policy.glob import Glob, glob_match

D = "sha256:" + "5504f2a95018e3d8a52d80d9e1a128c6ea337581808ff9fe96f5628ce2336350"
D2 = "sha256:" + "b" * 64

# (image, glob, match) rows taken from policy-controller's TestGlobMatch: airgap gives the same answers.
POLICY_CONTROLLER_TABLE = [
    ("foo", "index.docker.io/library/foo:latest", True),
    ("foo", "index.docker.io/library/foo:*", True),
    ("foo", "index.docker.io/library/*", True),
    ("foo", "index.docker.io/library/*:latest", True),
    ("foo", "index.docker.io/*/*", True),
    ("foo", "index.docker.io/**", True),
    ("foo", "index.docker.**", True),
    ("foo", "inde**", True),
    ("foo", "**", True),
    ("foo", "foo", True),
    ("foo", "foo*", True),
    ("foo", "foo**", True),
    ("myuser/myapp", "index.docker.io/myuser/myapp:latest", True),
    ("myuser/myapp", "index.docker.io/myuser/myapp:*", True),
    ("myuser/myapp", "index.docker.io/myuser/*", True),
    ("myuser/myapp", "index.docker.io/myuser/*:latest", True),
    ("myuser/myapp", "index.docker.io/*/*", True),
    ("myuser/myapp", "index.docker.io/**", True),
    ("myuser/myapp", "inde**", True),
    ("myuser/myapp", "**", True),
    ("myuser/myapp", "myuser/myapp", True),
    ("myuser/myapp", "myuser/myapp*", True),
    ("myuser/myapp", "myuser/myapp**", True),
    ("ghcr.io/foo/bar", "ghcr.io/*/*", True),
    ("ghcr.io/foo/bar", "ghcr.io/**", True),
    ("ghcr.io/foo", "ghcr.io/*/*", False),
    ("ghcr.io/foo", "ghcr.io/**", True),
    ("ghcr.io/foo", "ghc**", True),
    ("ghcr.io/foo", "**", True),
    ("ghcr.io/foo", "*/**", True),
    ("ghcr.io/foo", "ghcr.io/foo*", True),
    ("ghcr.io/foo", "ghcr.io/foo**", True),
    ("prefix-ghcr.io/foo", "ghcr.io/foo", False),
    ("ghcr.io/foo-suffix", "ghcr.io/foo", False),
    ("ghcrxio/foo", "ghcr.io/**", False),
    ("foo", "*", True),
    ("myuser/myapp", "*/*", True),
    ("ghcr.io/foo@" + D, "ghcr.io/foo@" + D, True),
]


@pytest.mark.parametrize(("image", "glob", "match"), POLICY_CONTROLLER_TABLE)
def test_policy_controller_table(image: str, glob: str, match: bool) -> None:
    assert glob_match(glob, image) is match


@pytest.mark.parametrize(
    ("image", "glob", "match"),
    [
        # Docker Hub spellings all normalize; short names are Hub names.
        ("nginx", "docker.io/library/nginx", True),
        ("nginx", "index.docker.io/library/nginx", True),
        ("nginx", "registry-1.docker.io/library/nginx", True),
        ("nginx", "docker.io/nginx", True),
        ("docker.io/library/nginx:1.25", "nginx", True),
        ("index.docker.io/library/nginx", "nginx", True),
        ("nginx", "library/*", True),
        ("bitnami/redis", "nginx", False),
        ("bitnami/redis", "bitnami/*", True),
        ("bitnami/redis", "*", False),  # "*" is docker.io/library/*
        ("ghcr.io/nginx", "nginx", False),
        # * stays inside one component, ** crosses them.
        ("ghcr.io/org/team/app", "ghcr.io/org/*", False),
        ("ghcr.io/org/team/app", "ghcr.io/org/**", True),
        ("ghcr.io/org/team/app", "ghcr.io/*/team/*", True),
        ("ghcr.io/org/app", "ghcr.io/org/app-*", False),
        ("ghcr.io/org/app-api", "ghcr.io/org/app-*", True),
        # Ports and localhost.
        ("127.0.0.1:31999/library/nginx:1.25-zarf-3793515731", "127.0.0.1:31999/**", True),
        ("localhost:5000/app", "localhost:5000/*", True),
        ("localhost:5000/app", "localhost:5001/*", False),
        ("registry.example.com:8443/a/b", "registry.example.com:*/a/*", True),
        # A glob without tag/digest covers every tag and digest of the repository ...
        ("ghcr.io/org/app:v1", "ghcr.io/org/app", True),
        ("ghcr.io/org/app@" + D, "ghcr.io/org/app", True),
        ("ghcr.io/org/app:v1@" + D, "ghcr.io/org/app", True),
        # ... a glob WITH a tag or digest is matched against the tag / digest.
        ("ghcr.io/org/app:v1", "ghcr.io/org/app:v1", True),
        ("ghcr.io/org/app:v2", "ghcr.io/org/app:v1", False),
        ("ghcr.io/org/app:v1.2", "ghcr.io/org/app:v1.*", True),
        ("ghcr.io/org/app@" + D, "ghcr.io/org/app:*", False),  # digest only: no tag to match
        ("ghcr.io/org/app:v1@" + D, "ghcr.io/org/app:v1", True),
        ("ghcr.io/org/app:v1@" + D, "ghcr.io/org/app@" + D, True),
        ("ghcr.io/org/app:v1@" + D2, "ghcr.io/org/app@" + D, False),
        ("ghcr.io/org/app", "ghcr.io/org/app:latest", True),  # untagged means :latest
        ("nginx:1.25", "nginx:1.*", True),
        ("nginx:1.25", "nginx:2.*", False),
        # Single-component globs with ** span registries, and also read as Hub library names.
        ("ghcr.io/acme/demo-api:v1", "**demo**", True),
        ("demo", "**demo**", True),
        ("ghcr.io/acme/api", "**demo**", False),
        ("foobar", "foo**", True),
        ("ghcr.io/foobar", "foo**", False),
        # Dots are literal.
        ("ghcr.io/org/appxv1", "ghcr.io/org/app.v1", False),
    ],
)
def test_airgap_semantics(image: str, glob: str, match: bool) -> None:
    assert glob_match(glob, image) is match


@pytest.mark.parametrize(
    ("glob", "message"),
    [
        (".+", "invalid glob '.+': character(s) '+' not allowed"),
        ("[a-z]*", "invalid glob '[a-z]*': character(s) '[]' not allowed"),
        ("ghcr.io/a b", "invalid glob 'ghcr.io/a b': character(s) ' ' not allowed"),
        ("ghcr.io//x", "invalid glob 'ghcr.io//x': empty path component"),
        ("ghcr.io/x/", "invalid glob 'ghcr.io/x/': empty path component"),
        ("", "invalid glob: empty"),
    ],
)
def test_invalid_globs(glob: str, message: str) -> None:
    with pytest.raises(PolicyError) as err:
        Glob.compile(glob)
    assert str(err.value).startswith(message)


def test_normalized_form_is_visible() -> None:
    assert Glob.compile("nginx").normalized == "docker.io/library/nginx"
    assert Glob.compile("index.docker.io/team/*").normalized == "docker.io/team/*"
    assert Glob.compile("**demo**").normalized == "docker.io/library/**demo**"
    assert not Glob.compile("ghcr.io/**").with_tag
    assert Glob.compile("ghcr.io/a:v1").with_tag
