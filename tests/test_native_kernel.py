"""The fused native SLB weight kernel against a NumPy reference of the formula, and its fallbacks."""

import ctypes
import logging
import os

import numpy as np
import pytest

import mindspore
from mindspore import Tensor, nn, ops

from mindspore_slb import native
from mindspore_slb.native import soft_weight_op
from slb_reference import hard_weight, soft_weight_and_gradient

WEIGHT_SHAPE = (8, 4, 3, 3)
TEMPERATURES = (0.5, 1.0, 5.0, 1e4)
MODES = [pytest.param(mindspore.GRAPH_MODE, id="graph"), pytest.param(mindspore.PYNATIVE_MODE, id="pynative")]


def reference(logits, temperature, hard, dout):
    """SLB weight and its gradient w.r.t. the logits, in float64."""
    if hard:
        return hard_weight(logits), np.zeros(logits.shape)
    return soft_weight_and_gradient(logits, temperature, dout)


class WeightNet(nn.Cell):
    def __init__(self, op):
        super().__init__()
        self.op = op

    def construct(self, logits, temperature, hard):
        return self.op(logits, temperature, hard)


def scalar(value):
    return Tensor(np.array([value], np.float32))


def check(net, grad_net, logits, temperature, hard, dout):
    args = (Tensor(logits), scalar(temperature), scalar(1.0 if hard else 0.0))
    weight = net(*args).asnumpy()
    dlogits = grad_net(*args, Tensor(dout)).asnumpy()
    assert np.isfinite(weight).all() and np.isfinite(dlogits).all()
    ref_weight, ref_dlogits = reference(logits, temperature, hard, dout.astype(np.float64))
    if hard:  # exactly the float32 candidate values, and no gradient
        np.testing.assert_array_equal(weight, ref_weight.astype(np.float32))
        np.testing.assert_array_equal(dlogits, 0)
        return
    # Measured errors: weight <= 1e-6 absolute (values lie in [-1, 1]); gradient <= 1e-6 of its
    # scale T * |dout|. Elementwise relative errors of small gradients are larger, as in any
    # float32 evaluation of v_k - w.
    np.testing.assert_allclose(weight, ref_weight, rtol=0, atol=2e-6)
    np.testing.assert_allclose(dlogits, ref_dlogits, rtol=0, atol=2e-6 * temperature * np.abs(dout).max())


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("num_candidates", [2, 4, 16])
def test_matches_reference(mode, num_candidates):
    mindspore.set_context(mode=mode)
    op = soft_weight_op(num_candidates)
    assert op is not None
    net = WeightNet(op)
    grad_net = ops.GradOperation(sens_param=True)(net)
    rng = np.random.default_rng(num_candidates)
    shape = (num_candidates,) + WEIGHT_SHAPE
    dout = rng.standard_normal(WEIGHT_SHAPE).astype(np.float32)
    logits = rng.standard_normal(shape).astype(np.float32)
    logits[:, 0] = 0.25  # ties: the hard weight takes the first maximum
    extreme = rng.choice(np.array([-1e3, 1e3, 999.5], np.float32), shape)
    for temperature in TEMPERATURES:
        for hard in (False, True):
            check(net, grad_net, logits, temperature, hard, dout)
            check(net, grad_net, extreme, temperature, hard, dout)


def test_disabled_by_environment(monkeypatch):
    monkeypatch.setenv("MINDSPORE_SLB_NATIVE", "0")
    assert soft_weight_op(2) is None


def test_other_device_target_falls_back(monkeypatch):
    monkeypatch.setattr(mindspore, "get_context", lambda key: "GPU")
    assert soft_weight_op(2) is None


def test_without_compiler_falls_back_with_warning(monkeypatch, tmp_path, caplog):
    monkeypatch.setattr(native, "_warned", set())
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setenv("MINDSPORE_SLB_CACHE", str(tmp_path / "cache"))
    with caplog.at_level(logging.WARNING, logger=native.__name__):
        assert soft_weight_op(4) is None
    assert len(caplog.records) == 1 and "g++" in caplog.records[0].getMessage()


def test_builds_into_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("MINDSPORE_SLB_CACHE", str(tmp_path))
    op = soft_weight_op(2)
    assert op is not None
    # One finished library under a content-keyed name; no partial build left behind.
    built = os.listdir(tmp_path)
    assert len(built) == 1 and built[0].startswith("slb_soft_weight_") and built[0].endswith(".so")
    assert soft_weight_op(16) is op


@pytest.mark.parametrize("damage", [b"", b"not a shared library" * 100])
def test_damaged_cached_library_is_rebuilt(monkeypatch, tmp_path, caplog, damage):
    monkeypatch.setenv("MINDSPORE_SLB_CACHE", str(tmp_path))
    monkeypatch.setattr(native, "_libraries", {})
    library = native._library()  # pylint: disable=protected-access
    with open(library, "wb") as damaged:
        damaged.write(damage)
    monkeypatch.setattr(native, "_libraries", {})
    with caplog.at_level(logging.WARNING, logger=native.__name__):
        assert native._library() == library  # pylint: disable=protected-access
    assert "damaged; rebuilding" in caplog.text
    assert native._loadable(library)  # pylint: disable=protected-access


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("num_candidates", [2, 4, 16])
def test_float16_tensors_are_computed_in_float32(mode, num_candidates):
    """Mixed precision hands the kernel float16 tensors: its results are the float32 ones, rounded."""
    mindspore.set_context(mode=mode)
    net = WeightNet(soft_weight_op(num_candidates))
    grad_net = ops.GradOperation(sens_param=True)(net)
    rng = np.random.default_rng(num_candidates)
    logits = rng.standard_normal((num_candidates,) + WEIGHT_SHAPE).astype(np.float16)
    dout = rng.standard_normal(WEIGHT_SHAPE).astype(np.float16)
    half = lambda value: Tensor(np.array([value], np.float16))  # noqa: E731
    for hard in (0.0, 1.0):
        args = (Tensor(logits), half(2.0), half(hard))
        weight, dlogits = net(*args), grad_net(*args, Tensor(dout))
        assert weight.dtype == mindspore.float16 and dlogits.dtype == mindspore.float16
        ref_weight, ref_dlogits = reference(logits.astype(np.float64), 2.0, hard, dout.astype(np.float64))
        np.testing.assert_allclose(weight.asnumpy(), ref_weight, rtol=0, atol=1e-3)
        np.testing.assert_allclose(dlogits.asnumpy(), ref_dlogits, rtol=0, atol=2e-3 * np.abs(ref_dlogits).max() + 1e-6)


def kernel_library():
    return ctypes.CDLL(native._library())  # pylint: disable=protected-access


def test_small_layers_run_on_one_thread_large_ones_on_every_cpu():
    threads_for = kernel_library().SlbThreadsFor
    threads_for.restype = ctypes.c_int64
    threads_for.argtypes = [ctypes.c_int64, ctypes.c_int64]
    limit = native.PARALLEL_MIN_LOGITS
    cpus = len(os.sched_getaffinity(0))
    assert threads_for(2, limit // 2 - 1) == 1
    assert threads_for(16, limit // 16 - 1) == 1
    assert threads_for(2, limit // 2) == min(cpus, -(-(limit // 2) // 512))
    assert threads_for(16, 10 ** 6) == cpus


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("num_candidates, weights", [(2, 3 * native.PARALLEL_MIN_LOGITS // 4 + 7),
                                                     (16, native.PARALLEL_MIN_LOGITS // 8 + 513)])
def test_layers_split_across_threads_match_reference(mode, num_candidates, weights):
    """Sizes above the threshold, not multiples of the kernel's block: every range boundary counts."""
    mindspore.set_context(mode=mode)
    net = WeightNet(soft_weight_op(num_candidates))
    grad_net = ops.GradOperation(sens_param=True)(net)
    rng = np.random.default_rng(weights)
    logits = rng.standard_normal((num_candidates, weights)).astype(np.float32)
    dout = rng.standard_normal(weights).astype(np.float32)
    for hard in (False, True):
        check(net, grad_net, logits, 3.0, hard, dout)


class ScaledWeightNet(nn.Cell):
    def __init__(self, op):
        super().__init__()
        self.op = op

    def construct(self, logits, temperature, hard, scale):
        return self.op(logits, temperature, hard, scale)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("num_candidates, shape", [(2, WEIGHT_SHAPE), (4, WEIGHT_SHAPE), (16, WEIGHT_SHAPE),
                                                   (2, (300, 512)), (16, (40, 9, 3, 3)),
                                                   # split across threads in whole channels that are not
                                                   # whole blocks, and unevenly: 2 channels on one thread;
                                                   # one channel of many blocks stays on one thread
                                                   (16, (21, 700)), (2, (3, 30001)), (2, (1, 40000))])
def test_scaled_op_folds_the_channel_scale_into_weight_and_gradients(mode, num_candidates, shape):
    """w = s[c] * v(a); d logits = the unscaled gradient for dout * s; d s[c] = sum over c of dout * v(a)."""
    mindspore.set_context(mode=mode)
    net = ScaledWeightNet(soft_weight_op(num_candidates, scaled=True))
    grad_net = ops.GradOperation(get_all=True, sens_param=True)(net)
    rng = np.random.default_rng(num_candidates)
    logits = rng.standard_normal((num_candidates,) + shape).astype(np.float32)
    scale = rng.uniform(0.01, 2.0, shape[0]).astype(np.float32)
    dout = rng.standard_normal(shape).astype(np.float32)
    broadcast = scale.reshape((-1,) + (1,) * (len(shape) - 1)).astype(np.float64)
    for hard in (False, True):
        args = (Tensor(logits), scalar(3.0), scalar(1.0 if hard else 0.0), Tensor(scale))
        weight = net(*args).asnumpy()
        dlogits, _, _, dscale = (grad.asnumpy() for grad in grad_net(*args, Tensor(dout)))
        unscaled, expected_dlogits = reference(logits, 3.0, hard, dout * broadcast)
        np.testing.assert_allclose(weight, broadcast * unscaled, rtol=0, atol=4e-6)
        np.testing.assert_allclose(dlogits, expected_dlogits, rtol=0, atol=1e-5 * np.abs(dout).max())
        expected_dscale = (dout * unscaled).reshape(shape[0], -1).sum(axis=1)
        np.testing.assert_allclose(dscale, expected_dscale, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("num_candidates, shape", [(2, (1, 40000)), (16, (1, 5000)), (2, (3, 30001))])
def test_scale_gradient_is_the_same_on_every_call(num_candidates, shape):
    """Each channel's sum is made by one thread. When two threads shared a channel they added into
    its scale's gradient at once and, on a few calls in a hundred, lost one of the sums."""
    mindspore.set_context(mode=mindspore.PYNATIVE_MODE)
    net = ScaledWeightNet(soft_weight_op(num_candidates, scaled=True))
    grad_net = ops.GradOperation(get_all=True, sens_param=True)(net)
    rng = np.random.default_rng(7)
    args = (Tensor(rng.standard_normal((num_candidates,) + shape).astype(np.float32)), scalar(3.0), scalar(0.0),
            Tensor(rng.uniform(0.5, 2.0, shape[0]).astype(np.float32)))
    dout = Tensor(rng.standard_normal(shape).astype(np.float32))
    first = grad_net(*args, dout)[3].asnumpy()
    for _ in range(300):
        np.testing.assert_array_equal(grad_net(*args, dout)[3].asnumpy(), first)
