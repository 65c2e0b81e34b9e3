#!/usr/bin/env bash
# kubectl-buildkit: a multi-arch image built with `kubectl build --platform linux/amd64,linux/arm64`, signed by two
# signers with `sign --recursive`, every platform verified (before packing, and at the site after loading).
#   SOURCE=HOST:PORT   registry holding buildkit/app:1.0 (an index of two platforms) and buildkit/half:1.0 (the
#                      same shape, that only the builder signs)
#   SITE=HOST:PORT     the disconnected registry
#   WORK=DIR [a temp dir]; AIRGAP=airgap command [airgap]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
: "${SOURCE:?}" "${SITE:?}"
source "$here/../lib.sh"  # WORK (the current directory), AIRGAP, COSIGN_PASSWORD, expect
digests() {  # the digests a `sign --json` run signed: the index first, then each platform
  python3 -c 'import json, sys; print(*(e["digest"] for i in json.load(sys.stdin)["images"] for e in i["signed"]))'
}

$AIRGAP key generate --output-key-prefix builder --force
$AIRGAP key generate --output-key-prefix release --force
# both signers sign the index AND every platform's manifest: a node pulls its platform's digest, not the index
read -r -a app <<< "$($AIRGAP sign --key builder.key --recursive --json "$SOURCE/buildkit/app:1.0" | digests)"
$AIRGAP sign --key release.key --recursive "$SOURCE/buildkit/app:1.0"
$AIRGAP sign --key builder.key --recursive "$SOURCE/buildkit/half:1.0"
echo "buildkit/app: ${#app[@]} digests (index + platforms): ${app[*]}"

# pack verifies at the source against the spec's policy, then the bundle's trust checks every platform's digest
sed "s|@SOURCE@|$SOURCE|g" "$here/spec.yaml" > spec.yaml
$AIRGAP pack spec.yaml -o buildkit.tar --key release.key
$AIRGAP trust export buildkit.tar -o trust --key release.pub
$AIRGAP verify --trust trust "${app[@]/#/$SOURCE/buildkit/app@}"
# one signer is not enough, for the index or any platform
sed "s|buildkit/app:1.0 |buildkit/half:1.0 |" spec.yaml > half.yaml
expect 1 $AIRGAP pack half.yaml -o half.tar --key release.key
expect 1 $AIRGAP verify --trust trust "$SOURCE/buildkit/half:1.0"

# the site: load, then what pods name (the tag: the index, whose digest pins each platform's manifest), and every
# platform again by its upstream name, read from the site registry (--registry-alias): the translation map
# records the digest each tag was loaded with, not the platforms' digests under it
$AIRGAP load buildkit.tar --registry "$SITE" --key release.pub --trust-out site-trust
$AIRGAP verify --trust site-trust "$SITE/buildkit/app:1.0" | tee site.txt
$AIRGAP verify --trust trust --registry-alias "$SOURCE=$SITE" "${app[@]/#/$SOURCE/buildkit/app@}" | tee -a site.txt
echo "kubectl-buildkit: ${#app[@]} digests verified with two signers, at the source and at the site"
