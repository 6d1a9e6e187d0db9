"""The weight search as a strategy: each search is a weight quantizer type that makes the Parameter it
searches and turns it into the layer's weight, hard weight and codes; the quantized layer holds no
per-search branch."""
import numpy as np
import pytest
from mindspore import Tensor, nn

from mindspore_slb import (Conv2dSlbQuant, DenseSlbQuant, SlbQuantAwareTraining, register_layer, registered_layers,
                           unregister_layer)
from mindspore_slb.layers import SEARCHED_PARAMETER_NAMES, WEIGHT_SEARCHES
from mindspore_slb.quantizer import CandidateQuantizer
from tiny_nets import ConvBnNet, MyConv, MyConvSlbQuant


def test_every_search_is_a_weight_quantizer_naming_its_search_and_parameter():
    assert list(WEIGHT_SEARCHES) == ["slb", "ste"]
    assert SEARCHED_PARAMETER_NAMES == ("weight_logits", "weight_latent")
    for name, quantizer_type in WEIGHT_SEARCHES.items():
        assert issubclass(quantizer_type, CandidateQuantizer) and quantizer_type.search_name == name


@pytest.mark.parametrize("weight_search", ["slb", "ste"])
@pytest.mark.parametrize("scale", [False, True])
def test_layer_holds_the_parameter_its_quantizer_makes_under_the_quantizer_name(weight_search, scale, rng):
    conv = nn.Conv2d(3, 6, 3, weight_init=Tensor(rng.normal(0, 0.1, (6, 3, 3, 3)).astype(np.float32)))
    layer = Conv2dSlbQuant(conv, 2, weight_scale=scale, weight_search=weight_search)
    quantizer = layer.weight_quantizer()
    assert type(quantizer) is WEIGHT_SEARCHES[weight_search]
    searched = getattr(layer, quantizer.parameter_name)
    assert layer.searched_weight() is searched and searched.name == quantizer.parameter_name
    for other in set(SEARCHED_PARAMETER_NAMES) - {quantizer.parameter_name}:
        assert getattr(layer, other) is None
    start, start_scale = quantizer.start(conv.weight.asnumpy(), scale)
    np.testing.assert_array_equal(searched.asnumpy(), start)
    assert (layer.weight_scale is None) == (start_scale is None)
    np.testing.assert_array_equal(layer.weight_codes(), quantizer.codes(searched))
    chosen = np.asarray(quantizer.values, np.float32)[layer.weight_codes()]
    np.testing.assert_array_equal(quantizer.hard_weight(searched).asnumpy(), chosen)


def test_unknown_search_on_a_layer_names_the_choices():
    with pytest.raises(ValueError, match="'weight_search' must be one of 'slb', 'ste', but got 'sgd'"):
        DenseSlbQuant(nn.Dense(4, 2), 1, weight_search="sgd")


@pytest.mark.parametrize("weight_search, names", [
    ("slb", {"stem.weight_logits", "stem.fake_quant_weight.temperature", "stem.weight_scale"}),
    ("ste", {"stem.weight_latent", "stem.weight_scale"}),
])
def test_checkpoint_names_of_the_searched_parameters_are_kept(weight_search, names):
    net = SlbQuantAwareTraining({"weight_search": weight_search}).apply(ConvBnNet())
    stem = {p.name for p in net.get_parameters() if p.name.startswith("stem.")}
    assert names <= stem and not any("fake_quant_weight.weight_" in name for name in stem)


class ConvThenMine(nn.Cell):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3)
        self.mine = MyConv(Tensor(np.random.default_rng(0).normal(size=(4, 3, 3, 3)).astype(np.float32)))

    def construct(self, x):
        return self.mine(self.conv(x))


def test_a_type_without_the_search_is_refused_before_any_layer_is_replaced():
    register_layer(MyConv, MyConvSlbQuant, deploy=lambda layer, weight: MyConv(weight))
    try:
        handler = next(handler for handler in registered_layers() if handler.float_type is MyConv)
        assert handler.weight_searches == ("slb",)
        net = ConvThenMine()
        with pytest.raises(TypeError, match="'weight_search' is 'ste', but MyConvSlbQuant, which quantizes MyConv"):
            SlbQuantAwareTraining({"weight_search": "ste"}).apply(net)
        assert type(net.conv) is nn.Conv2d and type(net.mine) is MyConv
    finally:
        unregister_layer(MyConv)
    assert next(handler for handler in registered_layers()
                if handler.float_type is nn.Conv2d).weight_searches == ("slb", "ste")
