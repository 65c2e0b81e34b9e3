#!/usr/bin/env bash
# Sylva: signatures in a signature repository (COSIGN_REPOSITORY / Kyverno `repository` / CIP `source`), a policy
# in Audit first (an unsigned unit is reported, not blocked), then Enforce (it is blocked).
#   SOURCE=HOST:PORT   registry holding sylva/capi-controller:1.6 (to sign) and sylva/metallb:0.14 (left unsigned)
#   WORK=DIR [a temp dir]; AIRGAP=airgap command [airgap]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
: "${SOURCE:?}"
source "$here/../lib.sh"  # WORK (the current directory), AIRGAP, COSIGN_PASSWORD, expect
signed="$SOURCE/sylva/capi-controller:1.6"
unsigned="$SOURCE/sylva/metallb:0.14"

# signing puts the signatures in the signature repository, not next to the image
$AIRGAP key generate --output-key-prefix release --force
COSIGN_REPOSITORY="$SOURCE/sylva/signatures" $AIRGAP sign --key release.key --recursive "$signed"
COSIGN_REPOSITORY="$SOURCE/sylva/signatures" $AIRGAP triangulate "$signed"

for form in kyverno cip; do
  # Kyverno reads the key from a Secret (k8s://NS/release: release.pub in the trust directory); the CIP names it
  rm -rf "trust-$form" && mkdir -p "trust-$form/keys"
  if [ "$form" = kyverno ]; then cp release.pub "trust-$form/release.pub"; else cp release.pub "trust-$form/keys/"; fi
  sed "s|@SOURCE@|$SOURCE|g" "$here/$form-policy.yaml" > "trust-$form/policy.yaml"
  # Audit (warn): the unsigned unit is reported and still allowed (exit 0)
  $AIRGAP verify --trust "trust-$form" "$signed" "$unsigned" | tee "audit-$form.txt"
  grep -q "^WARN $unsigned" "audit-$form.txt"
  # Enforce: the same verdicts, now a denial for the unsigned unit
  sed -i -e 's/validationFailureAction: Audit/validationFailureAction: Enforce/' -e 's/mode: warn/mode: enforce/' \
      "trust-$form/policy.yaml"
  $AIRGAP verify --trust "trust-$form" "$signed"
  expect 1 $AIRGAP verify --trust "trust-$form" "$unsigned"
done
echo "sylva: Audit warned and Enforce denied $unsigned, with the Kyverno policy and with the ClusterImagePolicy"
