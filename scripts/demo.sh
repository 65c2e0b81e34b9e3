#!/usr/bin/env bash
# The main job end to end on an embedded default, from nothing and safe to re-run:
#   a "connected" registry with two demo multi-arch images -> a cosign-compatible key pair -> airgap sign
#   (index and every platform) -> airgap pack (checks each image against its policy, signs the bundle) onto
#   "removable media" -> inspect + verify-bundle -> airgap load into the "disconnected" registry at
#   127.0.0.1:31999 (Zarf-style refs, translation map, trust directory) -> airgap verify there, offline;
#   a re-load pushes nothing; an unsigned image is refused; an audit report is written; and, when etcd,
#   kube-apiserver and kubectl are installed (scripts/install-peers.sh), airgap's webhooks in a real API server
#   admit the signed image (pinned to its verified digest) and refuse the unsigned one, through kubectl.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ensure_python_env
ensure_registry
AIRGAP="$VENV/bin/airgap"
PY="$VENV/bin/python"

WORK="${AIRGAP_DEMO_DIR:-$ROOT/.demo}"  # AIRGAP_DEMO_DIR: elsewhere (the test of this script uses it)
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
storage: {cache: {blobdescriptor: inmemory}, filesystem: {rootdirectory: $dir/data}, delete: {enabled: true}}
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

say "pushing two demo multi-arch images (linux/amd64 + linux/arm64)"
DIGEST="$("$PY" "$ROOT/scripts/demo_images.py" "$CONNECTED" demo/app:1.0)"
echo "    $CONNECTED/demo/app:1.0 -> $DIGEST"
echo "    $CONNECTED/demo/api:2.1 -> $("$PY" "$ROOT/scripts/demo_images.py" "$CONNECTED" demo/api:2.1)"

say "airgap key generate + airgap sign (connected side; cosign-compatible key and signatures)"
export COSIGN_PASSWORD="demo-password"
"$AIRGAP" key generate --output-prefix "$WORK/release" >/dev/null
"$AIRGAP" sign --key "$WORK/release.key" --recursive "$CONNECTED/demo/app:1.0" "$CONNECTED/demo/api:2.1"

say "airgap pack: images, signatures, keys and policy into one signed bundle on removable media"
mkdir -p "$WORK/media"
cat > "$WORK/demo.yaml" <<YAML
apiVersion: airgap/v1
kind: Bundle
metadata: {name: demo, version: 1.0.0}
images:
  - $CONNECTED/demo/app:1.0
  - $CONNECTED/demo/api:2.1
keys:
  - {name: release, path: release.pub}
policies:
  - name: demo
    images: [{glob: "$CONNECTED/demo/**"}]
    authorities: [{name: release, key: {name: release}, ctlog: {disabled: true}}]
noMatchPolicy: deny
YAML
"$AIRGAP" pack "$WORK/demo.yaml" -o "$WORK/media/demo.tar" --key "$WORK/release.key"
"$AIRGAP" inspect "$WORK/media/demo.tar" --key "$WORK/release.pub"

say "disconnected side: verify the bundle offline, load it (Zarf-style refs), record the translation"
"$AIRGAP" verify-bundle "$WORK/media/demo.tar" --key "$WORK/release.pub"
"$AIRGAP" load "$WORK/media/demo.tar" --registry "$LOCAL" --key "$WORK/release.pub" --trust-out "$WORK/trust"
say "loading again pushes nothing"
"$AIRGAP" load "$WORK/media/demo.tar" --registry "$LOCAL" --key "$WORK/release.pub"

say "airgap verify at the disconnected registry, offline, with the bundle's keys and policy"
ZARF_REF="$("$PY" -c 'import json,sys; print(next(e["local"] for e in json.load(open(sys.argv[1])) if "demo/app" in e["upstream"] and "-zarf-" in e["local"]))' "$WORK/trust/map.json")"
"$AIRGAP" verify --trust "$WORK/trust" "$ZARF_REF" "$LOCAL/demo/app:1.0"
GOT="$("$AIRGAP" verify --trust "$WORK/trust" --json "$ZARF_REF" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["results"][0]["digest"])')"
if [ "$GOT" != "$DIGEST" ]; then echo "demo: digest mismatch: $GOT != $DIGEST" >&2; exit 1; fi

say "an unsigned image in the disconnected registry is refused"
"$PY" "$ROOT/scripts/demo_images.py" "$LOCAL" demo/unsigned:1.0 >/dev/null
if "$AIRGAP" verify --trust "$WORK/trust" "$LOCAL/demo/unsigned:1.0"; then
  echo "demo: an unsigned image was allowed" >&2; exit 1
fi

say "audit evidence of the disconnected registry: $WORK/audit/audit.{json,md,html}, policyreports.yaml"
"$AIRGAP" audit --registry "$LOCAL" --trust "$WORK/trust" -o "$WORK/audit" --exit-zero >/dev/null

say "in the cluster: a real kube-apiserver calls airgap's webhooks (mutating: pin the digest; validating: verify)"
set +e
"$PY" "$ROOT/scripts/demo_cluster.py" --trust "$WORK/trust" --signed "$LOCAL/demo/app:1.0" \
  --unsigned "$LOCAL/demo/unsigned:1.0" --work "$WORK/cluster"
rc=$?
set -e
case "$rc" in
  0) ;;
  3) say "skipped the cluster step: etcd, kube-apiserver or kubectl is not installed (scripts/install-peers.sh)" ;;
  *) echo "demo: the cluster step failed (logs under $WORK/cluster)" >&2; exit 1 ;;
esac
say "demo complete: $ZARF_REF ($GOT) came across the gap in a signed bundle and verified offline"
