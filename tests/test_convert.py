"""convert(): a plain network with discrete weights that reproduces the quantized one."""
import mindspore as ms
import numpy as np
import pytest
from mindspore import nn

from mindspore_slb import Conv2dSlbQuant, QuantDtype, SlbQuantAwareTraining
from tiny_nets import DTYPES, ConvBnNet, batches, train_model



def trained_network(bits, act_quant, scale=True):
    algo = SlbQuantAwareTraining({"epoch_size": 2, "has_trained_epoch": 0, "enable_act_quant": act_quant,
                                  "quant_dtype": DTYPES[bits], "enable_weight_scale": scale})
    network = algo.apply(ConvBnNet())
    dataset, images, _ = batches(num_samples=16, batch_size=8)
    model = train_model(network, dataset)
    model.train(1, dataset, callbacks=algo.callbacks(model, dataset))
    return algo, network, images


@pytest.mark.parametrize("act_quant,scale", [(False, True), (True, True), (False, False)],
                         ids=["weights", "weights+act", "unscaled"])
@pytest.mark.parametrize("bits", [1, 2, 4])
def test_converted_network_matches_quantized_and_holds_only_scaled_candidates(mode, bits, act_quant, scale):
    algo, network, images = trained_network(bits, act_quant, scale)
    network.set_train(False)
    expected = network(images).asnumpy()
    scales = {path: cell.weight_scale.asnumpy() if scale else np.ones(cell.out_channels, np.float32)
              for path, cell in network.cells_and_names() if isinstance(cell, Conv2dSlbQuant)}

    deployed = algo.convert(network)

    # converted in place: no Cell of the user's is copied
    assert deployed is network
    assert not any(isinstance(cell, Conv2dSlbQuant) for _, cell in deployed.cells_and_names())
    assert not any("logits" in p.name for p in deployed.get_parameters())
    candidates = np.linspace(-1, 1, 2 ** bits).astype(np.float32)
    convs = {path.rsplit(".layer", 1)[0]: cell for path, cell in deployed.cells_and_names()
             if isinstance(cell, nn.Conv2d)}
    assert convs.keys() == scales.keys()
    for path, conv in convs.items():
        weight = conv.weight.asnumpy()
        assert weight.ndim == 4
        # each output channel holds its scale times candidates, bit for bit
        chosen = np.abs(candidates[None, :, None] * scales[path][:, None, None]
                        - weight.reshape(len(weight), 1, -1)).argmin(axis=1)
        np.testing.assert_array_equal(weight.reshape(len(weight), -1),
                                      candidates[chosen] * scales[path][:, None])
    np.testing.assert_allclose(deployed(images).asnumpy(), expected, atol=1e-5)


def test_exported_mindir_reproduces_converted_network(tmp_path, mode):
    algo, network, images = trained_network(2, True)
    deployed = algo.convert(network)
    expected = deployed(images).asnumpy()
    path = str(tmp_path / "slb_net")
    ms.export(deployed, images, file_name=path, file_format="MINDIR")
    graph = nn.GraphCell(ms.load(path + ".mindir"))
    np.testing.assert_allclose(graph(images).asnumpy(), expected, atol=1e-5)


def test_convert_loads_checkpoint_first(tmp_path):
    algo, network, images = trained_network(1, False)
    path = str(tmp_path / "trained.ckpt")
    ms.save_checkpoint(network, path)
    network.set_train(False)
    expected = network(images).asnumpy()
    fresh = SlbQuantAwareTraining({"quant_dtype": QuantDtype.INT1}).apply(ConvBnNet())
    deployed = algo.convert(fresh, ckpt_path=path)
    np.testing.assert_allclose(deployed(images).asnumpy(), expected, atol=1e-5)


def test_convert_errors(tmp_path):
    algo = SlbQuantAwareTraining()
    network = algo.apply(ConvBnNet())
    with pytest.raises(TypeError, match="'net_opt'"):
        algo.convert("net")
    with pytest.raises(TypeError, match="'ckpt_path'"):
        algo.convert(network, ckpt_path=3)
    with pytest.raises(ValueError, match="'ckpt_path'.*missing.ckpt"):
        algo.convert(network, ckpt_path=str(tmp_path / "missing.ckpt"))
    with pytest.raises(ValueError, match="'ckpt_path'"):
        algo.convert(network, ckpt_path=str(tmp_path))
    with pytest.raises(ValueError, match="no SLB-quantized layer"):
        algo.convert(ConvBnNet())
    algo.convert(network)
    with pytest.raises(ValueError, match="no SLB-quantized layer.*converted once has none left"):
        algo.convert(network)


def test_checkpoint_without_the_quantized_parameters_is_refused(tmp_path):
    path = str(tmp_path / "float.ckpt")
    ms.save_checkpoint(ConvBnNet(), path)
    network = SlbQuantAwareTraining().apply(ConvBnNet())
    with pytest.raises(ValueError, match=r"'ckpt_path'.*lacks \d+ parameter.*weight_logits"):
        SlbQuantAwareTraining().convert(network, ckpt_path=path)


def test_printing_a_converted_network_does_not_list_its_weights():
    algo = SlbQuantAwareTraining({"enable_dense_quant": True})
    deployed = algo.convert(algo.apply(ConvBnNet()))
    printed = repr(deployed)
    assert "Conv2d(input_channels=3, output_channels=8" in printed and "[[" not in printed
