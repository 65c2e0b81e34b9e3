#!/usr/bin/env bash
# Apocryph: keyless signatures, one identity per image, carried as files next to the deployment and verified
# offline with --signature-dir.
#   SOURCE=HOST:PORT   registry holding apocryph/frontend:1.0 and apocryph/backend:1.0
#   FRONTEND_TOKEN, BACKEND_TOKEN   OIDC identity tokens of the two CI identities (frontend-ci@apocryph.test,
#                      backend-ci@apocryph.test), ISSUER their issuer
#   FULCIO_URL, REKOR_URL, TRUSTED_ROOT   the Sigstore to sign with and its trusted_root.json
#   WORK=DIR [a temp dir]; AIRGAP=airgap command [airgap]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
: "${SOURCE:?}" "${FRONTEND_TOKEN:?}" "${BACKEND_TOKEN:?}" "${ISSUER:?}" "${FULCIO_URL:?}" "${REKOR_URL:?}" "${TRUSTED_ROOT:?}"
source "$here/../lib.sh"  # WORK (the current directory), AIRGAP, COSIGN_PASSWORD, expect
sigstore=(--fulcio-url "$FULCIO_URL" --rekor-url "$REKOR_URL" --trusted-root "$TRUSTED_ROOT")
frontend="$SOURCE/apocryph/frontend:1.0"
backend="$SOURCE/apocryph/backend:1.0"

# CI: each image signed by its own identity; nothing pushed, the signatures are files (certificate and Rekor
# entry included) that travel with the deployment
$AIRGAP sign --identity-token "$FRONTEND_TOKEN" "${sigstore[@]}" --upload=false --output-dir signatures "$frontend"
$AIRGAP sign --identity-token "$BACKEND_TOKEN" "${sigstore[@]}" --upload=false --output-dir signatures "$backend"

# the provider: per-image keyless policy, the Sigstore root, verified offline from the files
mkdir -p trust
cp "$TRUSTED_ROOT" trust/trusted_root.json
sed -e "s|@SOURCE@|$SOURCE|g" -e "s|@ISSUER@|$ISSUER|g" "$here/policy.yaml" > trust/policy.yaml
$AIRGAP verify --trust trust --signature-dir signatures "$frontend" "$backend"
expect 1 $AIRGAP verify --trust trust "$frontend"     # the registry holds no signature

# the frontend's identity cannot vouch for the backend
$AIRGAP sign --identity-token "$FRONTEND_TOKEN" "${sigstore[@]}" --upload=false --output-dir wrong "$backend"
expect 1 $AIRGAP verify --trust trust --signature-dir wrong "$backend"
# the same check without a policy file, as cosign's flags say it
$AIRGAP verify --certificate-identity backend-ci@apocryph.test --certificate-oidc-issuer "$ISSUER" \
               --trusted-root "$TRUSTED_ROOT" --signature-dir signatures "$backend"
echo "apocryph: verified $frontend and $backend from $WORK/signatures"
