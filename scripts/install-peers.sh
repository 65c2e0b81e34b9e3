#!/usr/bin/env bash
# Install the real peers the interop tests and benchmarks run against. Test tools only: the product is
# pure Python. Idempotent: a peer already installed at the pinned version is skipped.
#   Debian: docker-registry (distribution 2.8), skopeo, softhsm2, chromium, wrk (bench_webhook's load generator),
#     etcd-server (storage for kube-apiserver), podman, buildah, crun, mmdebstrap and binutils (scripts/build-image.sh
#     builds airgap's image with them; tests/e2e runs the webhook from that image with podman)
#   Go (module proxy): cosign v2 + v3, crane, distribution v3 `registry`, helm v3, and `referrers-registry`
#   (tests/peers/referrers-registry: go-containerregistry's registry with the OCI Referrers API turned on;
#   distribution v3.1 does not serve that API and the proxy refuses zot and olareg)
#   kube-apiserver + kubectl, built from k8s.io/kubernetes through a wrapper module
#   (/work/shared/recipes/kube-apiserver.md): the one slow build, 8-13 min on 2 cores with ~2.5 GB peak RSS.
# Go binaries are built once per version into $AIRGAP_PEERS/<name>-<version> (default ~/.cache/airgap/peers)
# and linked into $AIRGAP_PEERS/bin; the tests look there and on PATH. Builds hold a lock per version, so two
# installers sharing the cache wait for each other instead of building the same thing twice.
set -euo pipefail

COSIGN_V2=v2.4.1
COSIGN_V3=v3.1.3
CRANE=v0.22.1
DISTRIBUTION=v3.1.2
HELM=v3.22.0
KUBE=v1.37.2
PEERS="${AIRGAP_PEERS:-$HOME/.cache/airgap/peers}"
BIN="$PEERS/bin"
LOCKS="$PEERS/locks"
mkdir -p "$BIN" "$LOCKS"

log() { printf 'install-peers: %s\n' "$*" >&2; }

need_apt=()
command -v docker-registry >/dev/null || need_apt+=(docker-registry)
command -v skopeo >/dev/null || need_apt+=(skopeo)
command -v softhsm2-util >/dev/null || need_apt+=(softhsm2)
command -v chromium >/dev/null || need_apt+=(chromium)
command -v wrk >/dev/null || need_apt+=(wrk)
command -v etcd >/dev/null || need_apt+=(etcd-server)
for tool in podman buildah crun mmdebstrap; do command -v "$tool" >/dev/null || need_apt+=("$tool"); done
command -v strip >/dev/null || need_apt+=(binutils)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  log "apt-get install ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! command -v go >/dev/null; then
  if [ -x /usr/local/go/bin/go ]; then export PATH="/usr/local/go/bin:$PATH"; else
    log "go not found: Go peers (cosign, crane, registry, helm, kube-apiserver) cannot be built"; exit 1; fi
fi

# new_tmp DIR: a fresh build dir beside DIR (leftovers of interrupted builds removed; callers hold DIR's lock).
new_tmp() { local t; rm -rf "$1".tmp.*; t="$(mktemp -d "$1.tmp.XXXXXX")"; chmod 755 "$t"; echo "$t"; }
# publish TMP DIR: move a finished build into place in one rename.
publish() { rm -rf "$2"; mv -T "$1" "$2"; }

# go_peer NAME VERSION MODULE@VERSION [RENAME [LDFLAGS]]: build into a per-version dir, link into $BIN.
go_peer() {
  local name="$1" version="$2" module="$3" as="${4:-$1}" ldflags="${5:-}"
  local dir="$PEERS/$as-$version"
  if [ ! -x "$dir/$name" ]; then
    {
      flock 9
      if [ ! -x "$dir/$name" ]; then
        local start=$SECONDS tmp args=()
        [ -z "$ldflags" ] || args=(-ldflags "$ldflags")
        log "building $as $version (go install $module)"
        tmp="$(new_tmp "$dir")"
        GOBIN="$tmp" GOFLAGS="-trimpath" go install "${args[@]}" "$module"
        publish "$tmp" "$dir"
        log "built $as $version in $((SECONDS - start)) s"
      fi
    } 9>"$LOCKS/$as-$version"
  fi
  ln -sf "$dir/$name" "$BIN/$as"
}

# kube_peer VERSION: kube-apiserver and kubectl into $PEERS/kubernetes-VERSION, linked into $BIN.
# `go install k8s.io/kubernetes/cmd/...@VERSION` is refused (its go.mod replaces the staging modules with local
# directories), so a wrapper module requires k8s.io/kubernetes and points every staging module it requires at
# v0.0.0 to the published v0.MINOR.PATCH. The wrapper's go.mod/go.sum are kept in the cache dir's src/.
kube_peer() {
  local version="$1" dir="$PEERS/kubernetes-$1"
  if [ ! -x "$dir/kube-apiserver" ] || [ ! -x "$dir/kubectl" ]; then
    {
      flock 9
      if [ ! -x "$dir/kube-apiserver" ] || [ ! -x "$dir/kubectl" ]; then build_kube "$version" "$dir"; fi
    } 9>"$LOCKS/kubernetes-$version"
  fi
  ln -sf "$dir/kube-apiserver" "$BIN/kube-apiserver"
  ln -sf "$dir/kubectl" "$BIN/kubectl"
}

build_kube() {
  local version="$1" dir="$2" start=$SECONDS t tmp gomod staging minor ld pkg cmd m
  staging="v0.${version#v1.}"            # v1.37.2 -> v0.37.2
  minor="${version#v1.}"; minor="${minor%%.*}"
  log "building kube-apiserver + kubectl $version (wrapper module over k8s.io/kubernetes)"
  tmp="$(new_tmp "$dir")"
  mkdir "$tmp/src"
  gomod="$(cd "$tmp/src" && go mod download -json "k8s.io/kubernetes@$version" \
    | sed -n 's/^[[:space:]]*"GoMod": "\([^"]*\)".*/\1/p')"
  [ -f "$gomod" ] || { log "go mod download k8s.io/kubernetes@$version gave no go.mod"; return 1; }
  # Staging modules: required at v0.0.0 and replaced by ./staging/... in k8s.io/kubernetes' own go.mod.
  local modules
  modules="$(awk '
    { sub(/\/\/.*/, "") }
    /^(require|replace)[ \t]*\(/ { block = $1; next }
    /^[ \t]*\)/ { block = ""; next }
    {
      kind = block
      if ($1 == "require" || $1 == "replace") { kind = $1; $1 = ""; $0 = $0 }
      if (kind == "require" && $2 == "v0.0.0") required[$1] = 1
      if (kind == "replace" && $2 == "=>" && $3 ~ /^\.\/staging\//) staged[$1] = 1
    }
    END { for (m in required) if (m in staged) print m }' "$gomod" | sort)"
  case "$modules" in *k8s.io/apiserver*) ;; *) log "no staging modules found in $gomod"; return 1 ;; esac
  {
    printf 'module x/kas\n\n%s\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' \
      "$(grep -m1 '^go ' "$gomod")" "$version"
    for m in $modules; do printf '\t%s => %s %s\n' "$m" "$m" "$staging"; done
    printf ')\n'
  } > "$tmp/src/go.mod"
  cat > "$tmp/src/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
  t=$SECONDS
  # Its ~200 "go: downloading" lines go to a log, shown only if tidy fails.
  if ! (cd "$tmp/src" && go mod tidy) >"$tmp/tidy.log" 2>&1; then
    tail -n 30 "$tmp/tidy.log" >&2; log "kube: go mod tidy failed (log: $tmp/tidy.log)"; return 1
  fi
  rm "$tmp/tidy.log"
  log "kube: go mod tidy in $((SECONDS - t)) s ($(wc -w <<<"$modules") staging modules at $staging)"
  ld="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  done
  # One after the other: kube-apiserver's link alone peaks at ~2.5 GB; kubectl then reuses the build cache.
  for cmd in kube-apiserver kubectl; do
    t=$SECONDS
    (cd "$tmp/src" && go build -p 2 -trimpath -ldflags "$ld" -o "$tmp/$cmd" "k8s.io/kubernetes/cmd/$cmd")
    log "kube: built $cmd in $((SECONDS - t)) s"
  done
  # Captured first: grep -q may stop reading early, and pipefail would count the writer's SIGPIPE.
  local said
  said="$("$tmp/kube-apiserver" --version)"
  grep -qx "Kubernetes $version" <<<"$said" || { log "kube-apiserver --version says: $said"; return 1; }
  said="$("$tmp/kubectl" version --client)"
  grep -qx "Client Version: $version" <<<"$said" || { log "kubectl version --client says: $said"; return 1; }
  publish "$tmp" "$dir"
  log "built kube-apiserver + kubectl $version in $((SECONDS - start)) s"
}

pids=()
spawn() { "$@" & pids+=($!); }
# The kube build is by far the longest: start it first; the smaller builds share the other core meanwhile.
spawn kube_peer "$KUBE"
spawn go_peer crane "$CRANE" "github.com/google/go-containerregistry/cmd/crane@$CRANE"
spawn go_peer registry "$DISTRIBUTION" "github.com/distribution/distribution/v3/cmd/registry@$DISTRIBUTION"
spawn go_peer helm "$HELM" "helm.sh/helm/v3/cmd/helm@$HELM" helm "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM"
go_peer cosign "$COSIGN_V2" "github.com/sigstore/cosign/v2/cmd/cosign@$COSIGN_V2" cosign
go_peer cosign "$COSIGN_V3" "github.com/sigstore/cosign/v3/cmd/cosign@$COSIGN_V3" cosign3
# Our own test peer: rebuilt when its sources change (stamp = hash of main.go + go.mod + go.sum).
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
src="$ROOT/tests/peers/referrers-registry"
want="$(cat "$src/main.go" "$src/go.mod" "$src/go.sum" | sha256sum | cut -d' ' -f1)"
if [ ! -x "$BIN/referrers-registry" ] || [ "$(cat "$PEERS/referrers-registry.stamp" 2>/dev/null)" != "$want" ]; then
  log "building referrers-registry"
  (cd "$src" && go build -trimpath -o "$BIN/referrers-registry.tmp.$$" . && mv "$BIN/referrers-registry.tmp.$$" "$BIN/referrers-registry")
  echo "$want" > "$PEERS/referrers-registry.stamp"
fi
failed=0
for p in "${pids[@]}"; do wait "$p" || failed=1; done
[ "$failed" -eq 0 ] || { log "a background build failed (see above)"; exit 1; }
log "peers ready in $BIN: $(ls "$BIN" | tr '\n' ' ')"
