"""The straight-through-estimator baseline (weight_search "ste"): SLB's candidates and layers, learned by
a clipped straight-through estimator; trained, converted, packed and run by the recipe like SLB."""
import os

import mindspore as ms
import numpy as np
import onnxruntime
import pytest
from mindspore import Parameter, Tensor, nn, ops
from mindspore.train.callback import Callback

from recipe_data import tiny_args
from tiny_nets import DTYPES, ConvBnNet, MyConv, MyConvSlbQuant, batches, train_model

from mindspore_slb import (Conv2dSlbQuant, QuantDtype, SlbFakeQuantizerPerLayer, SlbQuantAwareTraining,
                           SlbQuantLayer, SteWeightQuantizer, calibrate_batchnorm, load_packed, packed_network,
                           register_layer, save_packed, unregister_layer)
from mindspore_slb.quantizer import candidate_values
from slb_recipe import evaluate as evaluation
from slb_recipe import export, train
from slb_recipe.checkpoints import CHECKPOINT_NAME
from slb_recipe.config import load_config
from slb_recipe.dataset import create_split
from slb_recipe.network import build_slb_algorithm, load_trained_network
from slb_recipe.quant_type import weight_bits
from slb_recipe.resnet import resnet18
from slb_recipe.runtime import setup_runtime



def nearest_candidates(latent, bits):
    values = candidate_values(bits)
    clipped = np.clip(latent, -1.0, 1.0)
    return values[np.abs(clipped[..., None] - values).argmin(axis=-1)]


@pytest.mark.parametrize("bits", [1, 2, 4])
def test_forward_is_the_nearest_candidate_of_the_clipped_latent_weight(bits, rng):
    latent = rng.uniform(-1.6, 1.6, (6, 3, 3, 3)).astype(np.float32)
    quantizer = SteWeightQuantizer(bits)
    quantizer.set_train(False)
    evaluated = quantizer(Tensor(latent)).asnumpy()
    np.testing.assert_array_equal(evaluated, nearest_candidates(latent, bits))
    quantizer.set_train(True)
    np.testing.assert_allclose(quantizer(Tensor(latent)).asnumpy(), evaluated, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(candidate_values(bits)[quantizer.codes(Tensor(latent))], evaluated)


def test_one_bit_is_the_sign_with_zero_to_plus_one():
    quantizer = SteWeightQuantizer(1)
    quantizer.set_train(False)
    np.testing.assert_array_equal(quantizer(Tensor(np.array([-0.3, 0.0, 0.2, 5.0], np.float32))).asnumpy(),
                                  [-1, 1, 1, 1])


class WeightLoss(nn.Cell):
    """sum(upstream * quantizer(latent, scale)), for the gradient with respect to the latent weights."""

    def __init__(self, bits, latent, scale):
        super().__init__()
        self.quantizer = SteWeightQuantizer(bits)
        self.latent = Parameter(Tensor(latent), name="latent")
        self.scale = Parameter(Tensor(scale), name="scale")

    def construct(self, upstream):
        return (self.quantizer(self.latent, self.scale) * upstream).sum()


@pytest.mark.parametrize("bits", [1, 4])
def test_gradient_passes_straight_through_inside_the_range_and_is_zero_outside(mode, bits, rng):
    latent = rng.uniform(-1.5, 1.5, (4, 6)).astype(np.float32)
    latent[0, :4] = [-1.0, 1.0, -1.0001, 1.0001]
    scale = rng.uniform(0.5, 2.0, 4).astype(np.float32)
    upstream = rng.normal(size=(4, 6)).astype(np.float32)
    loss = WeightLoss(bits, latent, scale)
    loss.set_train(True)
    gradient = ms.grad(loss, grad_position=None, weights=loss.latent)(Tensor(upstream)).asnumpy()
    inside = np.abs(latent) <= 1.0
    np.testing.assert_allclose(gradient, np.where(inside, upstream * scale[:, None], 0.0), rtol=1e-6, atol=1e-7)
    assert not inside.all() and (gradient[~inside] == 0).all()


@pytest.mark.parametrize("bits", [1, 2, 4])
@pytest.mark.parametrize("scale", [False, True])
def test_starts_from_slb_initial_hard_weight_with_latent_values_in_range(bits, scale, rng):
    conv = nn.Conv2d(3, 6, 3, weight_init=Tensor(rng.normal(0, 0.1, (6, 3, 3, 3)).astype(np.float32)))
    slb = Conv2dSlbQuant(conv, bits, weight_scale=scale)
    ste = Conv2dSlbQuant(conv, bits, weight_scale=scale, weight_search="ste")
    np.testing.assert_array_equal(ste.hard_weight(), slb.hard_weight())
    np.testing.assert_array_equal(ste.weight_codes(), slb.weight_codes())
    assert ste.weight_logits is None and slb.weight_latent is None
    assert ste.weight_latent.shape == conv.weight.shape and np.abs(ste.weight_latent.asnumpy()).max() <= 1.0
    assert ste.weight_quantizer().values == slb.weight_quantizer().values
    assert "weight_search=ste" in repr(ste)


class LossRecorder(Callback):
    def __init__(self):
        super().__init__()
        self.losses = []

    def on_train_step_end(self, run_context):
        self.losses.append(float(run_context.original_args().net_outputs.asnumpy()))


def test_tiny_network_trains_and_the_temperature_schedule_leaves_it_alone(mode):
    ms.set_seed(0)
    algo = SlbQuantAwareTraining({"quant_dtype": QuantDtype.INT2, "weight_search": "ste", "epoch_size": 3,
                                  "has_trained_epoch": 0})
    net = algo.apply(ConvBnNet())
    assert not any(isinstance(cell, SlbFakeQuantizerPerLayer) for _, cell in net.cells_and_names())
    latent = {param.name: param.asnumpy().copy() for param in net.trainable_params()
              if param.name.endswith("weight_latent")}
    assert sorted(latent) == ["body.0.weight_latent", "heads.0.weight_latent", "stem.weight_latent"]
    dataset, _, _ = batches(num_samples=32, batch_size=8)
    model = train_model(net, dataset)
    recorder = LossRecorder()
    model.train(3, dataset, callbacks=algo.callbacks(model, dataset) + [recorder], dataset_sink_mode=False)
    losses = np.array(recorder.losses).reshape(3, -1).mean(axis=1)
    assert losses[-1] < 0.85 * losses[0], losses
    for param in net.trainable_params():
        if param.name in latent:
            assert not np.array_equal(param.asnumpy(), latent[param.name]), param.name


def ste_network(bits, scale, act_quant=False, seed=0):
    """A quantized ConvBnNet with random latent weights (every candidate in use, some clipped) and
    observed activation ranges, in evaluation mode; the same network for the same arguments."""
    ms.set_seed(seed)
    algo = SlbQuantAwareTraining({"quant_dtype": DTYPES[bits], "weight_search": "ste",
                                  "enable_weight_scale": scale, "enable_act_quant": act_quant})
    net = algo.apply(ConvBnNet())
    rng = np.random.default_rng(seed)
    for param in net.get_parameters():
        if param.name.endswith("weight_latent"):
            param.set_data(Tensor(rng.uniform(-1.3, 1.3, param.shape).astype(np.float32)))
    _, images, _ = batches(num_samples=8)
    net.set_train(True)
    net(images)
    net.set_train(False)
    return algo, net, images


@pytest.mark.parametrize("bits, scale, act_quant", [(1, False, False), (2, True, True), (4, True, False)])
def test_converted_network_reproduces_the_evaluated_one(mode, bits, scale, act_quant):
    algo, net, images = ste_network(bits, scale, act_quant)
    expected = net(images).asnumpy()
    hard = net.stem.hard_weight()
    deployed = algo.convert(net)
    np.testing.assert_allclose(deployed(images).asnumpy(), expected, rtol=0, atol=1e-5)
    stem = deployed.stem.layer if act_quant else deployed.stem
    assert isinstance(stem, nn.Conv2d)
    np.testing.assert_array_equal(stem.weight.asnumpy(), hard)
    if not scale:
        assert set(np.unique(stem.weight.asnumpy()).tolist()) <= set(candidate_values(bits).tolist())


@pytest.mark.parametrize("bits, scale", [(1, False), (2, True), (4, False)])
def test_packed_file_and_packed_network_reproduce_the_converted_network(tmp_path, bits, scale):
    _, net, images = ste_network(bits, scale, act_quant=bits == 2)
    path = save_packed(net, str(tmp_path / "net.slb"))
    with open(path, "rb") as stream:
        assert b"weight_latent" not in stream.read()
    compressed = packed_network(ste_network(bits, scale, act_quant=bits == 2)[1])(images).asnumpy()
    algo, other, _ = ste_network(bits, scale, act_quant=bits == 2)
    expected = algo.convert(other)(images).asnumpy()
    np.testing.assert_array_equal(load_packed(ConvBnNet(), path)(images).asnumpy(), expected)
    np.testing.assert_allclose(compressed, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("value, error, words", [
    ("STE", ValueError, "'weight_search' must be one of 'slb', 'ste', but got 'STE'"),
    (1, TypeError, "'weight_search' must be a str, one of 'slb', 'ste', but got 1 of type int"),
])
def test_weight_search_is_validated_naming_parameter_value_and_choices(value, error, words):
    with pytest.raises(error, match=words):
        SlbQuantAwareTraining().set_weight_search(value)
    with pytest.raises(error, match=words):
        SlbQuantAwareTraining({"weight_search": value})
    algo = SlbQuantAwareTraining({"weight_search": "ste"})
    assert "weight_search='ste'" in repr(algo)
    assert "weight_search='slb'" in repr(SlbQuantAwareTraining())


class SearchingQuant(MyConvSlbQuant):
    """A user's quantized type that passes the weight search on (MyConvSlbQuant predates it)."""

    def __init__(self, conv, num_bits, act_quantizer=None, weight_scale=False, weight_search="slb"):
        SlbQuantLayer.__init__(self, conv.weight, num_bits, act_quantizer, weight_scale, weight_search)


@pytest.mark.parametrize("quantized_type", [MyConvSlbQuant, SearchingQuant])
def test_user_registered_type_gets_the_weight_search_when_it_takes_it(quantized_type):
    register_layer(MyConv, quantized_type, deploy=lambda layer, weight: MyConv(weight))
    try:
        weight = Tensor(np.random.default_rng(0).normal(size=(4, 3, 3, 3)).astype(np.float32))
        assert SlbQuantAwareTraining().apply(MyConv(weight)).weight_logits is not None
        algo = SlbQuantAwareTraining({"weight_search": "ste"})
        if quantized_type is MyConvSlbQuant:
            with pytest.raises(TypeError, match="'weight_search' is 'ste', but MyConvSlbQuant, which quantizes "
                                                "MyConv, takes no 'weight_search' argument"):
                algo.apply(MyConv(weight))
        else:
            assert algo.apply(MyConv(weight)).weight_latent.shape == (4, 3, 3, 3)
    finally:
        unregister_layer(MyConv)


def test_batchnorm_calibration_runs_with_the_hard_weights():
    _, net, images = ste_network(2, True)
    dataset, _, _ = batches(num_samples=8)
    assert calibrate_batchnorm(net, dataset) == ["stem_bn", "body.1", "heads.1"]
    stem_output = ops.conv2d(images, Tensor(net.stem.hard_weight()), pad_mode="pad", padding=1).asnumpy()
    np.testing.assert_allclose(net.stem_bn.moving_mean.asnumpy(), stem_output.mean(axis=(0, 2, 3)),
                               rtol=1e-4, atol=1e-5)


def test_recipe_quant_types_map_to_the_baseline():
    assert [weight_bits(name) for name in ("W1_STE", "W2_STE", "W4_STE")] == [1, 2, 4]
    assert CHECKPOINT_NAME.match("resnet18_W1_STE-3.ckpt").group("quant") == "W1_STE"
    config = load_config(tiny_args("unused", quant_type="W4_STE"))
    algo = build_slb_algorithm(config, 0)
    text = repr(algo)
    assert "weight_search='ste'" in text and "enable_act_quant=False" in text
    assert "weight_quant_dtype=QuantDtype.INT4" in text
    assert "weight_search='slb'" in repr(build_slb_algorithm(load_config(tiny_args("unused", quant_type="W4")), 0))


def test_recipe_w1_ste_trains_evaluates_and_exports(tmp_path, capsys):
    args = tiny_args(tmp_path, quant_type="W1_STE", epoch_size=1, warmup_epochs=0)
    result = train.main(args)
    assert os.path.basename(result["checkpoint"]) == "resnet18_W1_STE-1.ckpt"
    assert result["history"][0]["temperature"] is None and np.isfinite(result["history"][0]["loss"])
    saved = ms.load_checkpoint(result["checkpoint"])
    assert "conv1.weight_latent" in saved and not any(name.endswith("weight_logits") for name in saved)
    assert "temperature n/a" in capsys.readouterr().out

    evaluated = evaluation.main(args)
    assert evaluated["converted"] == evaluated["quantized"]

    config = load_config(args)
    setup_runtime(config)
    net, algo, _ = load_trained_network(config)
    images = Tensor(next(create_split(config, False).create_tuple_iterator(output_numpy=True))[0])
    expected = algo.convert(net)(images).asnumpy()
    path = export.main(args + ["--file_format", "SLB", "--file_name", "ste"])
    np.testing.assert_array_equal(load_packed(resnet18(config.class_num, config.width), path)(images).asnumpy(),
                                  expected)
    with open(path + ".size.md", encoding="utf-8") as stream:
        assert "| conv1.weight | 4x3x7x7 | 1 | 588 | 2352 | 82 |" in stream.read()
    mindir = export.main(args + ["--file_format", "MINDIR_PACKED", "--file_name", "ste_packed"])
    graph = nn.GraphCell(ms.load(mindir))
    # Outputs reach 1e4 in a network trained for two steps: float32 rounding of the compiled graph.
    np.testing.assert_allclose(graph(images[:1]).asnumpy(), expected[:1], rtol=1e-5, atol=1e-5)
    packed_onnx = export.main(args + ["--file_format", "ONNX_PACKED", "--file_name", "ste"])
    session = onnxruntime.InferenceSession(packed_onnx)
    np.testing.assert_allclose(session.run(None, {session.get_inputs()[0].name: images[:1].asnumpy()})[0],
                               expected[:1], rtol=1e-5, atol=1e-5)
