"""W1 SLB learns: a tiny conv net reaches high training accuracy with the temperature schedule."""
import mindspore as ms

from mindspore_slb import QuantDtype, SlbQuantAwareTraining
from tiny_nets import ConvBnNet, batches, train_model


def test_w1_network_learns_a_small_task(mode):
    ms.set_seed(1)
    epochs = 12
    algo = SlbQuantAwareTraining({"quant_dtype": QuantDtype.INT1, "epoch_size": epochs, "has_trained_epoch": 0})
    network = algo.apply(ConvBnNet(width=16))
    dataset, _, _ = batches(num_samples=64, batch_size=16)
    model = train_model(network, dataset, learning_rate=0.05)
    model.train(epochs, dataset, callbacks=algo.callbacks(model, dataset))
    assert network.stem.weight_quantizer().temperature_end_flag
    # evaluation uses the hard 1-bit weights
    assert model.eval(dataset)["acc"] >= 0.9
