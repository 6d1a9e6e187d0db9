import mindspore as ms
import numpy as np
import pytest


@pytest.fixture(params=[ms.GRAPH_MODE, ms.PYNATIVE_MODE], ids=["graph", "pynative"])
def mode(request):
    """Runs a test once in each execution mode, where behaviour could differ."""
    ms.set_context(mode=request.param)
    yield request.param
    ms.set_context(mode=ms.GRAPH_MODE)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
