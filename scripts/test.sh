#!/usr/bin/env bash
# The test suite, from nothing: venv + deps, Debian's docker-registry, then pytest.
# Extra arguments go to pytest (e.g. ./scripts/test.sh tests/unit -k refs).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ensure_python_env
ensure_registry
cd "$ROOT"
set +e
"$VENV/bin/python" -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then echo "test.sh: pytest collected no tests" >&2; fi
exit "$rc"
