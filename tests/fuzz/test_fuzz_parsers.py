"""Property-based fuzzing of every parser of untrusted input (targets in tests/support/fuzzing.py): only
airgap's Error ever escapes (or a documented result such as an Outcome with ok=False), and no input takes a
second. A few hundred inputs per parser here, deterministically (derandomized), so the whole module stays
under a minute; scripts/fuzz_parsers.py runs 10,000 per parser and prints the table.

Set AIRGAP_FUZZ_EXAMPLES to run more (or fewer) inputs per parser."""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from support.fuzzing import Target, targets

from airgap.errors import Error

EXAMPLES = int(os.environ.get("AIRGAP_FUZZ_EXAMPLES", "150"))
TARGETS = targets()

pytestmark = pytest.mark.fuzz


@pytest.mark.parametrize("target", TARGETS, ids=[t.name for t in TARGETS])
def test_seed_is_accepted(target: Target) -> None:
    """The fuzzing starts from documents the parser accepts, so mutations reach past the first check."""
    if target.seed is None:
        pytest.skip("no seed on this machine (openssl missing for the test TSA)")
    assert target.run(target.seed) is not False


@pytest.mark.parametrize("target", TARGETS, ids=[t.name for t in TARGETS])
def test_only_airgap_errors_escape(target: Target) -> None:
    if target.seed is not None:
        target.run(target.seed)  # warm up: lazy imports (sigstore, celpy) are not the inputs' cost

    @settings(max_examples=EXAMPLES, deadline=1000, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example,
                                     HealthCheck.filter_too_much])
    @given(target.strategy)
    def run(data: Any) -> None:
        try:
            target.run(data)
        except Error:
            pass

    run()
