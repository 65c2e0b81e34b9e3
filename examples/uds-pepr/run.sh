#!/usr/bin/env bash
# UDS/Pepr: a webhook with an allow-list and approved registries, fed by an airgap bundle.
#   SOURCE=HOST:PORT  connected registry holding uds/podinfo:6.4.0, uds/pepr-controller:0.28.0, uds/pause:3.9,
#                     uds/rogue:1.0 (unsigned) and, on OTHER, other/tool:1.0
#   OTHER=HOST:PORT   a registry that is not approved
#   SITE=HOST:PORT    the cluster's (Zarf) registry
#   WORK=DIR          where keys, the bundle and trust/ go [a temp dir]; AIRGAP=airgap command [airgap]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
: "${SOURCE:?}" "${OTHER:?}" "${SITE:?}"
source "$here/../lib.sh"  # WORK (the current directory), AIRGAP, COSIGN_PASSWORD, expect

# connected side: sign the package's images (every platform), pack them with the policy, sign the bundle
$AIRGAP key generate --output-key-prefix release --force
$AIRGAP sign --key release.key --recursive "$SOURCE/uds/podinfo:6.4.0" "$SOURCE/uds/pepr-controller:0.28.0"
sed "s|@SOURCE@|$SOURCE|g" "$here/spec.yaml" > spec.yaml
$AIRGAP pack spec.yaml -o uds.tar --key release.key
# an image from a registry that is not approved never gets into a bundle
sed "s|- $SOURCE/uds/pause:3.9 |- $OTHER/other/tool:1.0 |" spec.yaml > unapproved.yaml
expect 1 $AIRGAP pack unapproved.yaml -o unapproved.tar --key release.key

# disconnected side: load into the Zarf registry (Zarf's tag scheme), keep the trust for the webhook
$AIRGAP load uds.tar --registry "$SITE" --key release.pub --trust-out trust
$AIRGAP verify --trust trust "$SITE/uds/podinfo:6.4.0" "$SITE/uds/pepr-controller:0.28.0" "$SITE/uds/pause:3.9"
# pushed to the Zarf registry by hand, not by a verified bundle: nothing says where it came from
$AIRGAP copy "$SOURCE/uds/rogue:1.0" "$SITE/uds/rogue:1.0"
expect 1 $AIRGAP verify --trust trust "$SITE/uds/rogue:1.0"
echo "uds-pepr: trust directory for the webhook: $WORK/trust"
