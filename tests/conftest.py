import os

import mindspore as ms
import numpy as np
import pytest


def pytest_configure(config):  # pylint: disable=unused-argument
    """scripts/gpu_check.sh runs the device-independent tests on a GPU through this variable."""
    device = os.environ.get("MINDSPORE_SLB_TEST_DEVICE")
    if device:
        ms.set_device(device)


@pytest.fixture(params=[ms.GRAPH_MODE, ms.PYNATIVE_MODE], ids=["graph", "pynative"])
def mode(request):
    """Runs a test once in each execution mode, where behaviour could differ."""
    ms.set_context(mode=request.param)
    yield request.param
    ms.set_context(mode=ms.GRAPH_MODE)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
