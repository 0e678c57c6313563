"""The engine tests' device (``TORCH_DEVICE``, default cpu); their scenes are in tests/conftest.py."""
import os

import pytest

DEVICE = os.environ.get("TORCH_DEVICE", "cpu")


@pytest.fixture
def device():
    return DEVICE
