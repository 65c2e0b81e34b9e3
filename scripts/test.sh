#!/usr/bin/env bash
# The test suite, from nothing: venv + deps, the real peers the tests run against (scripts/install-peers.sh:
# cached, so only the first run pays: ~20-30 min on 2 cores for cosign v2/v3, kube-apiserver, Helm...), then pytest.
# AIRGAP_SKIP_PEERS=1 skips the peer install (tests needing a missing peer then skip; under CI=true they fail).
# Extra arguments go to pytest (e.g. ./scripts/test.sh tests/unit -k refs).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ensure_python_env
ensure_registry
if [ "${AIRGAP_SKIP_PEERS:-0}" != "1" ]; then
  if [ ! -x "$AIRGAP_PEERS/bin/kube-apiserver" ] || [ ! -x "$AIRGAP_PEERS/bin/cosign" ]; then
    say "installing the test peers (first run only, ~20-30 min on 2 cores; AIRGAP_SKIP_PEERS=1 to skip)"
  fi
  "$ROOT/scripts/install-peers.sh"
fi
cd "$ROOT"
set +e
"$VENV/bin/python" -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then echo "test.sh: pytest collected no tests" >&2; fi
exit "$rc"
