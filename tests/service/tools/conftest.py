"""The gdc stack the annotation-tool tests share: API keys on, Label Studio's address set, quick engine defaults.

Label Studio and CVAT send no engine options, so their jobs run on the server's defaults;
capping steps and samples here makes those defaults quick on a test machine.
"""
import pytest

from tests.conftest import LiveStack, free_port
from tests.service.tools import labelstudio_server
from tests.service.tools.labelstudio_server import LABEL_STUDIO_TOKEN

GDC_KEY = "gdc-key-for-the-tools"


@pytest.fixture(scope="session")
def label_studio_url() -> str:
    """Where test_labelstudio_app.py's Label Studio listens (chosen before it starts, so gdc can be told)."""
    return labelstudio_server.label_studio_url() or f"http://127.0.0.1:{free_port()}"


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
