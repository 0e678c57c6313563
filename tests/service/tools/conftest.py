"""The gdc stack the annotation-tool tests share: API keys on, Label Studio's address set, quick engine defaults.

Label Studio and CVAT send no engine options, so their jobs run on the server's defaults;
capping steps and samples here makes those defaults quick on a test machine.
"""
import pytest

from tests.conftest import LiveStack, free_port
from tests.service.tools.labelstudio_server import LABEL_STUDIO, LABEL_STUDIO_TOKEN, label_studio_startup

GDC_KEY = "gdc-key-for-the-tools"
LABEL_STUDIO_TESTS = "test_labelstudio_app.py"


def pytest_collection_finish(session):
    """Start the real Label Studio now if its tests will run: its first start takes minutes of one core."""
    if any(item.path.name == LABEL_STUDIO_TESTS for item in session.items):
        label_studio_startup(session.config)


def pytest_sessionfinish(session):
    if LABEL_STUDIO in session.config.stash:
        session.config.stash[LABEL_STUDIO].stop()


@pytest.fixture(scope="session")
def label_studio_url(pytestconfig) -> str:
    """Where test_labelstudio_app.py's Label Studio listens (chosen first, so gdc can be told)."""
    if LABEL_STUDIO in pytestconfig.stash:
        return pytestconfig.stash[LABEL_STUDIO].url
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture(scope="session")
def tools_gdc(live_stacks, label_studio_url) -> LiveStack:
    return live_stacks(
        workers=1,
        api_keys=GDC_KEY,
        label_studio_url=label_studio_url,
        label_studio_api_key=LABEL_STUDIO_TOKEN,
        max_steps=20,
        max_samples=5,
    )
