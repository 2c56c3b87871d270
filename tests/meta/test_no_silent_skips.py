"""The test suite's own rules (tests/conftest.py, tests/pytest.ini): under CI (PARA_CI_NO_SKIPS=1) a
test, fixture or module that skips itself fails the run unless it is on the allow-list; outside CI
the same skips pass and their reasons are printed."""
import pathlib

import pytest

TESTS = pathlib.Path(__file__).resolve().parents[1]

SKIPPING = '''
import pytest

@pytest.fixture
def needs_thing():
    pytest.skip("fixture-level reason")

def test_skips_itself():
    pytest.skip("test-level reason")

def test_skips_in_fixture(needs_thing):
    pass

def test_runs():
    assert True
'''


@pytest.fixture
def suite(pytester):
    """A copy of the real conftest.py and pytest.ini around a module that skips in every way."""
    pytester.makeconftest((TESTS / "conftest.py").read_text())
    pytester.makeini((TESTS / "pytest.ini").read_text())
    pytester.mkdir("reference")
    (pytester.path / "reference" / "test_skipping.py").write_text(SKIPPING)
    return pytester


def test_outside_ci_skips_pass_and_print_their_reasons(suite, monkeypatch):
    monkeypatch.delenv("PARA_CI_NO_SKIPS", raising=False)
    result = suite.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines(["*SKIPPED*test-level reason*", "*SKIPPED*fixture-level reason*"])


def test_in_ci_every_skip_fails(suite, monkeypatch):
    monkeypatch.setenv("PARA_CI_NO_SKIPS", "1")
    result = suite.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret != 0
    result.assert_outcomes(passed=1, failed=1, errors=1)
    result.stdout.fnmatch_lines(["*which CI does not allow*test-level reason*"])


def test_in_ci_a_module_level_skip_fails(pytester, monkeypatch):
    pytester.makeconftest((TESTS / "conftest.py").read_text())
    pytester.makeini((TESTS / "pytest.ini").read_text())
    pytester.makepyfile(test_module_skip='import pytest\npytest.skip("module reason", allow_module_level=True)\n')
    monkeypatch.setenv("PARA_CI_NO_SKIPS", "1")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*which CI does not allow*module reason*"])


def test_in_ci_an_allowed_skip_passes(pytester, monkeypatch):
    pytester.makeconftest((TESTS / "conftest.py").read_text())
    pytester.makeini((TESTS / "pytest.ini").read_text())
    pytester.mkdir("reference")
    (pytester.path / "reference" / "test_lora_peft.py").write_text(
        'import pytest\n\ndef test_x():\n    pytest.skip("torch/transformers/peft not installed; set ...")\n')
    monkeypatch.setenv("PARA_CI_NO_SKIPS", "1")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == 0
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*SKIPPED*torch/transformers/peft not installed*"])
