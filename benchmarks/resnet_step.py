"""What several benchmarks time: the recipe's ResNet18 with SLB applied, and a plain Momentum
training step on a fixed random batch. Imports mindspore_slb only when called, so that
benchmark.py can put a baseline checkout first on sys.path before."""
import numpy as np

CLASS_NUM = 10


def slb_resnet18(bits, width, **slb_config):
    """(network, algo): the recipe's ResNet18 of `width` with SLB at `bits` weight bits and
    `slb_config`'s other keys applied; bits 0 is the float network (algo None)."""
    from mindspore_slb import QuantDtype, SlbQuantAwareTraining  # pylint: disable=import-outside-toplevel
    from slb_recipe.resnet import resnet18  # pylint: disable=import-outside-toplevel

    network = resnet18(class_num=CLASS_NUM, width=width)
    if not bits:
        return network, None
    dtype = {1: QuantDtype.INT1, 2: QuantDtype.INT2, 4: QuantDtype.INT4}[bits]
    algo = SlbQuantAwareTraining({"quant_dtype": dtype, **slb_config})
    return algo.apply(network), algo


# The optimizers a step can take: MindSpore's, the package's with the logits' step fused into the
# kernel (mindspore_slb.SlbMomentum), and that with the logits and their momentum in bfloat16.
OPTIMIZERS = ("nn.Momentum", "SlbMomentum", "SlbMomentum_bfloat16")
# The SLB settings each optimizer trains with.
OPTIMIZER_SLB_CONFIG = {"SlbMomentum_bfloat16": {"search_dtype": "bfloat16"}}


def momentum_train_step(network, learning_rate=0.01, momentum=0.9, optimizer="nn.Momentum"):
    """One training step of network (cross entropy, Momentum over every trainable parameter, weight
    decay 1e-4 as the recipe), in training mode; `optimizer` one of OPTIMIZERS (the network built
    with its OPTIMIZER_SLB_CONFIG)."""
    from mindspore import nn  # pylint: disable=import-outside-toplevel

    if optimizer.startswith("SlbMomentum"):
        from mindspore_slb import SlbMomentum as optimizer_type  # pylint: disable=import-outside-toplevel
    else:
        optimizer_type = nn.Momentum
    loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    step = nn.TrainOneStepCell(nn.WithLossCell(network, loss),
                               optimizer_type(network.trainable_params(), learning_rate, momentum, weight_decay=1e-4))
    step.set_train(True)
    return step


def random_batch(batch_size, image_size, seed=0):
    """(images NCHW float32, labels int32) as Tensors: normal pixels, uniform labels."""
    from mindspore import Tensor  # pylint: disable=import-outside-toplevel

    rng = np.random.default_rng(seed)
    images = Tensor(rng.normal(size=(batch_size, 3, image_size, image_size)).astype(np.float32))
    labels = Tensor(rng.integers(0, CLASS_NUM, batch_size).astype(np.int32))
    return images, labels
