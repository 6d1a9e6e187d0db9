"""8-bit activation fake quantization: observed range, 256 levels, straight-through gradient."""
import mindspore as ms
import numpy as np
from mindspore import Tensor, nn, ops

from mindspore_slb import SlbActQuantizer, SlbQuantAwareTraining
from tiny_nets import ConvBnNet, batches, train_model


class InputGradient(nn.Cell):
    def __init__(self, quantizer):
        super().__init__()
        self.quantizer = quantizer
        self.grad = ops.GradOperation(sens_param=True)

    def construct(self, x, upstream):
        return self.quantizer(x), self.grad(self.quantizer)(x, upstream)


def test_training_observes_range_and_quantizes_to_256_levels(mode, rng):
    quantizer = SlbActQuantizer()
    probe = InputGradient(quantizer)
    probe.set_train(True)
    x = rng.uniform(0.5, 3.0, (4, 3, 5, 5)).astype(np.float32)
    out, gradient = probe(Tensor(x), Tensor(np.ones_like(x)))
    # the range always holds 0; the first batch sets it outright
    assert float(quantizer.act_min) == 0.0 and float(quantizer.act_max) == np.float32(x.max())
    step = x.max() / 255
    np.testing.assert_allclose(out.asnumpy(), np.round(x / step) * step, atol=1e-6)
    np.testing.assert_array_equal(gradient.asnumpy(), 1.0)
    assert len(np.unique(out.asnumpy())) <= 256


def test_evaluation_keeps_range_and_clips_with_zero_gradient_outside(mode):
    quantizer = SlbActQuantizer()
    quantizer.act_min.set_data(Tensor([-1.0], ms.float32))
    quantizer.act_max.set_data(Tensor([1.0], ms.float32))
    probe = InputGradient(quantizer)
    probe.set_train(False)
    x = np.array([-3.0, -1.0, 0.0, 0.3, 2.0], np.float32)
    out, gradient = probe(Tensor(x), Tensor(np.ones_like(x)))
    step = 2 / 255
    expected = np.round(np.clip(x, -1, 1) / step) * step
    np.testing.assert_allclose(out.asnumpy(), expected, atol=1e-6)
    np.testing.assert_array_equal(gradient.asnumpy(), [0, 1, 1, 1, 0])
    assert float(quantizer.act_min) == -1.0 and float(quantizer.act_max) == 1.0


def test_range_follows_moving_average():
    quantizer = SlbActQuantizer(ema_decay=0.5)
    quantizer.set_train(True)
    quantizer(Tensor(np.array([-2.0, 4.0], np.float32)))
    quantizer(Tensor(np.array([-4.0, 2.0], np.float32)))
    assert float(quantizer.act_min) == -3.0 and float(quantizer.act_max) == 3.0


def test_act_quant_network_trains_on_cpu(mode):
    algo = SlbQuantAwareTraining({"epoch_size": 2, "has_trained_epoch": 0, "enable_act_quant": True})
    network = algo.apply(ConvBnNet())
    assert isinstance(network.stem.input_quantizer, SlbActQuantizer)
    assert "stem.input_quantizer.act_max" in {p.name for p in network.get_parameters()}
    dataset, _, _ = batches(num_samples=16, batch_size=8)
    model = train_model(network, dataset)
    model.train(2, dataset, callbacks=algo.callbacks(model, dataset))
    assert float(network.body[0].input_quantizer.act_max) > 0
    assert np.isfinite(model.eval(dataset)["acc"])
