"""pytest setup for tests/text: puts this directory on sys.path (for jinja_reference and
conversations) and provides the C++ driver, failing (never skipping) when it or the pinned
jinja2 is missing."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pytest  # noqa: E402

JINJA2_VERSION = "3.1.6"


@pytest.fixture(scope="session")
def driver():
    path = os.environ.get("PARA_TEMPLATE_DRIVER", "")
    if not path or not os.access(path, os.X_OK):
        pytest.fail("PARA_TEMPLATE_DRIVER must name the built template_driver executable "
                    f"(got {path!r}); run these tests through ctest (chat_template_conformance)")
    return path


@pytest.fixture(scope="session", autouse=True)
def pinned_jinja2():
    try:
        import jinja2
    except ImportError:
        pytest.fail(f"jinja2 is not installed: pip install jinja2=={JINJA2_VERSION} "
                    "(tests/requirements.txt)")
    if jinja2.__version__ != JINJA2_VERSION:
        pytest.fail(f"jinja2 {jinja2.__version__} is installed; the reference is jinja2=="
                    f"{JINJA2_VERSION} (tests/requirements.txt)")
