"""apply(): every nn.Conv2d becomes a Conv2dSlbQuant computing the same convolution."""
import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, nn

from mindspore_slb import Conv2dSlbQuant, QuantDtype, SlbFakeQuantizerPerLayer, SlbQuantAwareTraining
from tiny_nets import ConvBnNet


def quantize(network, dtype=QuantDtype.INT2, **config):
    algo = SlbQuantAwareTraining(config)
    algo.set_weight_quant_dtype(dtype)
    return algo.apply(network)


def test_every_conv_at_any_depth_is_replaced():
    net = quantize(ConvBnNet())
    assert isinstance(net.stem, Conv2dSlbQuant)
    assert isinstance(net.body[0], Conv2dSlbQuant)
    assert isinstance(net.heads[0], Conv2dSlbQuant)
    assert not any(isinstance(cell, nn.Conv2d) for _, cell in net.cells_and_names())
    assert isinstance(net.stem.weight_quantizer(), SlbFakeQuantizerPerLayer)


def test_conv_in_cell_dict_is_replaced():
    class DictNet(nn.Cell):
        def __init__(self):
            super().__init__()
            self.branches = nn.CellDict({"a": nn.Conv2d(3, 4, 1)})

        def construct(self, x):
            return self.branches["a"](x)

    assert isinstance(quantize(DictNet()).branches["a"], Conv2dSlbQuant)


def test_printed_network_shows_bits():
    text = str(quantize(ConvBnNet()))
    assert "Conv2dSlbQuant" in text and "weight_bit_num=2" in text
    assert "SlbFakeQuantizerPerLayer" in text and "bit_num=2" in text


def test_other_parameter_names_unchanged_and_no_float_conv_weight():
    float_net = ConvBnNet()
    float_names = {p.name for p in float_net.get_parameters()}
    quant_net = quantize(ConvBnNet())
    quant_names = {p.name for p in quant_net.get_parameters()}
    conv_weights = {"stem.weight", "body.0.weight", "heads.0.weight"}
    assert float_names - conv_weights <= quant_names
    assert not conv_weights & quant_names
    assert "body.0.bias" in quant_names
    assert {"stem.weight_logits", "stem.fake_quant_weight.temperature", "heads.0.weight_logits"} <= quant_names


def test_float_checkpoint_loads_bn_and_dense_by_name(tmp_path):
    float_net = ConvBnNet()
    float_net.fc.bias.set_data(Tensor(np.arange(4, dtype=np.float32)))
    float_net.stem_bn.moving_mean.set_data(Tensor(np.full(8, 0.5, np.float32)))
    path = str(tmp_path / "float.ckpt")
    ms.save_checkpoint(float_net, path)
    quant_net = quantize(ConvBnNet())
    not_loaded, _ = ms.load_param_into_net(quant_net, ms.load_checkpoint(path))
    assert not any(name.endswith("gamma") or name.startswith("fc.") for name in not_loaded)
    np.testing.assert_array_equal(quant_net.fc.bias.asnumpy(), np.arange(4))
    np.testing.assert_array_equal(quant_net.stem_bn.moving_mean.asnumpy(), 0.5)


def test_logits_are_candidate_major_and_prefer_the_float_weights_nearest_candidate():
    conv = nn.Conv2d(4, 6, 3)
    weight = conv.weight.asnumpy()
    quant = Conv2dSlbQuant(conv, 2)
    logits = quant.weight_logits.asnumpy()
    assert logits.shape == (4,) + weight.shape
    # Without a weight scale the layer's weights are divided by the one scale fitted to all of them.
    values = np.linspace(-1, 1, 4)
    flat = weight.ravel()
    scale = np.abs(flat).max()
    for _ in range(5):
        chosen = values[np.abs(flat[:, None] / scale - values).argmin(1)]
        scale = (flat * chosen).sum() / (chosen * chosen).sum()
    nearest = np.abs(weight[None] / scale - values.reshape(4, 1, 1, 1, 1)).argmin(0)
    np.testing.assert_array_equal(logits.argmax(0), nearest)


@pytest.mark.parametrize("kwargs", [
    dict(in_channels=3, out_channels=4, kernel_size=3),
    dict(in_channels=3, out_channels=4, kernel_size=3, pad_mode="valid", stride=2),
    dict(in_channels=3, out_channels=4, kernel_size=(3, 2), pad_mode="pad", padding=(1, 2, 0, 1), has_bias=True),
    dict(in_channels=4, out_channels=4, kernel_size=3, pad_mode="pad", padding=2, dilation=2),
    dict(in_channels=4, out_channels=8, kernel_size=3, group=2, has_bias=True),
    dict(in_channels=4, out_channels=4, kernel_size=3, group=4),
], ids=["same", "valid-stride", "pad-bias", "dilation", "group", "depthwise"])
def test_quantized_conv_computes_the_same_convolution(mode, kwargs, rng):
    conv = nn.Conv2d(**kwargs)
    if kwargs.get("has_bias"):
        conv.bias.set_data(Tensor(rng.normal(size=kwargs["out_channels"]).astype(np.float32)))
    quant = Conv2dSlbQuant(conv, 2)
    quant.set_train(False)
    x = Tensor(rng.normal(size=(2, kwargs["in_channels"], 9, 9)).astype(np.float32))
    hard_weight = quant.weight_quantizer().hard_weight(quant.weight_logits)
    reference = nn.Conv2d(**kwargs, weight_init=hard_weight,
                          bias_init=conv.bias.value() if kwargs.get("has_bias") else None)
    np.testing.assert_allclose(quant(x).asnumpy(), reference(x).asnumpy(), atol=1e-5)


def test_network_without_conv_is_refused():
    with pytest.raises(ValueError, match=r"no layer for SLB to quantize: it has no layer of the enabled types \(Conv2d\)"):
        SlbQuantAwareTraining().apply(nn.SequentialCell([nn.Dense(3, 4)]))


def test_applying_twice_is_refused():
    algo = SlbQuantAwareTraining()
    net = algo.apply(ConvBnNet())
    with pytest.raises(ValueError, match="already"):
        algo.apply(net)


def test_non_cell_is_refused():
    with pytest.raises(TypeError, match="'network'"):
        SlbQuantAwareTraining().apply("resnet")
