#!/usr/bin/env bash
# ko: a base-image check through signed annotations (verify -a), warned first, then enforced.
#   SOURCE=HOST:PORT   registry holding ko/hello:1.0 (built on the approved base), ko/legacy:1.0 (an older base)
#                      and ko/legacy:1.1 (rebuilt on the approved base)
#   BASE               the approved base image [cgr.dev/chainguard/static]
#   WORK=DIR [a temp dir]; AIRGAP=airgap command [airgap]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
: "${SOURCE:?}"
BASE="${BASE:-cgr.dev/chainguard/static}"
source "$here/../lib.sh"  # WORK (the current directory), AIRGAP, COSIGN_PASSWORD, expect
ann=org.opencontainers.image.base.name   # the annotation ko writes on the images it builds

# CI signs what ko built, vouching for the base image it was built on
$AIRGAP key generate --output-key-prefix release --force
$AIRGAP sign --key release.key -a "$ann=$BASE" "$SOURCE/ko/hello:1.0" "$SOURCE/ko/legacy:1.1"
$AIRGAP sign --key release.key -a "$ann=docker.io/library/debian:11" "$SOURCE/ko/legacy:1.0"

mkdir -p trust/keys && cp release.pub trust/keys/
sed "s|@SOURCE@|$SOURCE|g" "$here/policy.yaml" > trust/policy.yaml
# 1. warn: the image on the old base is reported (WARN), nothing is blocked yet
$AIRGAP verify --trust trust -a "$ann=$BASE" "$SOURCE/ko/hello:1.0" "$SOURCE/ko/legacy:1.0" | tee warn.txt
grep -q "^WARN $SOURCE/ko/legacy:1.0" warn.txt
# 2. enforce: the same image now fails; its rebuild on the approved base passes
sed -i 's/mode: warn/mode: enforce/' trust/policy.yaml
expect 1 $AIRGAP verify --trust trust -a "$ann=$BASE" "$SOURCE/ko/legacy:1.0"
$AIRGAP verify --trust trust -a "$ann=$BASE" "$SOURCE/ko/hello:1.0" "$SOURCE/ko/legacy:1.1"
# the same check as cosign users write it: cosign verify --key release.pub -a KEY=VALUE IMAGE
$AIRGAP verify --key release.pub --insecure-ignore-tlog -a "$ann=$BASE" "$SOURCE/ko/hello:1.0"
expect 1 $AIRGAP verify --key release.pub --insecure-ignore-tlog -a "$ann=$BASE" "$SOURCE/ko/legacy:1.0"
echo "ko: $SOURCE/ko/legacy:1.0 warned, then failed; its rebuild passed"
