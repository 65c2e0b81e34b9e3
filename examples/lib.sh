# Shared by the examples' run.sh (sourced, after `set -euo pipefail`):
#   WORK=DIR [a temp dir], where the example writes keys, bundles and trust directories (and the current directory)
#   AIRGAP=the airgap command [airgap]; COSIGN_PASSWORD [example], for the keys the examples generate
#   expect EXIT-CODE COMMAND...: run it, fail the script unless it exits with EXIT-CODE
WORK="${WORK:-$(mktemp -d)}"
AIRGAP="${AIRGAP:-airgap}"
export COSIGN_PASSWORD="${COSIGN_PASSWORD:-example}"
cd "$WORK"
expect() {
  local want=$1 got=0; shift
  "$@" || got=$?
  if [ "$got" != "$want" ]; then echo "run.sh: expected exit $want, got $got: $*" >&2; exit 1; fi
}
