"""The layer-handler registry: Dense quantization, a user's own layer type, subclasses."""
import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, nn

from mindspore_slb import (DenseSlbQuant, QuantDtype, SlbQuantAwareTraining, SlbQuantLayer, register_layer,
                           unregister_layer)
from tiny_nets import ConvBnNet, MyConv, MyConvSlbQuant, batches, train_model


@pytest.fixture
def my_conv_registered():
    register_layer(MyConv, MyConvSlbQuant, deploy=lambda layer, weight: MyConv(weight))
    yield
    unregister_layer(MyConv)


class MixedNet(nn.Cell):
    def __init__(self):
        super().__init__()
        self.mine = MyConv(Tensor(np.random.default_rng(1).normal(size=(4, 3, 3, 3)).astype(np.float32)))
        self.conv = nn.Conv2d(4, 4, 3)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Dense(4, 4, activation="relu")

    def construct(self, x):
        return self.fc(self.flatten(self.pool(self.conv(self.mine(x)))))


def train_convert(algo, net, images, dataset):
    """One epoch of training (every quantized layer's logits must move), then convert."""
    logits = [p for p in net.trainable_params() if p.name.endswith("weight_logits")]
    before = [p.asnumpy().copy() for p in logits]
    model = train_model(net, dataset)
    model.train(1, dataset, callbacks=algo.callbacks(model, dataset))
    for parameter, old in zip(logits, before):
        assert not np.array_equal(parameter.asnumpy(), old), parameter.name
    net.set_train(False)
    expected = net(images).asnumpy()
    deployed = algo.convert(net)
    np.testing.assert_allclose(deployed(images).asnumpy(), expected, atol=1e-5)
    return deployed


def test_user_registered_layer_is_quantized_trained_and_converted(mode, my_conv_registered):
    # The float layers' initial weights come from the global seed: without it, what earlier tests drew
    # decides them, and some draws leave the ReLU head dead (no gradient reaches the logits).
    ms.set_seed(1)
    algo = SlbQuantAwareTraining({"quant_dtype": QuantDtype.INT2, "epoch_size": 10, "has_trained_epoch": 0})
    net = algo.apply(MixedNet())
    assert isinstance(net.mine, MyConvSlbQuant)
    assert net.mine.weight_logits.shape == (4, 4, 3, 3, 3) and net.mine.weight_scale.shape == (4,)
    assert isinstance(net.fc, nn.Dense)  # Dense stays float by default
    dataset, images, _ = batches(num_samples=8, batch_size=8)
    deployed = train_convert(algo, net, images, dataset)
    assert isinstance(deployed.mine, MyConv)


def test_dense_quantization_when_enabled(mode):
    algo = SlbQuantAwareTraining({"quant_dtype": QuantDtype.INT1, "epoch_size": 10, "has_trained_epoch": 0,
                                  "enable_dense_quant": True})
    net = algo.apply(ConvBnNet())
    assert isinstance(net.fc, DenseSlbQuant) and net.fc.weight_logits.shape == (2, 4, 8)
    assert "fc.weight_logits" in {p.name for p in net.get_parameters()}
    dataset, images, _ = batches(num_samples=8, batch_size=8)
    deployed = train_convert(algo, net, images, dataset)
    assert isinstance(deployed.fc, nn.Dense)
    for row in deployed.fc.weight.asnumpy():  # 1 bit: each output row holds +-its scale
        assert len(np.unique(np.abs(row))) == 1


def test_dense_activation_and_higher_rank_input_are_kept():
    dense = nn.Dense(6, 3, activation="relu")
    quant = DenseSlbQuant(dense, 4, weight_scale=True)
    quant.set_train(False)
    x = Tensor(np.random.default_rng(0).normal(size=(2, 5, 6)).astype(np.float32))
    weight = quant.hard_weight()
    expected = np.maximum(x.asnumpy() @ weight.T + dense.bias.asnumpy(), 0)
    np.testing.assert_allclose(quant(x).asnumpy(), expected, atol=1e-5)


def test_conv_subclass_overriding_construct_is_left_in_float():
    class ShiftedConv(nn.Conv2d):
        def construct(self, x):
            return super().construct(x) + 1.0

    class PlainSubclass(nn.Conv2d):
        pass

    net = nn.SequentialCell([ShiftedConv(3, 4, 3), PlainSubclass(4, 4, 3)])
    algo = SlbQuantAwareTraining()
    algo.apply(net)
    assert isinstance(net[0], ShiftedConv)
    assert isinstance(net[1], SlbQuantLayer)
    assert [row.bits for row in algo.layer_summary()] == [1]


def test_registration_is_validated():
    with pytest.raises(TypeError, match="'float_type'"):
        register_layer("Conv", MyConvSlbQuant, lambda layer, weight: None)
    with pytest.raises(TypeError, match="'quantized_type'"):
        register_layer(MyConv, nn.Conv2d, lambda layer, weight: None)
    with pytest.raises(TypeError, match="'deploy'"):
        register_layer(MyConv, MyConvSlbQuant, None)
    with pytest.raises(KeyError, match="not registered"):
        unregister_layer(MyConv)


def test_golden_stick_custom_policies_points_to_the_registry():
    with pytest.raises(ValueError, match="custom_policies.*register_layer"):
        SlbQuantAwareTraining({"custom_policies": {}})
