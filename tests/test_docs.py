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
