"""The public API is the package root's: these names import from ``airgap`` whatever the layout below."""

from __future__ import annotations

import subprocess
import sys

import airgap


def test_public_names_resolve_to_their_classes() -> None:
    from airgap import Trust, VerificationResult, Verifier, verify_image

    assert {"Trust", "VerificationResult", "Verifier", "__version__", "verify_image", "verify_image_async",
            "Error", "ConfigError", "IntegrityError"} <= set(airgap.__all__)
    for name in airgap.__all__:
        assert getattr(airgap, name) is not None, name
    assert Trust.__name__ == "Trust" and callable(Trust.load)
    assert VerificationResult.__name__ == "VerificationResult"
    assert Verifier.__name__ == "Verifier" and callable(Verifier.verify)
    assert callable(verify_image)


def test_unknown_name_is_an_attribute_error() -> None:
    try:
        airgap.no_such_name  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_importing_the_package_loads_no_submodule() -> None:
    code = "import sys, airgap\nprint(sorted(m for m in sys.modules if m.startswith('airgap.')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_errors_share_one_base_and_the_async_entry_point_shares_the_verifier() -> None:
    import asyncio
    import inspect

    from airgap import ConfigError, Error, Verifier, verify_image_async

    assert issubclass(ConfigError, Error)
    assert inspect.iscoroutinefunction(verify_image_async) and inspect.iscoroutinefunction(Verifier.averify)
    from airgap import Trust

    trust = Trust()
    from airgap.verification.adhoc import policy_for_keys

    verifier = Verifier(trust, policy_for_keys(trust, require_tlog=False))
    result = asyncio.run(verifier.averify("not a ref!"))  # same code path: a denial with the reason
    assert not result and "invalid image reference" in result.reasons[0]


def test_package_is_typed() -> None:
    from pathlib import Path

    assert (Path(airgap.__file__).parent / "py.typed").is_file()
