"""The docs stay true to the tests they cite: named tests exist, promised xfails are there."""
import re

import pytest

from tests.conftest import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "benchmarks").glob("*.md"))]
TESTS = sorted((REPO / "tests").rglob("test_*.py"))


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: str(path.relative_to(REPO)))
def test_every_test_a_doc_names_exists(doc):
    defined = {name for path in TESTS for name in re.findall(r"^def (test_\w+)", path.read_text(), re.MULTILINE)}
    assert set(re.findall(r"`(test_\w+)`", doc.read_text())) <= defined


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: str(path.relative_to(REPO)))
def test_a_doc_speaks_of_xfails_only_when_tests_have_them(doc):
    marked = any(re.search(r"^\s*@pytest\.mark\.xfail", path.read_text(), re.MULTILINE) for path in TESTS)
    assert marked or "xfail" not in doc.read_text()


def test_the_readmes_stated_defaults_are_the_models():
    from gdc.options import SegmentOptions

    readme = (REPO / "README.md").read_text()
    # "`refine_stop_loss` (0.15)": an option named in backticks and its default in brackets.
    stated = re.findall(r"`(\w+)`\s*\((\d[\d.]*)\)", readme)
    fields = SegmentOptions.model_fields
    checked = [(name, value) for name, value in stated if name in fields]
    assert len(checked) >= 4
    for name, value in checked:
        assert float(value) == fields[name].default, f"README says {name} ({value}); the model: {fields[name].default}"


def test_the_readmes_api_table_names_every_option_a_request_may_set():
    from gdc.options import request_options

    readme = (REPO / "README.md").read_text()
    named = re.search(r"engine options (.*?) \(an unknown", readme).group(1)
    assert [name for name in re.findall(r"`(\w+)`", named) if name not in ("true", "false")] == list(request_options())
