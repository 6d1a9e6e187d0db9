"""Per-layer control: exclusions, per-layer bits, and the summary apply reports."""
import logging

import numpy as np
import pytest
from mindspore import Tensor, nn

from mindspore_slb import Conv2dSlbQuant, LayerSummary, QuantDtype, SlbQuantAwareTraining
from tiny_nets import ConvBnNet, batches, train_model


def test_exclude_by_pattern_and_predicate():
    algo = SlbQuantAwareTraining({"exclude_layers": ["stem", lambda path, cell: cell.group > 1]})
    net = algo.apply(ConvBnNet())
    assert type(net.stem) is nn.Conv2d
    assert type(net.heads[0]) is nn.Conv2d  # depthwise, excluded by the predicate
    assert isinstance(net.body[0], Conv2dSlbQuant)


def test_per_layer_bits_first_matching_pattern_wins():
    algo = SlbQuantAwareTraining({"quant_dtype": QuantDtype.INT1})
    algo.set_layer_bits({"stem": QuantDtype.INT4, "b*": QuantDtype.INT2, "body.*": QuantDtype.INT4})
    net = algo.apply(ConvBnNet())
    assert net.stem.weight_quantizer().num_bits == 4 and net.stem.weight_logits.shape[0] == 16
    assert net.body[0].weight_quantizer().num_bits == 2
    assert net.heads[0].weight_quantizer().num_bits == 1


def test_summary_rows_and_log(caplog):
    algo = SlbQuantAwareTraining({"quant_dtype": QuantDtype.INT2, "exclude_layers": ["heads.*"]})
    with caplog.at_level(logging.INFO, logger="mindspore_slb"):
        algo.apply(ConvBnNet())
    rows = algo.layer_summary()
    assert rows == [
        LayerSummary("stem", "Conv2d", (8, 3, 3, 3), 2, 4 * 216 + 8),
        LayerSummary("body.0", "Conv2d", (8, 8, 3, 3), 2, 4 * 576 + 8 + 8),
        LayerSummary("heads.0", "Conv2d", (8, 1, 3, 3), "float", 72, "excluded (exclude_layers)"),
        LayerSummary("fc", "Dense", (4, 8), "float", 36, "Dense quantization is off (enable_dense_quant)"),
    ]
    assert "SLB quantized 2 of 4 layers" in caplog.text
    assert "heads.0" in caplog.text and "float" in caplog.text and "excluded (exclude_layers)" in caplog.text


def test_unused_pattern_is_warned(caplog):
    with caplog.at_level(logging.WARNING, logger="mindspore_slb"):
        SlbQuantAwareTraining({"exclude_layers": ["steem"]}).apply(ConvBnNet())
    assert "'steem' matches no quantizable layer" in caplog.text


def test_everything_excluded_is_refused():
    with pytest.raises(ValueError,
                       match=r"its 3 layer\(s\) of the enabled types \(Conv2d\) are all excluded or frozen"):
        SlbQuantAwareTraining({"exclude_layers": ["*"]}).apply(ConvBnNet())


@pytest.mark.parametrize("key,value,error,message", [
    ("exclude_layers", "stem", TypeError, r"'exclude_layers' must be a list.*'stem'"),
    ("exclude_layers", ["stem", 3], TypeError, r"'exclude_layers' items.*3 of type int"),
    ("layer_bits", ["stem"], TypeError, r"'layer_bits' must be a dict"),
    ("layer_bits", {"stem": 4}, TypeError, r"'layer_bits\['stem'\]' must be a QuantDtype, but got 4"),
    ("layer_bits", {"stem": QuantDtype.INT8}, ValueError, r"'layer_bits\['stem'\]' must be one of .*INT8"),
    ("layer_bits", {1: QuantDtype.INT2}, TypeError, r"'layer_bits' keys must be layer name patterns"),
    ("enable_dense_quant", 1, TypeError, r"'enable_dense_quant' must be a bool, but got 1"),
    ("enable_weight_scale", "yes", TypeError, r"'enable_weight_scale' must be a bool"),
])
def test_settings_are_validated_in_config_and_setters(key, value, error, message):
    with pytest.raises(error, match=message):
        SlbQuantAwareTraining({key: value})
    with pytest.raises(error, match=message):
        getattr(SlbQuantAwareTraining(), f"set_{key}")(value)


def test_mixed_bits_and_float_layers_train_and_convert(mode):
    algo = SlbQuantAwareTraining({"epoch_size": 10, "has_trained_epoch": 0, "exclude_layers": ["stem"],
                                  "layer_bits": {"heads.*": QuantDtype.INT4}, "enable_dense_quant": True})
    net = algo.apply(ConvBnNet())
    dataset, images, _ = batches(num_samples=8, batch_size=8)
    model = train_model(net, dataset)
    model.train(1, dataset, callbacks=algo.callbacks(model, dataset))
    net.set_train(False)
    expected = net(images).asnumpy()
    deployed = algo.convert(net)
    np.testing.assert_allclose(deployed(images).asnumpy(), expected, atol=1e-5)


def frozen_integral_net():
    """A ConvBnNet whose depthwise head is a fixed operator: a frozen weight arange(...), as a
    distribution-focal-loss head's integral conv."""
    net = ConvBnNet()
    weight = net.heads[0].weight
    weight.set_data(Tensor(np.arange(weight.size, dtype=np.float32).reshape(weight.shape)))
    weight.requires_grad = False
    return net


def test_frozen_layer_stays_float_and_the_summary_says_why():
    algo = SlbQuantAwareTraining()
    net = algo.apply(frozen_integral_net())
    assert type(net.heads[0]) is nn.Conv2d and isinstance(net.stem, Conv2dSlbQuant)
    row = next(row for row in algo.layer_summary() if row.path == "heads.0")
    assert (row.bits, row.reason) == ("float", "frozen weight, requires_grad=False (quantize_frozen_layers)")
    np.testing.assert_array_equal(net.heads[0].weight.asnumpy().ravel(), np.arange(72))


def test_frozen_layers_are_quantized_when_asked():
    for algo in (SlbQuantAwareTraining({"quantize_frozen_layers": True}), SlbQuantAwareTraining()):
        algo.set_quantize_frozen_layers(True)
        assert isinstance(algo.apply(frozen_integral_net()).heads[0], Conv2dSlbQuant)
    with pytest.raises(TypeError, match="'quantize_frozen_layers' must be a bool, but got 1"):
        SlbQuantAwareTraining({"quantize_frozen_layers": 1})


@pytest.mark.parametrize("config, reason", [
    ({}, r"Dense quantization is off \(enable_dense_quant\)"),
    ({"enable_dense_quant": True, "exclude_layers": ["fc"]}, r"excluded \(exclude_layers\)"),
])
def test_layer_bits_for_a_layer_left_float_is_refused(config, reason):
    net = ConvBnNet()
    algo = SlbQuantAwareTraining({**config, "layer_bits": {"fc": QuantDtype.INT4}})
    with pytest.raises(ValueError, match=f"'layer_bits' pattern 'fc' matches layer 'fc', which stays in float: "
                                         f"{reason}"):
        algo.apply(net)
    assert type(net.stem) is nn.Conv2d  # refused before any layer was replaced


def test_layer_bits_pattern_matching_quantized_layers_too_is_accepted():
    net = SlbQuantAwareTraining({"layer_bits": {"*": QuantDtype.INT2}}).apply(ConvBnNet())
    assert net.stem.weight_quantizer().num_bits == 2 and type(net.fc) is nn.Dense


@pytest.mark.parametrize("scale", [True, False], ids=["scale", "no_scale"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_float_weight_is_refused_naming_the_layer(scale, bad):
    net = ConvBnNet()
    weight = net.body[0].weight.asnumpy()
    weight[0, 0, 0, 0] = bad
    net.body[0].weight.set_data(Tensor(weight))
    with pytest.raises(ValueError, match=r"layer 'body.0' \(Conv2d\) has 1 non-finite \(NaN or infinite\) float "
                                         r"weight value\(s\)"):
        SlbQuantAwareTraining({"enable_weight_scale": scale}).apply(net)
    assert type(net.stem) is nn.Conv2d
    # Left in float, the layer is no obstacle.
    SlbQuantAwareTraining({"enable_weight_scale": scale, "exclude_layers": ["body.0"]}).apply(net)


def test_layer_types_enable_and_disable_registered_types():
    algo = SlbQuantAwareTraining({"layer_types": {nn.Dense: True, nn.Conv2d: False}})
    net = algo.apply(ConvBnNet())
    assert type(net.stem) is nn.Conv2d and type(net.fc) is not nn.Dense
    rows = {row.path: row for row in algo.layer_summary()}
    assert rows["stem"].reason == "Conv2d quantization is off (layer_types)" and rows["fc"].bits == 1
    assert "layer_types={Dense: True, Conv2d: False}" in repr(algo) and "enable_dense_quant=True" in repr(algo)


def test_enable_dense_quant_is_layer_types_of_dense():
    algo = SlbQuantAwareTraining()
    assert "enable_dense_quant=False" in repr(algo) and "layer_types={}" in repr(algo)
    algo.set_enable_dense_quant(True)
    assert "layer_types={Dense: True}" in repr(algo)
    algo.set_layer_types({nn.Dense: False})
    assert "enable_dense_quant=False" in repr(algo)
    # Each call updates the types it names; the others keep their setting.
    algo.set_enable_dense_quant(True)
    algo.set_layer_types({nn.Conv2d: True})
    assert "layer_types={Dense: True, Conv2d: True}" in repr(algo)
    assert type(algo.apply(ConvBnNet()).fc) is not nn.Dense


class UnregisteredCell(nn.Cell):
    pass


@pytest.mark.parametrize("value, error, message", [
    ([nn.Dense], TypeError, r"'layer_types' must be a dict \{registered layer type: bool\}, but got \[<class "),
    ({"Dense": True}, TypeError, r"'layer_types' keys must be layer types \(classes\), but got 'Dense' of type str"),
    ({UnregisteredCell: True}, ValueError,
     r"'layer_types' key UnregisteredCell is not a registered layer type; registered: .*Conv2d"),
    ({nn.Dense: 1}, TypeError, r"'layer_types\[Dense\]' must be a bool, but got 1 of type int"),
])
def test_layer_types_are_validated_in_config_and_setter(value, error, message):
    with pytest.raises(error, match=message):
        SlbQuantAwareTraining({"layer_types": value})
    with pytest.raises(error, match=message):
        SlbQuantAwareTraining().set_layer_types(value)


def test_layer_types_entry_of_a_type_unregistered_since_is_refused():
    from mindspore_slb import register_layer, unregister_layer  # pylint: disable=import-outside-toplevel
    from tiny_nets import MyConv, MyConvSlbQuant  # pylint: disable=import-outside-toplevel
    register_layer(MyConv, MyConvSlbQuant, deploy=lambda layer, weight: MyConv(weight))
    try:
        algo = SlbQuantAwareTraining({"layer_types": {MyConv: False}})
    finally:
        unregister_layer(MyConv)
    with pytest.raises(ValueError, match="'layer_types' names MyConv, which is no longer a registered layer type"):
        algo.apply(ConvBnNet())
