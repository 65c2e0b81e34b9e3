#!/usr/bin/env bash
# Install the real peers the interop tests and benchmarks run against. Test tools only: the product is
# pure Python. Idempotent: a peer already installed at the pinned version is skipped.
#   Debian: docker-registry (distribution 2.8), skopeo, softhsm2, chromium, wrk (bench_webhook's load generator)
#   Go (module proxy): cosign v2 + v3, crane, distribution v3 `registry`, and `referrers-registry`
#   (tests/peers/referrers-registry: go-containerregistry's registry with the OCI Referrers API turned on;
#   distribution v3.1 does not serve that API and the proxy refuses zot and olareg)
# Go binaries go to $AIRGAP_PEERS/bin (default ~/.cache/airgap/peers/bin); the tests look there and on PATH.
set -euo pipefail

COSIGN_V2=v2.4.1
COSIGN_V3=v3.1.3
CRANE=v0.22.1
DISTRIBUTION=v3.1.2
PEERS="${AIRGAP_PEERS:-$HOME/.cache/airgap/peers}"
BIN="$PEERS/bin"
mkdir -p "$BIN"

log() { printf 'install-peers: %s\n' "$*" >&2; }

need_apt=()
command -v docker-registry >/dev/null || need_apt+=(docker-registry)
command -v skopeo >/dev/null || need_apt+=(skopeo)
command -v softhsm2-util >/dev/null || need_apt+=(softhsm2)
command -v chromium >/dev/null || need_apt+=(chromium)
command -v wrk >/dev/null || need_apt+=(wrk)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  log "apt-get install ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! command -v go >/dev/null; then
  if [ -x /usr/local/go/bin/go ]; then export PATH="/usr/local/go/bin:$PATH"; else
    log "go not found: Go peers (cosign, crane, registry) cannot be built"; exit 1; fi
fi

# go_peer NAME VERSION MODULE@VERSION [RENAME]: build into a per-version dir, link into $BIN.
go_peer() {
  local name="$1" version="$2" module="$3" as="${4:-$1}"
  local dir="$PEERS/$as-$version"
  if [ -x "$dir/$name" ]; then
    ln -sf "$dir/$name" "$BIN/$as"; return 0
  fi
  log "building $as $version (go install $module)"
  mkdir -p "$dir.tmp"
  GOBIN="$dir.tmp" GOFLAGS="-trimpath" go install "$module"
  rm -rf "$dir"; mv "$dir.tmp" "$dir"
  ln -sf "$dir/$name" "$BIN/$as"
}

go_peer crane "$CRANE" "github.com/google/go-containerregistry/cmd/crane@$CRANE" &
p1=$!
go_peer registry "$DISTRIBUTION" "github.com/distribution/distribution/v3/cmd/registry@$DISTRIBUTION" &
p2=$!
go_peer cosign "$COSIGN_V2" "github.com/sigstore/cosign/v2/cmd/cosign@$COSIGN_V2" cosign
go_peer cosign "$COSIGN_V3" "github.com/sigstore/cosign/v3/cmd/cosign@$COSIGN_V3" cosign3
# Our own test peer: rebuilt when its sources change (stamp = hash of main.go + go.mod + go.sum).
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
src="$ROOT/tests/peers/referrers-registry"
want="$(cat "$src/main.go" "$src/go.mod" "$src/go.sum" | sha256sum | cut -d' ' -f1)"
if [ ! -x "$BIN/referrers-registry" ] || [ "$(cat "$PEERS/referrers-registry.stamp" 2>/dev/null)" != "$want" ]; then
  log "building referrers-registry"
  (cd "$src" && go build -trimpath -o "$BIN/referrers-registry.tmp" . && mv "$BIN/referrers-registry.tmp" "$BIN/referrers-registry")
  echo "$want" > "$PEERS/referrers-registry.stamp"
fi
wait "$p1"; wait "$p2"
log "peers ready in $BIN: $(ls "$BIN" | tr '\n' ' ')"
