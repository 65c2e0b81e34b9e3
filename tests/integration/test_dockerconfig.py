"""Credentials from Docker's config, read by airgap/oci/dockerconfig.py (no oras-py): inline `auths` (base64
`auth`, username/password), credential helpers (`credHelpers`, `credsStore`: a real script on PATH),
identity tokens (OAuth2 refresh-token grant), against the TLS + htpasswd registry; and a config that is not
what Docker writes fails with one line naming the file, never a traceback."""

from __future__ import annotations

import base64
import json
import os
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from click.testing import CliRunner
from support.images import Image
from support.registries import Registry
from support.signing import KeyPair, write_keypair

from airgap.cli import cli
from airgap.config import Limits, RegistryOptions
from airgap.errors import AuthError
from airgap.oci.deadline import DeadlineExceeded, deadline
from airgap.oci.dockerconfig import Credentials, DockerConfig
from airgap.oci.registry import RegistryClient


@pytest.fixture
def secure(tls_auth_registry: Registry, make_image: Callable[..., Image]) -> tuple[Registry, Image]:
    return tls_auth_registry, make_image(tls_auth_registry, "secure/app", "1", layer_sizes=(2000,))


@pytest.fixture
def key(tmp_path: Path) -> KeyPair:
    return write_keypair(tmp_path / "keys", "k")


def run(*args: str, env: dict[str, str]) -> Any:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def config(directory: Path, doc: Any) -> dict[str, str]:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return {"DOCKER_CONFIG": str(directory)}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# ---- a config that is not what Docker writes ------------------------------------------------------------

@pytest.mark.parametrize(("doc", "message"), [
    ('{"auths": {', "not valid JSON"),
    ('["auths"]', "not a JSON object"),
    ({"auths": {"{host}": {"auth": "not base64!"}}}, "auth is not base64 of user:password"),
    ({"auths": {"{host}": {"auth": b64("no-colon")}}}, "auth is not base64 of user:password"),
    ({"auths": ["{host}"]}, "'auths' must map registries to objects"),
    ({"credHelpers": {"{host}": "../../bin/sh"}}, "credential helper name '../../bin/sh' is not valid"),
])
def test_malformed_config_is_one_line_naming_the_file(secure: tuple[Registry, Image], key: KeyPair, tmp_path: Path,
                                                      doc: Any, message: str) -> None:
    reg, _ = secure
    assert reg.tls is not None
    if isinstance(doc, dict):
        doc = json.loads(json.dumps(doc).replace("{host}", reg.host))
    home = tmp_path / "home"
    path = home / ".docker" / "config.json"
    config(path.parent, doc)
    env = {"HOME": str(home), "DOCKER_CONFIG": ""}  # the default place: ~/.docker/config.json
    result = run("sign", "--key", str(key.private_path), "--ca-file", str(reg.tls.ca_pem), f"{reg.host}/secure/app:1",
                 env=env)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: Docker config {path}: ") and message in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_config_is_read_only_when_credentials_are_needed(registry: Registry, make_image: Callable[..., Image],
                                                         tmp_path: Path) -> None:
    make_image(registry, "open/app", "1")
    env = config(tmp_path / "docker", "{ broken")
    result = run("copy", f"{registry.host}/open/app:1", f"oci:{tmp_path}/out", env=env)
    assert result.exit_code == 0, result.stderr  # an anonymous registry never asks: the file is never read


# ---- where credentials come from -----------------------------------------------------------------------

def test_basic_auth_from_auths_username_and_password(secure: tuple[Registry, Image], tmp_path: Path) -> None:
    reg, img = secure
    assert reg.tls is not None and reg.username and reg.password
    # A URL key (as `docker login` writes for some registries) matches its host.
    env = config(tmp_path / "docker", {"auths": {f"https://{reg.host}/v1/": {
        "username": reg.username, "password": reg.password}}})
    result = run("copy", "--json", "--ca-file", str(reg.tls.ca_pem), f"{reg.host}/secure/app:1",
                 f"oci:{tmp_path}/out", env=env)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["digest"] == img.digest


def helper(bin_dir: Path, name: str, reply: dict[str, str] | None, log: Path, sleep: float = 0) -> dict[str, str]:
    """A real ``docker-credential-<name>`` on PATH: logs its argument and stdin, answers ``reply`` (or "not
    found" as Docker's helpers say it)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / f"docker-credential-{name}"
    answer = json.dumps(reply) if reply else ""
    script.write_text(
        "#!/bin/sh\n"
        f"read server\necho \"$1 $server\" >> {log}\n"
        + (f"sleep {sleep}\n" if sleep else "")
        + (f"cat <<'EOF'\n{answer}\nEOF\n" if reply else "echo 'credentials not found in native keychain'\nexit 1\n"))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


@pytest.mark.parametrize("where", ["credHelpers", "credsStore"])
def test_credential_helper_is_run(secure: tuple[Registry, Image], tmp_path: Path, where: str) -> None:
    reg, img = secure
    assert reg.tls is not None and reg.username and reg.password
    log = tmp_path / "helper.log"
    env = helper(tmp_path / "bin", "test", {"ServerURL": reg.host, "Username": reg.username,
                                           "Secret": reg.password}, log)
    doc = {"credHelpers": {reg.host: "test"}} if where == "credHelpers" else {
        "credsStore": "test", "auths": {reg.host: {}}}
    env.update(config(tmp_path / "docker", doc))
    result = run("copy", "--json", "--ca-file", str(reg.tls.ca_pem), f"{reg.host}/secure/app:1",
                 f"oci:{tmp_path}/out", env=env)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["digest"] == img.digest
    assert log.read_text() == f"get {reg.host}\n"  # asked once, for this host


def test_helper_without_credentials_falls_back_to_anonymous(secure: tuple[Registry, Image], tmp_path: Path) -> None:
    reg, _ = secure
    assert reg.tls is not None
    log = tmp_path / "helper.log"
    env = helper(tmp_path / "bin", "empty", None, log)
    env.update(config(tmp_path / "docker", {"credsStore": "empty"}))
    result = run("copy", "--ca-file", str(reg.tls.ca_pem), f"{reg.host}/secure/app:1", f"oci:{tmp_path}/out", env=env)
    assert result.exit_code == 1 and "requires credentials: none found in the Docker config" in result.stderr
    assert log.read_text().startswith(f"get {reg.host}\n")


def test_helper_failures_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "helper.log"
    env = helper(tmp_path / "bin", "slow", {"Username": "u", "Secret": "s"}, log, sleep=5)
    monkeypatch.setenv("PATH", env["PATH"])
    path = tmp_path / "docker" / "config.json"
    config(path.parent, {"credHelpers": {"registry.example": "slow", "other.example": "missing"}})
    docker = DockerConfig((str(path),), helper_timeout=0.5)
    with pytest.raises(AuthError, match=r"^docker-credential-slow \(credential helper for registry\.example\) "
                                        r"did not answer within 0\.5s$"):
        docker.credentials("registry.example")
    with pytest.raises(AuthError, match=rf"^docker-credential-missing \(credential helper for other\.example in "
                                        rf"{path}\) is not on PATH$"):
        docker.credentials("other.example")
    with deadline(0.5), pytest.raises(DeadlineExceeded, match=r"^deadline of 0\.5s exceeded while running "
                                                             r"docker-credential-slow for registry\.example$"):
        DockerConfig((str(path),), helper_timeout=30).credentials("registry.example")


def test_config_forms_docker_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", helper(tmp_path / "bin", "tok", {"Username": "<token>", "Secret": "refresh-me"},
                                      tmp_path / "log")["PATH"])
    path = tmp_path / "docker" / "config.json"
    config(path.parent, {
        "auths": {
            "https://index.docker.io/v1/": {"auth": b64("hubuser:hubpass")},
            "localhost:5000": {"auth": b64("me:pa:ss")},  # the password may hold a colon
            "idtoken.example": {"identitytoken": "refresh-token"},
            "bare.example": {},
        },
        "credHelpers": {"helped.example": "tok"},
    })
    docker = DockerConfig((str(path),))
    assert docker.credentials("registry-1.docker.io") == Credentials("hubuser", "hubpass")
    assert docker.credentials("127.0.0.1:5000") == Credentials("me", "pa:ss")  # localhost and 127.0.0.1 alike
    assert docker.credentials("idtoken.example") == Credentials(identity_token="refresh-token")
    assert docker.credentials("helped.example") == Credentials(identity_token="refresh-me")
    assert docker.credentials("bare.example") is None
    assert docker.credentials("elsewhere.example") is None
    assert Credentials("u", "p").basic == b64("u:p") and Credentials(identity_token="t").basic is None


# ---- identity tokens: the OAuth2 refresh-token grant -----------------------------------------------------

@pytest.fixture
def token_registry() -> Iterator[tuple[str, list[dict[str, list[str]]]]]:
    """A registry whose token endpoint takes only POSTed refresh tokens (as Docker Hub or ACR do)."""
    posted: list[dict[str, list[str]]] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.headers.get("Authorization") == "Bearer access-1":
                self.reply(200, b"{}")
            else:
                realm = f"http://127.0.0.1:{self.server.server_address[1]}/token"
                self.reply(401, b"{}", {"WWW-Authenticate": f'Bearer realm="{realm}",service="reg"'})

        def do_POST(self) -> None:  # noqa: N802
            form = parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
            posted.append(form)
            if form.get("grant_type") == ["refresh_token"] and form.get("refresh_token") == ["refresh-token"]:
                self.reply(200, b'{"access_token": "access-1", "expires_in": 300}')
            else:
                self.reply(401, b"{}")

    class Server(ThreadingHTTPServer):
        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # the client's TLS probe hangs up on this plain-HTTP server: expected, not worth a traceback

    httpd = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{httpd.server_address[1]}", posted
    httpd.shutdown()
    httpd.server_close()


def test_identity_token_is_exchanged_for_an_access_token(token_registry: tuple[str, list[dict[str, list[str]]]],
                                                         tmp_path: Path) -> None:
    host, posted = token_registry
    path = tmp_path / "docker" / "config.json"
    config(path.parent, {"auths": {host: {"identitytoken": "refresh-token"}}})
    options = RegistryOptions(auth_configs=(str(path),), limits=replace(Limits(), retries=0))
    client = RegistryClient(options)
    resp = client.request("GET", host, "/v2/team/app/manifests/1", scope="repository:team/app:pull")
    assert resp.status_code == 200
    assert posted == [{"grant_type": ["refresh_token"], "client_id": ["airgap"], "refresh_token": ["refresh-token"],
                       "service": ["reg"], "scope": ["repository:team/app:pull"]}]
