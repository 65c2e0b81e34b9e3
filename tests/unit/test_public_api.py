"""The public API is the package root's: these names import from ``airgap`` whatever the layout below."""

from __future__ import annotations

import subprocess
import sys

import airgap


def test_public_names_resolve_to_their_classes() -> None:
    from airgap import Trust, VerificationResult, Verifier, verify_image

    assert set(airgap.__all__) == {"Trust", "VerificationResult", "Verifier", "__version__", "verify_image"}
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
