"""The SLB quantizer against a NumPy reference of the formula, on the fused and plain paths."""
import mindspore as ms
import numpy as np
import pytest
from mindspore import Parameter, Tensor, nn, ops

from mindspore_slb import SlbFakeQuantizerPerLayer
from mindspore_slb.quantizer import MAX_TEMPERATURE
from slb_reference import hard_weight as reference_hard
from slb_reference import soft_weight_and_gradient as reference_soft

SHAPE = (6, 3, 3, 3)


class WeightAndGradient(nn.Cell):
    def __init__(self, quantizer, logits):
        super().__init__()
        self.quantizer = quantizer
        self.logits = Parameter(Tensor(logits), name="logits")
        self.grad = ops.GradOperation(get_by_list=True, sens_param=True)
        self.weights = ms.ParameterTuple([self.logits])
        self.set_train(True)

    def construct(self, upstream):
        forward = lambda: self.quantizer(self.logits)  # noqa: E731
        return self.quantizer(self.logits), self.grad(forward, self.weights)(upstream)[0]


@pytest.fixture(params=["fused", "plain"])
def path(request, monkeypatch):
    if request.param == "plain":
        monkeypatch.setenv("MINDSPORE_SLB_NATIVE", "0")
    return request.param


def run(quantizer, logits, upstream):
    weight, gradient = WeightAndGradient(quantizer, logits)(Tensor(upstream))
    return weight.asnumpy(), gradient.asnumpy()


@pytest.mark.parametrize("bits", [1, 2, 4])
@pytest.mark.parametrize("temperature", [0.5, 1.0, 7.0])
def test_soft_weight_and_gradient_match_reference(mode, path, bits, temperature, rng):
    logits = rng.normal(size=(2 ** bits,) + SHAPE).astype(np.float32)
    upstream = rng.normal(size=SHAPE).astype(np.float32)
    quantizer = SlbFakeQuantizerPerLayer(bits)
    assert quantizer.weight_is_fused == (path == "fused")
    quantizer.set_temperature(temperature)
    weight, gradient = run(quantizer, logits, upstream)
    expected_weight, expected_gradient = reference_soft(logits, temperature, upstream)
    np.testing.assert_allclose(weight, expected_weight, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gradient, expected_gradient, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("bits", [1, 2, 4])
def test_hard_weight_after_end_flag_passes_no_gradient(mode, path, bits, rng):
    logits = rng.normal(size=(2 ** bits,) + SHAPE).astype(np.float32)
    quantizer = SlbFakeQuantizerPerLayer(bits)
    quantizer.set_temperature_end_flag()
    assert quantizer.temperature_end_flag
    weight, gradient = run(quantizer, logits, np.ones(SHAPE, np.float32))
    np.testing.assert_array_equal(weight, reference_hard(logits))
    np.testing.assert_array_equal(gradient, 0)


@pytest.mark.parametrize("bits", [1, 2, 4])
def test_evaluation_uses_hard_weight_with_first_maximum_on_ties(mode, bits, rng):
    logits = rng.normal(size=(2 ** bits,) + SHAPE).astype(np.float32)
    logits[:, 0] = 0.25  # all candidates tie: the first, -1, is chosen
    quantizer = SlbFakeQuantizerPerLayer(bits)
    quantizer.set_train(False)
    weight = quantizer(Tensor(logits)).asnumpy()
    np.testing.assert_array_equal(weight, reference_hard(logits))
    assert np.all(weight[0] == -1)
    assert set(np.unique(weight)) <= set(np.linspace(-1, 1, 2 ** bits).astype(np.float32))


def extreme_logits(bits, rng):
    logits = (rng.uniform(-1, 1, size=(2 ** bits,) + SHAPE) * 1e3).astype(np.float32)
    logits[:, :, 0] = 1e3  # exact ties at the largest magnitude
    return logits


@pytest.mark.parametrize("temperature", [1e4, MAX_TEMPERATURE])
@pytest.mark.parametrize("bits", [1, 2, 4])
def test_extreme_temperature_and_logits_stay_finite(mode, path, bits, temperature, rng):
    quantizer = SlbFakeQuantizerPerLayer(bits)
    quantizer.set_temperature(temperature)
    weight, gradient = run(quantizer, extreme_logits(bits, rng), np.ones(SHAPE, np.float32))
    assert np.isfinite(weight).all() and np.isfinite(gradient).all()
    assert np.abs(weight).max() <= 1.0


@pytest.mark.parametrize("bits", [1, 2, 4])
def test_fused_and_plain_paths_agree_at_the_largest_temperature(mode, bits, rng, monkeypatch):
    logits = extreme_logits(bits, rng)
    logits[1, :, 1] = logits[0, :, 1] + 1e-3  # nearly tied: the softmax is one-hot only at huge T
    upstream = rng.standard_normal(SHAPE).astype(np.float32)
    results = []
    for native_setting in ("1", "0"):
        monkeypatch.setenv("MINDSPORE_SLB_NATIVE", native_setting)
        quantizer = SlbFakeQuantizerPerLayer(bits)
        assert quantizer.weight_is_fused == (native_setting == "1")
        quantizer.set_temperature(MAX_TEMPERATURE)
        results.append(run(quantizer, logits, upstream))
    (fused_weight, fused_gradient), (plain_weight, plain_gradient) = results
    np.testing.assert_array_equal(fused_weight, plain_weight)
    assert np.isfinite(fused_gradient).all() and np.isfinite(plain_gradient).all()


def test_temperature_is_readable_and_validated():
    quantizer = SlbFakeQuantizerPerLayer(1)
    assert float(quantizer.temperature) == 1.0
    quantizer.set_temperature(2.5)
    assert float(quantizer.temperature) == 2.5
    with pytest.raises(ValueError, match="'temperature'.*-1.0"):
        quantizer.set_temperature(-1.0)
    with pytest.raises(ValueError, match="'temperature'"):
        quantizer.set_temperature(float("inf"))
    quantizer.set_temperature(MAX_TEMPERATURE)
    # float32 would hold 3e38 but not what the kernel multiplies it by; 1e39 would become inf.
    for too_hot in (3e38, 1e39, float("nan")):
        with pytest.raises(ValueError, match=r"'temperature' must be a float in \(0, 1e\+30\]"):
            quantizer.set_temperature(too_hot)
    with pytest.raises(TypeError, match="'temperature'"):
        quantizer.set_temperature("hot")
    with pytest.raises(TypeError, match="'temperature'.*of type Tensor"):
        quantizer.set_temperature(ms.Tensor([2.0]))
    quantizer.set_temperature(np.float32(4.0))  # a schedule computed in NumPy
    assert float(quantizer.temperature) == 4.0


def test_bits_are_validated():
    with pytest.raises(ValueError, match="'num_bits'.*3"):
        SlbFakeQuantizerPerLayer(3)
