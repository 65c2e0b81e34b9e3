#!/usr/bin/env bash
# Build airgap's own container image without Docker and without pulling any base image:
#   Debian bookworm rootfs (mmdebstrap, essential variant + python3, trimmed)      -> layer 1 (cached tar)
#   a venv at /app/venv with airgap's runtime dependencies, installed OFFLINE     -> layer 2 (cached image)
#     from manylinux cp311 x86_64 wheels downloaded from PyPI (binary wheels only)
#   airgap itself (a wheel built from `git archive HEAD`)                         -> layer 3
# then writes it as an OCI archive and, with --push, pushes it to a registry (plain HTTP is fine on loopback).
#
#   scripts/build-image.sh [--workdir DIR] [--tag NAME:TAG] [--output FILE] [--push HOST:PORT/REPO:TAG]
#                          [--source URL] [--refresh-base] [--refresh-deps]
#
# Runs as root (apt-get, mmdebstrap, rootful podman/buildah). Idempotent: the rootfs tar is cached under a key
# of its recipe, the dependency wheels under a key of pyproject.toml's dependency list, the dependency layer
# under a key of both; --refresh-base / --refresh-deps fetch newer Debian packages / wheels. Every piece of
# state lives under the work dir (default ~/.cache/airgap/image); podman and buildah run in a private mount
# namespace with their own config, storage, /run and /dev/null (../shared/recipes/containers.md), so the host's
# /var/lib/containers and /run are never touched.
#
# Image: ENTRYPOINT ["/app/venv/bin/airgap"], CMD ["webhook", "serve", <the mounts `airgap webhook manifests`
# uses>]. The Deployment that `airgap webhook manifests` renders passes `args: [webhook, serve, ...]`, which
# replace CMD and keep the entrypoint, so the entrypoint must be `airgap` alone (an entrypoint of
# `airgap webhook serve` would run `airgap webhook serve webhook serve ...`); it also lets the same image run any
# other subcommand (`podman run IMAGE verify ...`, `... webhook certs ...`). User 65532:65532 (no shell login,
# home /home/nonroot); works with a read-only root filesystem (caches go to /tmp, an emptyDir in the Deployment).
#
# Reproducibility: every file of the Debian and dependency layers has the mtime LAYER_EPOCH (a constant of this
# recipe, so those layers do not change with airgap's commits), every file of the airgap layer and the image's
# creation time SOURCE_DATE_EPOCH (default: HEAD's commit time); bytecode is hash-based (valid whatever the
# mtimes), no build history, no builder label. The same commit gives the same image digest, from the caches or
# from nothing (mmdebstrap and the wheel build are reproducible), as long as Debian's mirror and PyPI serve the
# same files.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SELF="$ROOT/scripts/$(basename "${BASH_SOURCE[0]}")"

SUITE=bookworm
PYVER=3.11
GLIBC_MINOR=36  # bookworm's glibc 2.36: manylinux_2_17 .. manylinux_2_36 wheels run on it
LAYER_EPOCH=1735689600  # 2025-01-01T00:00:00Z: the mtime of every file of the Debian and dependency layers
UID_GID=65532
MIRRORS=(
  "deb http://deb.debian.org/debian $SUITE main"
  "deb http://deb.debian.org/debian $SUITE-updates main"
  "deb http://deb.debian.org/debian-security $SUITE-security main"
)
# python3 and what a Python program serving TLS expects around it: CA certificates (registries with public
# certificates; a private CA comes with --ca-file), /etc/services and friends (netbase), time zones (tzdata,
# pulled by python3), and libstdc++ (manylinux wheels may link it without carrying it: google-re2 does). The
# essential variant has no apt: nothing is ever installed in the running image.
PACKAGES=python3,ca-certificates,netbase,libstdc++6

WORKDIR="${AIRGAP_IMAGE_WORKDIR:-$HOME/.cache/airgap/image}"
TAG=""
OUTPUT=""
PUSH=""
SOURCE_URL=""
REFRESH_BASE=0
REFRESH_DEPS=0

usage() { sed -n '2,/^set -euo/p' "$SELF" | sed '$d' | sed 's/^# \{0,1\}//'; }
say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'build-image: %s\n' "$*" >&2; exit 1; }

if [ "${1:-}" = --phase2 ]; then  # internal: the confined half, re-run by this script under unshare
  # shellcheck source=/dev/null
  source "$2"; set -- ; PHASE2=1
fi
while [ $# -gt 0 ]; do
  case "$1" in
    --workdir) WORKDIR="$2"; shift 2 ;;
    --tag) TAG="$2"; shift 2 ;;
    --output|-o) OUTPUT="$2"; shift 2 ;;
    --push) PUSH="$2"; shift 2 ;;
    --source) SOURCE_URL="$2"; shift 2 ;;
    --refresh-base) REFRESH_BASE=1; shift ;;
    --refresh-deps) REFRESH_DEPS=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
[ "$(id -u)" -eq 0 ] || die "run as root (mmdebstrap and rootful podman/buildah)"
mkdir -p "$WORKDIR"
WORKDIR="$(cd "$WORKDIR" && pwd)"
case "$WORKDIR/" in /var/lib/*|/run/*) die "--workdir must not be under /var/lib or /run (hidden or read-only while podman runs)" ;; esac
C="$WORKDIR/containers"  # podman/buildah state: config, storage, run, tmp
# `mount` (libmount) records mounts in /run/mount/utab: keep that file, and the directory, out of the host's /run
export LIBMOUNT_UTAB="$WORKDIR/utab"

sha() { sha256sum | cut -d' ' -f1; }

# ---- containers: a confined podman/buildah (recipes/containers.md) ------------------------------------------

write_container_config() {
  mkdir -p "$C/conf" "$C/storage" "$C/run" "$C/tmp"
  cat > "$C/conf/containers.conf" <<EOF
[containers]
# crun cannot raise RLIMIT_NOFILE to podman's default for root here
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
# the host mixes cgroup v1 and v2, which crun refuses: no cgroups (v2 is hidden by a tmpfs, see confine)
cgroups = "disabled"
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "crun"
image_copy_tmp_dir = "$C/tmp"
# file locks under /run/libpod (ours), not a segment in the host's /dev/shm
lock_type = "file"
EOF
  cat > "$C/conf/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$C/storage"
runroot = "$C/run/storage"
EOF
  cat > "$C/conf/registries.conf" <<EOF
unqualified-search-registries = []
EOF
  [ -f "$C/conf/auth.json" ] || echo '{}' > "$C/conf/auth.json"
}

# Runs inside `unshare -m --propagation private`: what is mounted here is seen by nobody else.
confine() {
  mount --bind "$C/run" /run  # first: what follows must not land in the host's /run
  # `podman exec` without -i once chowned the host's /dev/null (podman 4.3): shield it with a node of our own
  [ -c "$C/null" ] || { rm -f "$C/null"; mknod -m 666 "$C/null" c 1 3; }
  mount --bind "$C/null" /dev/null
  # crun refuses the host's cgroup v1 + v2 mix: hide v2 (containers.conf disables cgroups)
  if [ -d /sys/fs/cgroup/unified ]; then mount -t tmpfs -o size=64k,mode=755 none /sys/fs/cgroup/unified; fi
  # For root, containers/image keeps its blob-info cache in /var/lib/containers/cache whatever storage.conf says;
  # with /var/lib read-only (here only) it keeps it in memory.
  mount --bind /var/lib /var/lib
  mount -o remount,bind,ro /var/lib
  # Loading an OCI archive unpacks it in /var/tmp, whatever TMPDIR and image_copy_tmp_dir say.
  mount --bind "$C/tmp" /var/tmp
  export CONTAINERS_CONF="$C/conf/containers.conf" CONTAINERS_STORAGE_CONF="$C/conf/storage.conf"
  export CONTAINERS_REGISTRIES_CONF="$C/conf/registries.conf" TMPDIR="$C/tmp" BUILDAH_ISOLATION=oci
  export REGISTRY_AUTH_FILE="$C/conf/auth.json"
}

# ---- phase 1 (host): tools, rootfs tar, wheels ----------------------------------------------------------------

ensure_tools() {
  local missing=() tool
  for tool in podman buildah crun mmdebstrap; do command -v "$tool" >/dev/null || missing+=("$tool"); done
  command -v strip >/dev/null || missing+=(binutils)
  if [ ${#missing[@]} -gt 0 ]; then
    say "apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  command -v git >/dev/null || die "git is needed (the image is built from git HEAD)"
  command -v python3 >/dev/null || die "python3 is needed on the host (pip downloads the wheels)"
}

# The customize hook: runs on the host with the rootfs directory as $1 after every package is installed.
ROOTFS_HOOK=$(cat <<'HOOK'
set -eu
R="$1"
# Not needed at run time: documentation left by dpkg's filters, shell completion, bug-report and lintian data,
# glibc's iconv converters (Python's codecs do not use iconv), Python's test support and pydoc topics.
rm -rf "$R"/usr/share/info "$R"/usr/share/lintian "$R"/usr/share/bash-completion "$R"/usr/share/bug \
  "$R"/usr/share/doc-base "$R"/usr/share/gdb "$R"/usr/share/gcc "$R"/usr/lib/x86_64-linux-gnu/gconv \
  "$R"/usr/lib/python3*/test "$R"/usr/lib/python3*/pydoc_data
rm -rf "$R"/var/cache/debconf/*-old "$R"/var/lib/dpkg/*-old "$R"/var/cache/ldconfig/aux-cache
find "$R"/var/log -type f -delete
# The host's resolv.conf and hostname were copied in: make them neutral (runtimes mount their own over them).
: > "$R"/etc/resolv.conf
echo localhost > "$R"/etc/hostname
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' > "$R"/etc/hosts
# The unprivileged user the webhook runs as (uid/gid 65532, as distroless's "nonroot"); no password, no shell.
echo "nonroot:x:65532:65532:nonroot:/home/nonroot:/usr/sbin/nologin" >> "$R"/etc/passwd
echo "nonroot:x:65532:" >> "$R"/etc/group
echo "nonroot:*:0:0:99999:7:::" >> "$R"/etc/shadow
mkdir -p "$R"/home/nonroot && chown 65532:65532 "$R"/home/nonroot && chmod 0750 "$R"/home/nonroot
# Hash-based bytecode for the standard library: valid whatever the mtimes (dpkg's is timestamp-based and goes
# stale once mtimes are clamped), and nothing is compiled at start on a read-only root filesystem.
find "$R"/usr/lib/python3* -name __pycache__ -type d -prune -exec rm -rf {} +
chroot "$R" /usr/bin/python3 -m compileall -q --invalidation-mode unchecked-hash /usr/lib/python3.11 \
  /usr/lib/python3/dist-packages >/dev/null
HOOK
)

MMDEBSTRAP_ARGS=(
  --quiet --format=tar --variant=essential --include="$PACKAGES" --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*'
  --dpkgopt='path-exclude=/usr/share/info/*'
)

build_rootfs() {
  local key
  key="$(printf '%s\n' "${MMDEBSTRAP_ARGS[@]}" "${MIRRORS[@]}" "$SUITE" "$LAYER_EPOCH" "$ROOTFS_HOOK" \
    "$(declare -f build_rootfs)" | sha | cut -c1-16)"
  ROOTFS="$WORKDIR/base/rootfs-$SUITE-$key.tar"
  BASE_KEY="$key"
  if [ -f "$ROOTFS" ] && [ "$REFRESH_BASE" -eq 0 ]; then
    say "rootfs: cached $ROOTFS (built $(date -u -r "$ROOTFS" +%F); --refresh-base for newer Debian packages)"
    return
  fi
  say "rootfs: mmdebstrap $SUITE ($PACKAGES)"
  mkdir -p "$WORKDIR/base"
  printf '%s\n' "$ROOTFS_HOOK" > "$WORKDIR/base/hook.sh"
  # mmdebstrap mounts /proc, /sys and /dev in the chroot: keep those mounts in a namespace of their own.
  if ! SOURCE_DATE_EPOCH="$LAYER_EPOCH" TMPDIR="$WORKDIR/base" unshare -m --propagation private \
      mmdebstrap "${MMDEBSTRAP_ARGS[@]}" --customize-hook="sh $WORKDIR/base/hook.sh \"\$1\"" \
      "$SUITE" "${ROOTFS%.tar}.partial.tar" "${MIRRORS[@]}" >"$WORKDIR/base/mmdebstrap.log" 2>&1; then
    tail -20 "$WORKDIR/base/mmdebstrap.log" >&2; die "mmdebstrap failed (log: $WORKDIR/base/mmdebstrap.log)"
  fi
  # No device nodes in the layer (mmdebstrap puts /dev/null & co. in the tar): runtimes mount their own /dev, and
  # an unprivileged unpacker could not create them. No apt directories either: apt is not installed (essential
  # variant) and they are leftovers of the bootstrap, owned by root or by the host's _apt user depending on
  # whether packages were downloaded, which made the tar differ between runs. (mmdebstrap's own cleanup, after
  # the hook, still needs them.)
  tar --delete --wildcards -f "${ROOTFS%.tar}.partial.tar" './dev/?*' ./etc/apt ./var/lib/apt ./var/cache/apt \
    ./var/log/apt
  mv "${ROOTFS%.tar}.partial.tar" "$ROOTFS"
}

ensure_tool_venv() {
  TOOLS="$WORKDIR/tools"
  if [ ! -x "$TOOLS/bin/pip" ]; then
    say "tools venv: $TOOLS (a current pip for downloading wheels and building airgap's)"
    rm -rf "$TOOLS"
    python3 -m venv "$TOOLS"
    "$TOOLS/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
  fi
}

# The runtime dependencies as pyproject.toml lists them (one requirement a line).
runtime_requirements() {
  "$TOOLS/bin/python" - "$ROOT/pyproject.toml" <<'PY'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    print("\n".join(tomllib.load(f)["project"]["dependencies"]))
PY
}

download_wheels() {
  local platforms=() minor key
  for ((minor = GLIBC_MINOR; minor >= 17; minor--)); do platforms+=(--platform "manylinux_2_${minor}_x86_64"); done
  platforms+=(--platform manylinux2014_x86_64 --platform manylinux2010_x86_64 --platform manylinux1_x86_64)
  runtime_requirements > "$WORKDIR/requirements.in"
  key="$( { cat "$WORKDIR/requirements.in"; printf '%s\n' "$PYVER" "${platforms[@]}"; } | sha | cut -c1-16)"
  WHEELS="$WORKDIR/wheels/$key"
  if [ -f "$WHEELS/.complete" ] && [ "$REFRESH_DEPS" -eq 0 ]; then
    say "wheels: cached $WHEELS ($(ls "$WHEELS"/*.whl | wc -l) wheels; --refresh-deps to resolve again)"
    return
  fi
  say "wheels: pip download (cp${PYVER/./}, manylinux x86_64, binary only)"
  rm -rf "$WHEELS.tmp"; mkdir -p "$WHEELS.tmp"
  # pip itself is downloaded too: it installs the wheels inside the image from its own wheel file and is then
  # gone (it never enters the image).
  "$TOOLS/bin/pip" download -q --disable-pip-version-check --only-binary=:all: --python-version "$PYVER" \
    --implementation cp --abi "cp${PYVER/./}" "${platforms[@]}" -d "$WHEELS.tmp" \
    -r "$WORKDIR/requirements.in" pip
  (cd "$WHEELS.tmp" && sha256sum ./*.whl > SHA256SUMS)
  touch "$WHEELS.tmp/.complete"
  rm -rf "$WHEELS"; mv "$WHEELS.tmp" "$WHEELS"
}

build_airgap_wheel() {
  # From the commit, not the work tree: the image's revision label then says exactly what is inside, and
  # setuptools' build/ and *.egg-info never land in the checkout.
  REVISION="$(git -C "$ROOT" rev-parse HEAD)"
  if [ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no)" ]; then
    say "note: uncommitted changes are not in the image (built from HEAD $REVISION)"
  fi
  export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git -C "$ROOT" log -1 --format=%ct HEAD)}"
  DIST="$WORKDIR/dist/$REVISION"
  if ! ls "$DIST"/airgap-*.whl >/dev/null 2>&1; then
    say "airgap wheel from $REVISION"
    rm -rf "$WORKDIR/src" "$DIST.tmp"; mkdir -p "$WORKDIR/src" "$DIST.tmp"
    git -C "$ROOT" archive --format=tar HEAD | tar -C "$WORKDIR/src" -xf -
    if ! "$TOOLS/bin/pip" wheel -q --disable-pip-version-check --no-deps -w "$DIST.tmp" "$WORKDIR/src" \
        >"$WORKDIR/wheel.log" 2>&1; then
      tail -20 "$WORKDIR/wheel.log" >&2; die "building the airgap wheel failed (log: $WORKDIR/wheel.log)"
    fi
    rm -rf "$WORKDIR/src" "$DIST"; mv "$DIST.tmp" "$DIST"
  fi
  WHEEL="$(ls "$DIST"/airgap-*.whl)"
  VERSION="$(basename "$WHEEL" | cut -d- -f2)"
}

# ---- phase 2 (confined): layers, image, archive, push ---------------------------------------------------------

# Many wheels ship their extension modules with symbol tables and debug info (uvloop's is 13 MB, 1.6 MB
# stripped): strip what is not needed for dynamic linking, with the host's strip on the mounted container. Only
# files that still have a .symtab are touched, and IMPORT_EXTENSIONS then loads every extension module.
strip_extensions() {
  local mnt f
  mnt="$(buildah mount "$1")"
  while IFS= read -r -d '' f; do
    # (no `readelf | grep -q` here: under pipefail, grep quitting early fails the pipe now and then)
    case "$(readelf -S "$f" 2>/dev/null || true)" in *.symtab*) strip --strip-unneeded "$f" ;; esac
  done < <(find "$mnt/app" -type f -name '*.so*' -print0)
  buildah umount "$1" >/dev/null
}

IMPORT_EXTENSIONS=$(cat <<'PY'
import importlib, pathlib, sys
site = pathlib.Path(sys.argv[1])
names = sorted({".".join(p.relative_to(site).with_suffix("").with_suffix("").parts) for p in site.rglob("*.so")
                if ".libs" not in str(p.relative_to(site))})
for name in names:
    importlib.import_module(name)
print(f"{len(names)} extension modules import", file=sys.stderr)
PY
)

# built IMAGE KEY: IMAGE is in the store, built from the recipe KEY
built() {
  local role="${1##*:}"
  buildah inspect --type image "$1" >/dev/null 2>&1 && [ "$(cat "$C/$role.key" 2>/dev/null)" = "$2" ]
}

# buildah run with the wheels mounted read-only at /wheels and a scratch /tmp outside the layer; no network.
build_run() {
  local ctr="$1"; shift
  rm -rf "$C/tmp/build-tmp"; mkdir -p "$C/tmp/build-tmp"
  buildah run --network=none --volume "$WHEELS:/wheels:ro" --volume "$DIST:/dist:ro" \
    --volume "$C/tmp/build-tmp:/tmp" "$ctr" -- env PYTHONDONTWRITEBYTECODE=1 "$@"
}

SITE=/app/venv/lib/python$PYVER/site-packages
INSTALL_OPTS=(-q --disable-pip-version-check --no-index --no-cache-dir --no-compile --find-links /wheels
              --find-links /dist)
# Bytecode now, hash-based (valid whatever the mtimes, which commit --timestamp rewrites): a read-only root
# filesystem could not cache it, and compiling sigstore, cryptography, pydantic... at every start is slow.
COMPILE=(/app/venv/bin/python -m compileall -q -j 0 --invalidation-mode unchecked-hash)

WORKING=()  # working containers of this run: removed on any exit (a commit --rm has removed them already)
new_container() { CTR="$(buildah from --pull-never "$1")"; WORKING+=("$CTR"); }  # sets CTR
remove_working() { [ ${#WORKING[@]} -eq 0 ] || buildah rm "${WORKING[@]}" >/dev/null 2>&1 || true; }

phase2() {
  confine
  trap remove_working EXIT
  # Intermediate images have fixed names, because the final manifest names its base (annotation
  # org.opencontainers.image.base.name): a name carrying a cache key would change the digest with the recipe's
  # wording. Which key an image was built from is kept beside the store.
  local base=localhost/airgap-build:base deps=localhost/airgap-build:deps deps_key ctr
  # pip runs from its wheel file (python pip-X.whl/pip ...): it is never installed in the image
  local pip=(/app/venv/bin/python "/wheels/$(cd "$WHEELS" && ls pip-*.whl)/pip")
  if ! built "$base" "$BASE_KEY" || [ "$REFRESH_BASE" -eq 1 ]; then
    say "layer 1: Debian $SUITE rootfs"
    new_container scratch; ctr="$CTR"
    buildah add --quiet "$ctr" "$ROOTFS" / >/dev/null
    buildah commit --quiet --rm --omit-history --identity-label=false --timestamp "$LAYER_EPOCH" \
      "$ctr" "$base" >/dev/null
    echo "$BASE_KEY" > "$C/base.key"
    rm -f "$C/deps.key"
  fi

  deps_key="$( { echo "$BASE_KEY"; cat "$WHEELS/SHA256SUMS"; printf '%s\n' "${INSTALL_OPTS[@]}" "${COMPILE[@]}" \
    "$(declare -f phase2 strip_extensions build_run)" "$IMPORT_EXTENSIONS"; } \
    | sha | cut -c1-16)"
  if ! built "$deps" "$deps_key"; then
    say "layer 2: runtime dependencies, offline from $(ls "$WHEELS"/*.whl | wc -l) wheels"
    new_container "$base"; ctr="$CTR"
    build_run "$ctr" /usr/bin/python3 -m venv --without-pip /app/venv
    build_run "$ctr" "${pip[@]}" install "${INSTALL_OPTS[@]}" -r /wheels/requirements.txt
    strip_extensions "$ctr"
    build_run "$ctr" /app/venv/bin/python -c "$IMPORT_EXTENSIONS" "$SITE"
    build_run "$ctr" "${COMPILE[@]}" "$SITE"
    build_run "$ctr" sh -c 'rm -f /app/venv/bin/activate* /app/venv/bin/Activate.ps1'
    buildah commit --quiet --rm --omit-history --identity-label=false --timestamp "$LAYER_EPOCH" \
      "$ctr" "$deps" >/dev/null
    echo "$deps_key" > "$C/deps.key"
  fi

  say "layer 3: airgap $VERSION ($REVISION)"
  new_container "$deps"; ctr="$CTR"
  build_run "$ctr" "${pip[@]}" install "${INSTALL_OPTS[@]}" --no-deps airgap=="$VERSION"
  build_run "$ctr" "${pip[@]}" check --disable-pip-version-check -q
  build_run "$ctr" "${COMPILE[@]}" "$SITE/airgap"  # only what this layer adds: the rest would be copied up
  build_run "$ctr" /app/venv/bin/airgap --help >/dev/null
  local created labels=()
  created="$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)"
  labels+=(--label "org.opencontainers.image.title=airgap"
           --label "org.opencontainers.image.description=$(python3 -c 'import sys,tomllib; print(tomllib.load(open(sys.argv[1],"rb"))["project"]["description"])' "$ROOT/pyproject.toml")"
           --label "org.opencontainers.image.version=$VERSION"
           --label "org.opencontainers.image.revision=$REVISION"
           --label "org.opencontainers.image.created=$created"
           --label "org.opencontainers.image.licenses=Apache-2.0")
  [ -n "$SOURCE_URL" ] && labels+=(--label "org.opencontainers.image.source=$SOURCE_URL")
  buildah config "${labels[@]}" \
    --user "$UID_GID:$UID_GID" --workingdir /home/nonroot --port 8443/tcp \
    --env PATH=/app/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env HOME=/home/nonroot --env XDG_CACHE_HOME=/tmp/.cache \
    --env PYTHONDONTWRITEBYTECODE=1 --env PYTHONUNBUFFERED=1 \
    --entrypoint '["/app/venv/bin/airgap"]' \
    --cmd '["webhook", "serve", "--trust", "/etc/airgap/trust", "--tls-cert", "/etc/airgap/tls/tls.crt", "--tls-key", "/etc/airgap/tls/tls.key"]' \
    --stop-signal SIGTERM "$ctr"
  buildah commit --quiet --rm --omit-history --identity-label=false --timestamp "$SOURCE_DATE_EPOCH" \
    "$ctr" "$TAG" >/dev/null

  buildah rmi --prune >/dev/null 2>&1 || true  # images this build left untagged (older bases, deps, builds)

  say "OCI archive: $OUTPUT"
  mkdir -p "$(dirname "$OUTPUT")"
  rm -f "$OUTPUT.tmp"
  buildah push --quiet --digestfile "$WORKDIR/digest" "$TAG" "oci-archive:$OUTPUT.tmp:$TAG" >/dev/null
  mv "$OUTPUT.tmp" "$OUTPUT"
  if [ -n "$PUSH" ]; then
    say "push: $PUSH"
    # plain HTTP and no TLS verification: meant for a registry on loopback (or a site registry you trust)
    buildah push --quiet --tls-verify=false --digestfile "$WORKDIR/push-digest" "$TAG" "docker://$PUSH" >/dev/null
  fi
}

report() {
  python3 - "$OUTPUT" "$TAG" "$PUSH" "$WORKDIR/push-digest" <<'PY'
import gzip, hashlib, json, sys, tarfile
path, tag, push, push_digest = sys.argv[1:5]
with tarfile.open(path) as tar:
    def blob(digest):
        return tar.extractfile("blobs/sha256/" + digest.split(":", 1)[1])
    index = json.load(tar.extractfile("index.json"))
    desc = index["manifests"][0]
    manifest = json.load(blob(desc["digest"]))
    compressed = sum(layer["size"] for layer in manifest["layers"])
    uncompressed = 0
    for layer in manifest["layers"]:
        with gzip.open(blob(layer["digest"])) as stream:
            while chunk := stream.read(1 << 20):
                uncompressed += len(chunk)
mib = 1 << 20
print(f"image       {tag}")
print(f"digest      {desc['digest']}")
print(f"archive     {path}")
print(f"layers      {len(manifest['layers'])}: " + ", ".join(f"{l['size'] / mib:.1f}" for l in manifest["layers"]) + " MiB")
print(f"compressed  {compressed / mib:.1f} MiB ({compressed} bytes, sum of layer blobs)")
print(f"uncompressed {uncompressed / mib:.1f} MiB ({uncompressed} bytes)")
if push:
    with open(push_digest) as f:
        print(f"pushed      {push}@{f.read().strip()}")
PY
}

# ---- main ------------------------------------------------------------------------------------------------------

if [ -n "${PHASE2:-}" ]; then
  phase2
  exit 0
fi

start=$(date +%s)
ensure_tools
write_container_config
build_rootfs
ensure_tool_venv
download_wheels
cp "$WORKDIR/requirements.in" "$WHEELS/requirements.txt"
build_airgap_wheel
TAG="${TAG:-localhost/airgap:$VERSION}"
OUTPUT="${OUTPUT:-$WORKDIR/airgap-$VERSION.oci.tar}"
case "$OUTPUT" in /*) ;; *) OUTPUT="$PWD/$OUTPUT" ;; esac
if [ -z "$SOURCE_URL" ]; then
  SOURCE_URL="$(git -C "$ROOT" remote get-url origin 2>/dev/null || true)"
  [ -n "$SOURCE_URL" ] || say "note: no --source and no git remote 'origin': no org.opencontainers.image.source label"
fi
rm -f "$WORKDIR/push-digest"
declare -p WORKDIR ROOTFS BASE_KEY WHEELS DIST VERSION REVISION SOURCE_DATE_EPOCH TAG OUTPUT PUSH SOURCE_URL \
  REFRESH_BASE > "$WORKDIR/phase2.env"
unshare -m --propagation private "$BASH" "$SELF" --phase2 "$WORKDIR/phase2.env"
report
say "done in $(( $(date +%s) - start )) s"
