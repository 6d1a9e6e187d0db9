"""apply / train / convert on every container kind, a shared Cell and a Cell that refuses deepcopy."""
import copy

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn

from mindspore_slb import Conv2dSlbQuant, QuantDtype, SlbQuantAwareTraining
from tiny_nets import ContainersNet, batches, train_model

CONV_PATHS = ["features.conv0", "features.block.0", "branches.0", "branches.1.0", "side.deep", "final_conv", "frozen.conv"]


def quantized_containers_net():
    ms.set_seed(0)
    algo = SlbQuantAwareTraining({"quant_dtype": QuantDtype.INT2, "epoch_size": 10, "has_trained_epoch": 0})
    return algo, algo.apply(ContainersNet())


def test_every_container_kind_is_rewritten():
    _, net = quantized_containers_net()
    assert isinstance(net.features.conv0, Conv2dSlbQuant)
    assert isinstance(net.features[0], Conv2dSlbQuant)
    assert isinstance(net.features.block[0], Conv2dSlbQuant)
    assert isinstance(net.branches[0], Conv2dSlbQuant)
    assert isinstance(net.branches[1][0], Conv2dSlbQuant)
    assert isinstance(net.side["deep"], Conv2dSlbQuant)
    assert isinstance(net.frozen.conv, Conv2dSlbQuant)
    assert not any(isinstance(cell, nn.Conv2d) for _, cell in net.cells_and_names())
    with pytest.raises(TypeError):
        copy.deepcopy(net.frozen)


def test_shared_cell_gets_one_replacement_seen_from_every_path():
    _, net = quantized_containers_net()
    assert net.final_conv is net.classifier[1]
    assert net.final_conv in net.classifier.cell_list
    names = [p.name for p in net.get_parameters()]
    assert len(names) == len(set(names))
    assert sum(name.endswith("weight_logits") for name in names) == len(CONV_PATHS)
    assert {f"{path}.weight_logits" for path in CONV_PATHS} <= set(names)
    assert "features.norm0.gamma" in names and "final_conv.bias" in names


def test_train_step_then_convert_in_place(mode):
    algo, net = quantized_containers_net()
    dataset, images, _ = batches(num_samples=8, batch_size=8)
    before = net.final_conv.weight_logits.asnumpy().copy()
    model = train_model(net, dataset)
    model.train(1, dataset, callbacks=algo.callbacks(model, dataset))
    assert not np.array_equal(net.final_conv.weight_logits.asnumpy(), before)
    net.set_train(False)
    expected = net(images).asnumpy()
    assert np.isfinite(expected).all()

    deployed = algo.convert(net)

    assert deployed is net
    assert not any(isinstance(cell, Conv2dSlbQuant) for _, cell in deployed.cells_and_names())
    assert deployed.classifier[1] is deployed.final_conv
    np.testing.assert_allclose(deployed(images).asnumpy(), expected, atol=1e-5)


def test_bare_conv_is_quantized_and_converted(mode):
    algo = SlbQuantAwareTraining({"quant_dtype": QuantDtype.INT1})
    _, images, _ = batches(num_samples=2, batch_size=2)
    quant = algo.apply(nn.Conv2d(3, 4, 3, has_bias=True))
    assert isinstance(quant, Conv2dSlbQuant)
    assert {p.name for p in quant.get_parameters()} >= {"weight_logits", "bias"}
    quant.set_train(False)
    expected = quant(images).asnumpy()
    deployed = algo.convert(quant)
    assert isinstance(deployed, nn.Conv2d)
    np.testing.assert_allclose(deployed(images).asnumpy(), expected, atol=1e-5)
