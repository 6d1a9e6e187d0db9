"""ResNet18 as laid out in the ResNet18 SLB recipe of Golden Stick's documentation.

Cell and parameter names follow the network printout in Golden Stick's SLB documentation (conv1, bn1, pad, maxpool,
layer1..layer4 of ResidualBlockBase with conv1/bn1d/conv2/bn2d, flatten, end_point), so
checkpoints keep the names users of the model-zoo recipe know. `width` scales every stage
(64 is the standard network); a small width keeps tests and CPU benchmarks fast while the
topology, and therefore the SLB graph, stays that of ResNet18.
"""
import mindspore.nn as nn
import mindspore.ops as ops
from mindspore.common.initializer import HeNormal, HeUniform, Normal, TruncatedNormal, XavierUniform

STAGE_BLOCKS = (2, 2, 2, 2)
STAGE_STRIDES = (1, 2, 2, 2)
STAGE_WIDTH_MULTIPLIERS = (1, 2, 4, 8)

CONV_INITS = {
    "XavierUniform": XavierUniform,
    "HeUniform": lambda: HeUniform(mode="fan_out", nonlinearity="relu"),
    "HeNormal": lambda: HeNormal(mode="fan_out", nonlinearity="relu"),
    "TruncatedNormal": lambda: TruncatedNormal(0.02),
}
DENSE_INITS = {
    "TruncatedNormal": lambda: TruncatedNormal(0.01),
    "Normal": lambda: Normal(0.01),
    "XavierUniform": XavierUniform,
    "HeUniform": lambda: HeUniform(mode="fan_in", nonlinearity="leaky_relu"),
}


def _conv(in_channels, out_channels, kernel_size, stride, conv_init):
    return nn.Conv2d(in_channels, out_channels, kernel_size=kernel_size, stride=stride,
                     pad_mode="pad", padding=kernel_size // 2, has_bias=False,
                     weight_init=CONV_INITS[conv_init]())


def _bn(channels):
    return nn.BatchNorm2d(channels, eps=1e-4, momentum=0.9)


class ResidualBlockBase(nn.Cell):
    """Basic two-conv residual block; a 1x1 strided conv matches shapes when they change."""

    def __init__(self, in_channels, out_channels, stride, conv_init):
        super().__init__()
        self.conv1 = _conv(in_channels, out_channels, 3, stride, conv_init)
        self.bn1d = _bn(out_channels)
        self.conv2 = _conv(out_channels, out_channels, 3, 1, conv_init)
        self.bn2d = _bn(out_channels)
        self.relu = nn.ReLU()
        self.down_sample = stride != 1 or in_channels != out_channels
        if self.down_sample:
            self.down_sample_layer = nn.SequentialCell(
                [_conv(in_channels, out_channels, 1, stride, conv_init), _bn(out_channels)])

    def construct(self, x):
        identity = x
        out = self.relu(self.bn1d(self.conv1(x)))
        out = self.bn2d(self.conv2(out))
        if self.down_sample:
            identity = self.down_sample_layer(identity)
        return self.relu(out + identity)


class ResNet(nn.Cell):
    """ResNet with a 7x7 stem, four stages of residual blocks and global average pooling."""

    def __init__(self, class_num, width=64, conv_init="XavierUniform", dense_init="TruncatedNormal"):
        super().__init__()
        _check_options(class_num, width, conv_init, dense_init)
        self.conv1 = _conv(3, width, 7, 2, conv_init)
        self.bn1 = nn.BatchNorm2d(width, eps=1e-5, momentum=0.9)
        self.relu = nn.ReLU()
        # Explicit zero padding followed by a VALID pool, as in the model-zoo network.
        self.pad = nn.Pad(paddings=((0, 0), (0, 0), (1, 1), (1, 1)), mode="CONSTANT")
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, pad_mode="valid")
        in_channels = width
        for index, (blocks, stride, multiplier) in enumerate(
                zip(STAGE_BLOCKS, STAGE_STRIDES, STAGE_WIDTH_MULTIPLIERS), start=1):
            out_channels = width * multiplier
            stage = [ResidualBlockBase(in_channels, out_channels, stride, conv_init)]
            stage += [ResidualBlockBase(out_channels, out_channels, 1, conv_init) for _ in range(blocks - 1)]
            setattr(self, f"layer{index}", nn.SequentialCell(stage))
            in_channels = out_channels
        self.flatten = nn.Flatten()
        self.end_point = nn.Dense(in_channels, class_num, has_bias=True,
                                  weight_init=DENSE_INITS[dense_init](), bias_init="zeros")

    def construct(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.maxpool(self.pad(x))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = ops.mean(x, axis=(2, 3), keep_dims=True)
        return self.end_point(self.flatten(x))


def _check_options(class_num, width, conv_init, dense_init):
    for name, value in (("class_num", class_num), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if conv_init not in CONV_INITS:
        raise ValueError(f"conv_init must be one of {sorted(CONV_INITS)}, got {conv_init!r}")
    if dense_init not in DENSE_INITS:
        raise ValueError(f"dense_init must be one of {sorted(DENSE_INITS)}, got {dense_init!r}")


def resnet18(class_num=10, width=64, conv_init="XavierUniform", dense_init="TruncatedNormal"):
    """ResNet18; `width` is the channel count of the first stage (64 for the standard network)."""
    return ResNet(class_num, width, conv_init, dense_init)
