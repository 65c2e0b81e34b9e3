# Shared by demo.sh and test.sh: set up everything from nothing, idempotently.
# shellcheck shell=bash
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
export AIRGAP_PEERS="${AIRGAP_PEERS:-$HOME/.cache/airgap/peers}"
export PATH="$AIRGAP_PEERS/bin:$PATH"

say() { printf '==> %s\n' "$*" >&2; }

ensure_python_env() {
  local py="${PYTHON:-python3}"
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV"
    "$py" -m venv "$VENV"
  fi
  # Reinstall only when the dependency list changed (stamp = hash of pyproject.toml).
  local stamp="$VENV/.airgap-installed" want
  want="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    say "installing airgap and its dev dependencies into $VENV"
    if ! { "$VENV/bin/python" -m pip install -q --upgrade pip &&
           "$VENV/bin/python" -m pip install -q -e "$ROOT[dev]"; } >"$VENV/pip.log" 2>&1; then
      tail -20 "$VENV/pip.log" >&2; echo "pip install failed (log: $VENV/pip.log)" >&2; return 1
    fi
    echo "$want" > "$stamp"
  fi
}

ensure_registry() {
  if ! command -v docker-registry >/dev/null; then
    say "installing Debian's docker-registry"
    local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq docker-registry >/dev/null
  fi
}
