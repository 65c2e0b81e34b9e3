"""A SoftHSM2 token factory for PKCS#11 tests.

SoftHSM reads ``SOFTHSM2_CONF`` when the module is initialised, and python-pkcs11 keeps one initialised
module per path for the whole process. So every test in a process must share ONE configuration:
:func:`shared_softhsm` makes it once, points ``SOFTHSM2_CONF`` at it for the rest of the process, and
hands out fresh, uniquely labelled tokens (``softhsm.make_token()``). airgap re-initialises the module
when a URI names a token it cannot see yet, so tokens made after the first use are found.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

MODULE_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib64/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
    "/opt/homebrew/lib/softhsm/libsofthsm2.so",
)


def find_softhsm_module() -> str | None:
    """The SoftHSM2 PKCS#11 module: ``SOFTHSM2_MODULE`` if set, else the usual install paths."""
    env = os.environ.get("SOFTHSM2_MODULE")
    if env and os.path.isfile(env):
        return env
    for path in (*MODULE_CANDIDATES, *sorted(glob.glob("/usr/lib/*/softhsm/libsofthsm2.so"))):
        if os.path.isfile(path):
            return path
    return None


@dataclass(frozen=True)
class Token:
    label: str
    pin: str
    so_pin: str
    module: str

    def uri(self, obj: str | None = None, *, key_id: bytes | None = None, pin: bool = True) -> str:
        """A ``pkcs11:`` URI for ``obj`` on this token, with the module path and (by default) the PIN."""
        path = [f"token={quote(self.label, safe='')}"]
        if obj:
            path.append(f"object={quote(obj, safe='')}")
        if key_id:
            path.append("id=" + "".join(f"%{b:02x}" for b in key_id))
        query = f"module-path={quote(self.module, safe='/')}"
        if pin:
            query += f"&pin-value={quote(self.pin, safe='')}"
        return "pkcs11:" + ";".join(path) + "?" + query


@dataclass
class SoftHSM:
    root: Path
    conf: Path
    module: str
    util: str
    _counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def make_token(self, label: str | None = None, pin: str = "1234", so_pin: str = "123456") -> Token:
        """Initialise a new token in a free slot (labels are unique per process unless given)."""
        label = label or f"airgap-test-{os.getpid()}-{next(self._counter)}"
        subprocess.run([self.util, "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", so_pin],
                       env={**os.environ, "SOFTHSM2_CONF": str(self.conf)}, check=True, capture_output=True,
                       timeout=60)
        return Token(label=label, pin=pin, so_pin=so_pin, module=self.module)


_shared: SoftHSM | None = None


def shared_softhsm(root: Path) -> SoftHSM | None:
    """The process-wide SoftHSM (created under ``root`` on first call), or None when not installed."""
    global _shared
    if _shared is not None:
        return _shared
    module, util = find_softhsm_module(), shutil.which("softhsm2-util")
    if module is None or util is None:
        return None
    tokens = root / "tokens"
    tokens.mkdir(parents=True, exist_ok=True)
    conf = root / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n"
                    "slots.removable = false\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    _shared = SoftHSM(root=root, conf=conf, module=module, util=util)
    return _shared
