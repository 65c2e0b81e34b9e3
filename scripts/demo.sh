#!/usr/bin/env bash
# The main job end to end on an embedded default, from nothing and safe to re-run:
#   a "connected" registry with a demo multi-arch image -> a cosign-compatible key pair -> airgap sign
#   (index and every platform) -> airgap copy onto removable media (an OCI layout) -> airgap copy into the
#   "disconnected" registry at 127.0.0.1:31999 -> airgap verify there, offline, against the public key and a
#   ClusterImagePolicy; an unsigned image is refused.
# Bundles (pack/load) replace the two copies when they land.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ensure_python_env
ensure_registry
AIRGAP="$VENV/bin/airgap"
PY="$VENV/bin/python"

WORK="$ROOT/.demo"
rm -rf "$WORK"; mkdir -p "$WORK"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port_free() { "$PY" -c "import socket,sys; s=socket.socket(); sys.exit(0 if s.connect_ex(('127.0.0.1',$1)) else 1)"; }

start_registry() { # NAME PORT
  local dir="$WORK/$1"; mkdir -p "$dir"
  cat > "$dir/config.yml" <<YAML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $dir/data}, delete: {enabled: true}}
http: {addr: 127.0.0.1:$2}
YAML
  docker-registry serve "$dir/config.yml" >"$dir/log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do
    "$PY" -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$2/v2/', timeout=1)" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "registry $1 did not start: $(tail -5 "$dir/log")" >&2; exit 1
}

CONNECTED="127.0.0.1:$(free_port)"
if port_free 31999; then LOCAL="127.0.0.1:31999"; else LOCAL="127.0.0.1:$(free_port)"; fi
start_registry connected "${CONNECTED##*:}"
start_registry disconnected "${LOCAL##*:}"
say "connected registry $CONNECTED, disconnected registry $LOCAL"

say "pushing a demo multi-arch image (linux/amd64 + linux/arm64)"
DIGEST="$("$PY" "$ROOT/scripts/demo_images.py" "$CONNECTED" demo/app:1.0)"
echo "    $CONNECTED/demo/app:1.0 -> $DIGEST"

say "airgap key generate + airgap sign (connected side; cosign-compatible key and signatures)"
export COSIGN_PASSWORD="demo-password"
"$AIRGAP" key generate --output-prefix "$WORK/release" >/dev/null
"$AIRGAP" sign --key "$WORK/release.key" --recursive "$CONNECTED/demo/app:1.0"

say "airgap copy: connected registry -> removable media (OCI layout)"
"$AIRGAP" copy "$CONNECTED/demo/app:1.0" "oci:$WORK/media:1.0"
say "airgap copy: removable media -> disconnected registry"
"$AIRGAP" copy "oci:$WORK/media:1.0" "$LOCAL/demo/app:1.0"

say "checking the disconnected registry serves the same digest"
GOT="$("$AIRGAP" copy --json "$LOCAL/demo/app:1.0" "oci:$WORK/check:1.0" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["digest"])')"
if [ "$GOT" != "$DIGEST" ]; then echo "demo: digest mismatch: $GOT != $DIGEST" >&2; exit 1; fi
say "airgap verify (disconnected side, offline): the key, then a trust directory with a policy"
"$AIRGAP" verify --key "$WORK/release.pub" --insecure-ignore-tlog "$LOCAL/demo/app:1.0"
mkdir -p "$WORK/trust/keys"
cp "$WORK/release.pub" "$WORK/trust/keys/release.pub"
cat > "$WORK/trust/policy.yaml" <<'YAML'
apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata: {name: demo}
spec:
  images: [{glob: "*/demo/**"}]
  authorities: [{name: release, key: {name: release}, ctlog: {disabled: true}}]
---
apiVersion: airgap.dev/v1alpha1
kind: AirgapPolicy
metadata: {name: settings}
spec: {noMatchPolicy: deny}
YAML
"$AIRGAP" verify --trust "$WORK/trust" "$LOCAL/demo/app:1.0"
say "an unsigned image in the disconnected registry is refused"
"$PY" "$ROOT/scripts/demo_images.py" "$LOCAL" demo/unsigned:1.0 >/dev/null
if "$AIRGAP" verify --trust "$WORK/trust" "$LOCAL/demo/unsigned:1.0"; then
  echo "demo: an unsigned image was allowed" >&2; exit 1
fi
say "demo complete: $LOCAL/demo/app:1.0@$GOT is byte-identical to the source and verified offline"
