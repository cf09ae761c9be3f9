"""Under ``CI=true`` every skip is a failure (the hooks in tests/conftest.py)."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

# The inner runs load the same hooks as this suite.
HOOKS = "from tests.conftest import pytest_make_collect_report, pytest_runtest_makereport  # noqa: F401\n"

SKIPS = """
import pytest

def test_skip_in_the_test():
    pytest.skip("no reason at all")

@pytest.mark.skipif(True, reason="a marker that skips")
def test_skipif():
    pass

@pytest.fixture
def skipping_fixture():
    pytest.skip("a fixture that skips")

def test_skip_in_setup(skipping_fixture):
    pass

@pytest.mark.xfail(reason="known bug", strict=True)
def test_xfail_is_not_a_skip():
    assert False

def test_passes():
    pass
"""

MODULE_SKIP = """
import pytest

pytest.importorskip("flask_logout_no_such_module", reason="the module is missing")

def test_never_collected():
    pass
"""


def test_without_ci_skips_stay_skips(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    pytester.makeconftest(HOOKS)
    pytester.makepyfile(test_skips=SKIPS, test_module_skip=MODULE_SKIP)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, skipped=4, xfailed=1)


def test_under_ci_every_skip_in_a_test_fails_with_its_reason(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    pytester.makeconftest(HOOKS)
    pytester.makepyfile(test_skips=SKIPS)
    result = pytester.runpytest("-p", "no:cacheprovider")
    # skipif and a skipping fixture act at setup: errors at setup, failures all the same.
    result.assert_outcomes(passed=1, failed=1, errors=2, xfailed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*CI=true forbids skipping test_skips.py::test_skip_in_the_test: Skipped: no reason at all*",
            "*CI=true forbids skipping test_skips.py::test_skipif: Skipped: a marker that skips*",
            "*CI=true forbids skipping test_skips.py::test_skip_in_setup: Skipped: a fixture that skips*",
        ],
        consecutive=False,
    )


def test_under_ci_a_module_level_importorskip_fails_collection(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    pytester.makeconftest(HOOKS)
    pytester.makepyfile(test_module_skip=MODULE_SKIP)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*CI=true forbids skipping test_module_skip.py: *the module is missing*"])
