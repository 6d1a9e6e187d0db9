"""The per-output-channel weight scale: initialised from the float weights, learned, exact in
both weight paths, off on request (Golden Stick's bare candidates)."""
import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, nn, ops

from mindspore_slb import Conv2dSlbQuant, QuantDtype, SlbQuantAwareTraining
from mindspore_slb.quantizer import SlbFakeQuantizerPerLayer
from tiny_nets import ConvBnNet


def small_conv(rng):
    conv = nn.Conv2d(8, 6, 3, has_bias=True)
    weight = rng.normal(0, 0.05, (6, 8, 3, 3)) * rng.uniform(0.2, 3, (6, 1, 1, 1))
    conv.weight.set_data(Tensor(weight.astype(np.float32)))
    return conv


@pytest.mark.parametrize("bits", [1, 2, 4])
def test_hard_layer_keeps_the_float_layers_magnitude(bits, rng):
    conv = small_conv(rng)
    x = Tensor(rng.normal(size=(4, 8, 8, 8)).astype(np.float32))
    float_out = conv(x).asnumpy()
    errors = {}
    for scale in (True, False):
        quant = Conv2dSlbQuant(conv, bits, weight_scale=scale)
        quant.set_train(False)
        errors[scale] = np.linalg.norm(quant(x).asnumpy() - float_out) / np.linalg.norm(float_out)
    assert errors[True] < {1: 0.7, 2: 0.4, 4: 0.12}[bits]
    assert errors[False] > 1.5  # bare candidates: off by the weights' magnitude


def test_one_bit_scale_is_the_mean_magnitude_per_channel(rng):
    conv = small_conv(rng)
    quant = Conv2dSlbQuant(conv, 1, weight_scale=True)
    expected = np.abs(conv.weight.asnumpy()).reshape(6, -1).mean(axis=1)
    np.testing.assert_allclose(quant.weight_scale.asnumpy(), expected, rtol=1e-5)
    assert quant.weight_scale.requires_grad


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "plain-ops"])
def test_scale_multiplies_the_quantizer_output_in_training(mode, fused, rng):
    quant = Conv2dSlbQuant(small_conv(rng), 2, weight_scale=True)
    if not fused:
        quant.fake_quant_weight._fused = None  # pylint: disable=protected-access
    elif not quant.weight_quantizer().weight_is_fused:
        pytest.skip("no fused kernel on this machine")
    quant.set_train(True)
    soft = quant.weight_quantizer()(quant.weight_logits).asnumpy()
    weight = quant.quantized_weight().asnumpy()
    np.testing.assert_allclose(weight, soft * quant.weight_scale.asnumpy()[:, None, None, None], rtol=1e-6)


class GradOfScale(nn.Cell):
    def __init__(self, layer):
        super().__init__()
        self.layer = layer
        self.grad = ops.GradOperation(get_by_list=True)
        self.params = ms.ParameterTuple([layer.weight_scale, layer.weight_logits])

    def construct(self, x):
        return self.grad(lambda inputs: self.layer(inputs).sum(), self.params)(x)


def test_scale_and_logits_both_get_gradients(mode, rng):
    quant = Conv2dSlbQuant(small_conv(rng), 1, weight_scale=True)
    quant.set_train(True)
    x = Tensor(rng.normal(size=(2, 8, 6, 6)).astype(np.float32))
    scale_grad, logits_grad = GradOfScale(quant)(x)
    assert np.abs(scale_grad.asnumpy()).min() > 0
    assert np.abs(logits_grad.asnumpy()).max() > 0


@pytest.mark.parametrize("bits", [1, 4])
def test_fused_and_plain_paths_give_the_same_scale_and_logit_gradients(mode, bits, rng, monkeypatch):
    """The fused kernel applies the scale itself (one op in place of a multiply and two gradients)."""
    conv = small_conv(rng)
    x = Tensor(rng.normal(size=(2, 8, 6, 6)).astype(np.float32))
    scale = Tensor(rng.uniform(0.5, 2.0, 6).astype(np.float32))
    gradients = []
    for native_setting in ("1", "0"):
        monkeypatch.setenv("MINDSPORE_SLB_NATIVE", native_setting)
        quant = Conv2dSlbQuant(conv, bits, weight_scale=True)
        assert quant.weight_quantizer().weight_is_fused == (native_setting == "1")
        quant.weight_scale.set_data(scale)
        quant.set_train(True)
        gradients.append([grad.asnumpy() for grad in GradOfScale(quant)(x)])
    (fused_scale, fused_logits), (plain_scale, plain_logits) = gradients
    np.testing.assert_allclose(fused_scale, plain_scale, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(fused_logits, plain_logits, rtol=1e-4, atol=1e-5)


def test_scale_off_gives_bare_candidates():
    algo = SlbQuantAwareTraining({"quant_dtype": QuantDtype.INT2})
    algo.set_enable_weight_scale(False)
    net = algo.apply(ConvBnNet())
    assert net.stem.weight_scale is None
    assert not any("weight_scale" in p.name for p in net.get_parameters())
    assert "weight_scale=False" in str(net)
    default = SlbQuantAwareTraining().apply(ConvBnNet())
    assert default.stem.weight_scale.shape == (8,) and default.stem.weight_scale.name == "stem.weight_scale"
    assert isinstance(default.stem.weight_quantizer(), SlbFakeQuantizerPerLayer)


def test_all_zero_channel_gets_zero_scale():
    conv = nn.Conv2d(2, 3, 1)
    weight = conv.weight.asnumpy().copy()
    weight[1] = 0
    conv.weight.set_data(Tensor(weight))
    quant = Conv2dSlbQuant(conv, 2, weight_scale=True)
    assert quant.weight_scale.asnumpy()[1] == 0 and np.isfinite(quant.weight_logits.asnumpy()).all()
    np.testing.assert_array_equal(quant.hard_weight()[1], 0)
