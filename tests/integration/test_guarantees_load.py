"""Load and output guarantees of issue 13, each tested through the real CLI on real registries: 11 hosts compare
exactly, 14 load never takes over what it does not own, 15 untrusted text is escaped before a terminal, 17 an
output that is not a regular file is written through, never replaced. Each failed on main before the fixes.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from support.fixtures_sigstore import push_keyless_signature
from support.images import Image, Pusher, push_image
from support.minisigstore import MiniSigstore
from support.registries import Registry, start_registry

from airgap.cli import cli
from airgap.keys.private import KeySigner
from airgap.keys.public import public_pem
from airgap.oci.registry import RegistryClient
from airgap.refs.translate import zarf_forward
from airgap.signing.sign import sign_image

SIGNER_A = KeySigner(ec.generate_private_key(ec.SECP256R1()))
SIGNER_B = KeySigner(ec.generate_private_key(ec.SECP256R1()))


def run(args: list[str]) -> Any:
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def _keyfiles(tmp: Path, name: str, signer: KeySigner) -> tuple[Path, Path]:
    key, pub = tmp / f"{name}.key", tmp / f"{name}.pub"
    key.write_bytes(signer._key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
    pub.write_bytes(public_pem(signer.public_key))
    return key, pub


def pack(tmp: Path, src: Registry, name: str, version: str, images: list[str], signer: KeySigner,
         out: Path) -> Path:
    """Pack ``images`` (refs on ``src``) as bundle ``name`` ``version``, every image signed by ``signer``."""
    key, pub = _keyfiles(tmp, f"{name}-{version}", signer)
    spec = tmp / f"{name}-{version}.yaml"
    listed = ", ".join(images)
    spec.write_text(f"""\
apiVersion: airgap/v1
kind: Bundle
metadata: {{name: {name}, version: {version}}}
created: 1700000000
images: [{listed}]
keys: [{{name: signer, path: {pub.name}}}]
policies:
  - name: signed
    images: [{{glob: "**"}}]
    authorities: [{{key: {{name: signer}}, ctlog: {{disabled: true}}}}]
""")
    result = run(["pack", str(spec), "-o", str(out), "--key", str(key)])
    assert result.exit_code == 0, result.output
    return pub


def image_on(reg: Registry, repo: str, tag: str, signer: KeySigner, seed: str) -> Image:
    image = push_image(Pusher(reg.url), repo, tag, seed=seed)
    sign_image(f"{reg.host}/{repo}@{image.digest}", signer, client=RegistryClient())
    return image


def tag_digest(reg: Registry, repo: str, tag: str) -> str | None:
    desc = RegistryClient().head_manifest(reg.host, repo, tag)
    return desc.digest if desc is not None else None


# ---- guarantee 11: hosts compare exactly ----------------------------------------------------------------------


def _prefix_ports() -> tuple[int, int]:
    """A free 4-digit port P and a free 5-digit port that starts with P's digits (5410 and 54102, say)."""
    def free(port: int) -> bool:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
        return True

    for short in range(4100, 6500, 37):
        for digit in range(10):
            if free(short) and free(short * 10 + digit):
                return short, short * 10 + digit
    pytest.skip("no free pair of prefix ports")


def test_a_host_that_is_a_prefix_of_the_target_is_still_translated(tmp_path: Path) -> None:
    """Guarantee 11. An image from ``127.0.0.1:5410`` loaded into ``127.0.0.1:54102`` goes to 54102 (on main the
    prefix test took it for already local, and load pushed the tags back into the SOURCE registry)."""
    short, long = _prefix_ports()
    assert str(long).startswith(str(short))
    src = start_registry(tmp_path / "src", port=short)
    dst = start_registry(tmp_path / "dst", port=long)
    try:
        image = image_on(src, "team/app", "1.0", SIGNER_A, "g11")
        pub = pack(tmp_path, src, "g11", "1", [f"{src.host}/team/app:1.0"], SIGNER_A, tmp_path / "b.tar")
        out = run(["load", str(tmp_path / "b.tar"), "--registry", dst.host, "--key", str(pub), "--json"])
        assert out.exit_code == 0, out.output
        local = zarf_forward(f"{src.host}/team/app:1.0", dst.host)
        assert local.registry == dst.host and local.tag and "-zarf-" in local.tag
        assert tag_digest(dst, "team/app", local.tag) == image.digest
        assert tag_digest(src, "team/app", local.tag) is None  # nothing written back into the source
    finally:
        src.stop()
        dst.stop()


# ---- guarantee 14: load never takes over what it does not own ------------------------------------------------


def test_load_refuses_another_bundles_tags_without_force(registry_factory: Callable[..., Registry],
                                                         tmp_path: Path) -> None:
    """Guarantee 14. Bundle ``team-b`` would re-point ``team/app:1.0`` that bundle ``team-a`` loaded: refused
    before anything is pushed (on main it silently overwrote the tag and team-a's image stopped being what its
    bundle shipped); ``--force`` replaces it and says so; a newer version of ``team-a`` may (an upgrade)."""
    src_a, src_b, dst = registry_factory(), registry_factory(), registry_factory()
    a = image_on(src_a, "team/app", "1.0", SIGNER_A, "a")
    b = image_on(src_b, "team/app", "1.0", SIGNER_B, "b")
    # --translate prefix with the same rule sends both sources' team/app:1.0 to dst/team/app:1.0
    pub_a = pack(tmp_path, src_a, "team-a", "1", [f"{src_a.host}/team/app:1.0"], SIGNER_A, tmp_path / "a.tar")
    pub_b = pack(tmp_path, src_b, "team-b", "1", [f"{src_b.host}/team/app:1.0"], SIGNER_B, tmp_path / "b.tar")

    def load(bundle: str, pub: Path, src: Registry, *extra: str) -> Any:
        return run(["load", str(tmp_path / bundle), "--registry", dst.host, "--key", str(pub), "--translate",
                    "prefix", "--rule", f"{src.host}={dst.host}", *extra])

    out = load("a.tar", pub_a, src_a)
    assert out.exit_code == 0, out.output
    assert tag_digest(dst, "team/app", "1.0") == a.digest
    out = load("b.tar", pub_b, src_b)
    assert out.exit_code == 1
    assert "team/app:1.0" in out.output and "loaded by bundle team-a 1" in out.output and "--force" in out.output
    assert tag_digest(dst, "team/app", "1.0") == a.digest  # untouched
    assert "team-b-1" not in RegistryClient().list_tags(dst.host, "airgap/maps")
    out = load("b.tar", pub_b, src_b, "--force")
    assert out.exit_code == 0, out.output
    assert "replaced" in out.output and "team/app:1.0" in out.output
    assert tag_digest(dst, "team/app", "1.0") == b.digest
    # team-a v2 may not take it back: the tag now holds what team-b's map records, so it is team-b's
    a2 = image_on(src_a, "team/app", "1.0", SIGNER_A, "a2")
    pub_a2 = pack(tmp_path, src_a, "team-a", "2", [f"{src_a.host}/team/app:1.0"], SIGNER_A, tmp_path / "a2.tar")
    out = load("a2.tar", pub_a2, src_a)
    assert out.exit_code == 1 and "loaded by bundle team-b 1" in out.output
    # ... while team-b v2 upgrading its own tag is not
    b2 = image_on(src_b, "team/app", "1.0", SIGNER_B, "b2")
    pub_b2 = pack(tmp_path, src_b, "team-b", "2", [f"{src_b.host}/team/app:1.0"], SIGNER_B, tmp_path / "b2.tar")
    out = load("b2.tar", pub_b2, src_b)
    assert out.exit_code == 0, out.output
    assert tag_digest(dst, "team/app", "1.0") == b2.digest
    assert a2.digest != b2.digest


def test_load_refuses_a_tag_no_bundle_loaded_and_the_maps_repository(registry_factory: Callable[..., Registry],
                                                                     tmp_path: Path) -> None:
    """Guarantee 14. A tag someone pushed outside airgap is not taken over, nor airgap's own ``airgap/maps``."""
    src, dst = registry_factory(), registry_factory()
    image_on(src, "team/app", "1.0", SIGNER_A, "x")
    pushed = push_image(Pusher(dst.url), "team/app", "1.0", seed="someone-else")
    pub = pack(tmp_path, src, "team-x", "1", [f"{src.host}/team/app:1.0"], SIGNER_A, tmp_path / "x.tar")
    out = run(["load", str(tmp_path / "x.tar"), "--registry", dst.host, "--key", str(pub), "--translate", "prefix",
               "--rule", f"{src.host}={dst.host}"])
    assert out.exit_code == 1 and "loaded by no airgap bundle" in out.output
    assert tag_digest(dst, "team/app", "1.0") == pushed.digest
    image_on(src, "airgap/maps", "evil", SIGNER_A, "maps")
    pub = pack(tmp_path, src, "maps", "1", [f"{src.host}/airgap/maps:evil"], SIGNER_A, tmp_path / "m.tar")
    out = run(["load", str(tmp_path / "m.tar"), "--registry", dst.host, "--key", str(pub), "--translate", "prefix",
               "--rule", f"{src.host}={dst.host}"])
    assert out.exit_code == 1 and "airgap's own translation-map repository" in out.output


def test_a_second_signer_of_the_same_digest_keeps_the_first_ones_signatures(registry_factory: Callable[..., Registry],
                                                                           tmp_path: Path) -> None:
    """Guarantee 14 (signatures). Two bundles ship the same digest under different tags, each signed by its own
    key: the second load appends its signature to the ``.sig`` tag instead of replacing the first's (on main the
    first bundle's image stopped verifying against its own key)."""
    src_a, src_b, dst = registry_factory(), registry_factory(), registry_factory()
    a = image_on(src_a, "lib/base", "1", SIGNER_A, "same")
    b = push_image(Pusher(src_b.url), "lib/base", "2", seed="same")
    assert a.digest == b.digest
    sign_image(f"{src_b.host}/lib/base@{b.digest}", SIGNER_B, client=RegistryClient())
    pub_a = pack(tmp_path, src_a, "a", "1", [f"{src_a.host}/lib/base:1"], SIGNER_A, tmp_path / "a.tar")
    pub_b = pack(tmp_path, src_b, "b", "1", [f"{src_b.host}/lib/base:2"], SIGNER_B, tmp_path / "b.tar")
    for bundle, pub, src in (("a.tar", pub_a, src_a), ("b.tar", pub_b, src_b)):
        out = run(["load", str(tmp_path / bundle), "--registry", dst.host, "--key", str(pub), "--translate",
                   "prefix", "--rule", f"{src.host}={dst.host}"])
        assert out.exit_code == 0, out.output
    for pub, tag in ((pub_a, "1"), (pub_b, "2")):
        out = run(["verify", "--key", str(pub), "--insecure-ignore-tlog", f"{dst.host}/lib/base:{tag}"])
        assert out.exit_code == 0, out.output


# ---- guarantee 15: untrusted text is escaped before it reaches a terminal ---------------------------------------

EVIL = "\x1b[2K\r\x1b[32mOK   every image verified\x1b[0m\u202e"


class _EvilRegistry(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path == "/v2/":
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = json.dumps({"errors": [{"code": "DENIED", "message": EVIL}]}).encode()
        self.send_response(403)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET  # noqa: N815

    def log_message(self, *args: Any) -> None:
        pass


def _clean(text: str) -> None:
    assert "\x1b" not in text and "\r" not in text and "\u202e" not in text, repr(text)


def test_registry_error_bodies_and_identities_never_reach_the_terminal_raw(registry: Registry, make_image: Any,
                                                                         tmp_path: Path,
                                                                         mini_sigstore: MiniSigstore) -> None:
    """Guarantee 15. A registry error body carrying escape sequences (that would redraw FAIL as OK) and a
    certificate identity with control characters are printed escaped (on main both reached stdout/stderr raw)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EvilRegistry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        host = f"127.0.0.1:{server.server_address[1]}"
        _, pub = _keyfiles(tmp_path, "k", SIGNER_A)
        out = CliRunner().invoke(cli, ["verify", "--key", str(pub), "--insecure-ignore-tlog", f"{host}/x/y:1"])
        assert out.exit_code != 0
        _clean(out.output)
        assert "\\x1b[2K" in out.output  # shown, escaped
        out = CliRunner().invoke(cli, ["copy", f"{host}/x/y:1", f"oci:{tmp_path / 'layout'}"])
        assert out.exit_code != 0
        _clean(out.output)
    finally:
        server.shutdown()
    image = make_image(registry, "evil/id", "1")
    who = mini_sigstore.issue("mallory\x1b[32m@airgap.test", "https://oidc.airgap.test")
    push_keyless_signature(registry, "evil/id", image.digest, who, sigstore=mini_sigstore)
    root = tmp_path / "root.json"
    root.write_bytes(mini_sigstore.trusted_root_json())
    out = CliRunner().invoke(cli, ["verify", "--certificate-identity", "someone@airgap.test",
                                   "--certificate-oidc-issuer", "https://oidc.airgap.test", "--trusted-root",
                                   str(root), f"{registry.host}/evil/id:1"])
    assert out.exit_code != 0
    _clean(out.output)
    assert "mallory\\x1b[32m@airgap.test" in out.output


# ---- guarantee 17: an output that is not a regular file is written through ---------------------------------------


@pytest.mark.skipif(os.geteuid() != 0, reason="making a device node needs root")
def test_device_and_fifo_outputs_are_written_through(registry_factory: Callable[..., Registry],
                                                     tmp_path: Path) -> None:
    """Guarantee 17. ``pack -o`` a character device (a private null device made here, never the machine's
    /dev/null) or a FIFO, ``load --map-out`` a FIFO and ``webhook manifests -o`` a FIFO write into them and
    leave them what they were (on main pack renamed a temp file over the device, making it a regular file)."""
    src, dst = registry_factory(), registry_factory()
    image_on(src, "team/app", "1.0", SIGNER_A, "g17")
    out_file = tmp_path / "bundle.tar"
    pub = pack(tmp_path, src, "g17", "1", [f"{src.host}/team/app:1.0"], SIGNER_A, out_file)
    key = tmp_path / "g17-1.key"
    spec = tmp_path / "g17-1.yaml"

    null = tmp_path / "null"
    os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    out = run(["pack", str(spec), "-o", str(null), "--key", str(key)])
    assert out.exit_code == 0, out.output
    assert stat.S_ISCHR(null.stat().st_mode) and not list(tmp_path.glob(".null.*"))

    def through_fifo(name: str, command: list[str]) -> bytes:
        fifo = tmp_path / name
        os.mkfifo(fifo)
        got: list[bytes] = []
        reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
        reader.start()
        result = run([a.replace("{fifo}", str(fifo)) for a in command])
        reader.join(30)
        assert result.exit_code == 0, result.output
        assert stat.S_ISFIFO(fifo.stat().st_mode)
        return got[0]

    assert through_fifo("bundle.fifo", ["pack", str(spec), "-o", "{fifo}", "--key", str(key)]) == out_file.read_bytes()
    mapped = through_fifo("map.fifo", ["load", str(out_file), "--registry", dst.host, "--key", str(pub),
                                       "--map-out", "{fifo}"])
    assert any(row["upstream"] == f"{src.host}/team/app:1.0" for row in json.loads(mapped))
    certs = tmp_path / "certs"
    assert run(["webhook", "certs", "--service", "w", "--namespace", "n", "-o", str(certs)]).exit_code == 0
    trust = tmp_path / "trust"
    assert run(["trust", "export", str(out_file), "-o", str(trust), "--key", str(pub)]).exit_code == 0
    rendered = through_fifo("manifests.fifo", ["webhook", "manifests", "--image", "r.local/airgap:1", "--trust",
                                               str(trust), "--certs", str(certs), "-o", "{fifo}"])
    assert b"ValidatingWebhookConfiguration" in rendered
