"""Small networks, and constants, shared by the tests."""
import os
from collections import OrderedDict

import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, nn, ops
import mindspore.dataset as ds

from mindspore_slb import WEIGHT_DTYPES, SlbQuantAwareTraining, SlbQuantLayer

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Weight bits -> the quant_dtype that asks for them.
DTYPES = WEIGHT_DTYPES


class ConvBnNet(nn.Cell):
    """Convs at several depths: a direct attribute, inside a SequentialCell and inside a CellList."""

    def __init__(self, num_classes=4, width=8):
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, pad_mode="pad", padding=1)
        self.stem_bn = nn.BatchNorm2d(width)
        self.body = nn.SequentialCell([nn.Conv2d(width, width, 3, stride=2, has_bias=True),
                                       nn.BatchNorm2d(width), nn.ReLU()])
        self.heads = nn.CellList([nn.Conv2d(width, width, 3, group=width, pad_mode="valid"),
                                  nn.BatchNorm2d(width)])
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Dense(width, num_classes)

    def construct(self, x):
        x = self.relu(self.stem_bn(self.stem(x)))
        x = self.body(x)
        x = self.relu(self.heads[1](self.heads[0](x)))
        return self.fc(self.flatten(self.pool(x)))


def batches(num_samples=32, image_size=8, num_classes=4, batch_size=8, seed=0):
    """A learnable task: the class is the quadrant of the image holding a bright square."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, num_samples).astype(np.int32)
    images = rng.normal(0, 0.3, (num_samples, 3, image_size, image_size)).astype(np.float32)
    half = image_size // 2
    for image, label in zip(images, labels):
        row, col = divmod(int(label), 2)
        image[:, row * half:(row + 1) * half, col * half:(col + 1) * half] += 1.5
    dataset = ds.NumpySlicesDataset({"image": images, "label": labels}, shuffle=False)
    return dataset.batch(batch_size), Tensor(images), labels


def randomly_searched(make_network, config, seed=0):
    """SLB (``config``) applied to ``make_network()`` with random logits (every candidate in use) and
    observed activation ranges, in evaluation mode; the same network for the same arguments.
    Returns (algo, network, images)."""
    ms.set_seed(seed)
    algo = SlbQuantAwareTraining(config)
    network = algo.apply(make_network())
    rng = np.random.default_rng(seed)
    for param in network.get_parameters():
        if param.name.endswith("weight_logits"):
            param.set_data(Tensor(rng.normal(size=param.shape).astype(np.float32)))
    _, images, _ = batches(num_samples=8)
    network.set_train(True)
    network(images)
    network.set_train(False)
    return algo, network, images


def train_model(network, dataset, learning_rate=0.05):
    loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    optimizer = nn.Momentum(network.trainable_params(), learning_rate, 0.9)
    return ms.Model(network, loss, optimizer, metrics={"acc"})


class NoDeepcopyBlock(nn.Cell):
    """A third-party style block that refuses to be deep-copied (as some mindcv Cells do)."""

    def __init__(self, width):
        super().__init__()
        self.conv = nn.Conv2d(width, width, 1, has_bias=True)

    def __deepcopy__(self, memo):
        raise TypeError("this block cannot be deep-copied")

    def construct(self, x):
        return self.conv(x)


class ContainersNet(nn.Cell):
    """Convs in every container kind, nested, plus one conv shared by two paths (as SqueezeNet's
    final conv is) and a block that cannot be deep-copied."""

    def __init__(self, num_classes=4, width=4):
        super().__init__()
        self.features = nn.SequentialCell(OrderedDict([
            ("conv0", nn.Conv2d(3, width, 3)),
            ("norm0", nn.BatchNorm2d(width)),
            ("block", nn.SequentialCell([nn.Conv2d(width, width, 3), nn.ReLU()])),
        ]))
        self.branches = nn.CellList([nn.Conv2d(width, width, 1), nn.SequentialCell([nn.Conv2d(width, width, 3)])])
        self.side = nn.CellDict({"deep": nn.Conv2d(width, width, 3)})
        self.final_conv = nn.Conv2d(width, num_classes, 1, has_bias=True)
        self.classifier = nn.SequentialCell([nn.ReLU(), self.final_conv])
        self.frozen = NoDeepcopyBlock(width)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()

    def construct(self, x):
        x = self.features(x)
        x = self.branches[0](x) + self.branches[1](x) + self.side["deep"](x)
        x = self.frozen(x)
        return self.flatten(self.pool(self.classifier(x)))


class MyConv(nn.Cell):
    """A user's own convolution type, unknown to the package (the example of docs/any_network.md, "Layer registry")."""

    def __init__(self, weight):
        super().__init__()
        self.weight = Parameter(weight, name="weight")

    def construct(self, x):
        return ops.conv2d(x, self.weight, pad_mode="same")


class MyConvSlbQuant(SlbQuantLayer):
    def __init__(self, conv, num_bits, act_quantizer=None, weight_scale=False):
        super().__init__(conv.weight, num_bits, act_quantizer, weight_scale)

    def compute(self, x, weight):
        return ops.conv2d(x, weight, pad_mode="same")
