import sys
import mindspore
from mindspore import nn
from mindspore.nn import Cell
from mindspore.ops import functional as F
#
#
sys.path.insert(0, '/tmp/gs_anchor/venv/lib/python3.11/site-packages/mindspore/ops/function')
from mindspore.ops import operations as P
from mindspore.ops._primitive_cache import _get_cache_prim

def mean_opt(x, axis=None, keep_dims=False):
    compare_var = axis is None
    if compare_var:
        axis = ()
    _get_cache_prim_var = _get_cache_prim(P.ReduceMean)
    function_var_1 = _get_cache_prim_var(keep_dims)
    function_var = function_var_1(x, axis)
    return function_var
#
sys.path.insert(0, '/work/main/slb_recipe')
import mindspore.nn as nn
from slb_recipe.resnet import ResidualBlockBase

class ResidualBlockBaseOpt_7(ResidualBlockBase, nn.Cell):

    def __init__(self, obj):
        nn.Cell.__init__(self)
        for key, value in obj.__dict__.items():
            setattr(self, key, value)
        self.Conv2d = obj.Conv2d
        self.Conv2d_1 = obj.Conv2d_1

    def construct(self, x):
        identity = x
        conv1_var = self.Conv2d(x)
        bn1d_var = self.bn1d(conv1_var)
        out = self.relu(bn1d_var)
        conv2_var = self.Conv2d_1(out)
        out = self.bn2d(conv2_var)
        add_var = out + identity
        relu_var = self.relu(add_var)
        return relu_var
#
sys.path.insert(0, '/work/main/slb_recipe')

class ResidualBlockBaseOpt_6(ResidualBlockBase, nn.Cell):

    def __init__(self, obj):
        nn.Cell.__init__(self)
        for key, value in obj.__dict__.items():
            setattr(self, key, value)
        self.Conv2d_1 = obj.Conv2d_1
        self.Conv2d_2 = obj.Conv2d_2
        self.down_sample_layer._insert(1, self.Conv2d_3)
        del self.down_sample_layer[0]

    def construct(self, x):
        identity = x
        conv1_var = self.Conv2d_1(x)
        bn1d_var = self.bn1d(conv1_var)
        out = self.relu(bn1d_var)
        conv2_var = self.Conv2d_2(out)
        out = self.bn2d(conv2_var)
        identity = self.down_sample_layer(identity)
        add_var = out + identity
        relu_var = self.relu(add_var)
        return relu_var
#
sys.path.insert(0, '/work/main/slb_recipe')

class ResidualBlockBaseOpt_5(ResidualBlockBase, nn.Cell):

    def __init__(self, obj):
        nn.Cell.__init__(self)
        for key, value in obj.__dict__.items():
            setattr(self, key, value)
        self.Conv2d = obj.Conv2d
        self.Conv2d_1 = obj.Conv2d_1

    def construct(self, x):
        identity = x
        conv1_var = self.Conv2d(x)
        bn1d_var = self.bn1d(conv1_var)
        out = self.relu(bn1d_var)
        conv2_var = self.Conv2d_1(out)
        out = self.bn2d(conv2_var)
        add_var = out + identity
        relu_var = self.relu(add_var)
        return relu_var
#
sys.path.insert(0, '/work/main/slb_recipe')

class ResidualBlockBaseOpt_4(ResidualBlockBase, nn.Cell):

    def __init__(self, obj):
        nn.Cell.__init__(self)
        for key, value in obj.__dict__.items():
            setattr(self, key, value)
        self.Conv2d_1 = obj.Conv2d_1
        self.Conv2d_2 = obj.Conv2d_2
        self.down_sample_layer._insert(1, self.Conv2d_3)
        del self.down_sample_layer[0]

    def construct(self, x):
        identity = x
        conv1_var = self.Conv2d_1(x)
        bn1d_var = self.bn1d(conv1_var)
        out = self.relu(bn1d_var)
        conv2_var = self.Conv2d_2(out)
        out = self.bn2d(conv2_var)
        identity = self.down_sample_layer(identity)
        add_var = out + identity
        relu_var = self.relu(add_var)
        return relu_var
#
sys.path.insert(0, '/work/main/slb_recipe')

class ResidualBlockBaseOpt_3(ResidualBlockBase, nn.Cell):

    def __init__(self, obj):
        nn.Cell.__init__(self)
        for key, value in obj.__dict__.items():
            setattr(self, key, value)
        self.Conv2d = obj.Conv2d
        self.Conv2d_1 = obj.Conv2d_1

    def construct(self, x):
        identity = x
        conv1_var = self.Conv2d(x)
        bn1d_var = self.bn1d(conv1_var)
        out = self.relu(bn1d_var)
        conv2_var = self.Conv2d_1(out)
        out = self.bn2d(conv2_var)
        add_var = out + identity
        relu_var = self.relu(add_var)
        return relu_var
#
sys.path.insert(0, '/work/main/slb_recipe')

class ResidualBlockBaseOpt_2(ResidualBlockBase, nn.Cell):

    def __init__(self, obj):
        nn.Cell.__init__(self)
        for key, value in obj.__dict__.items():
            setattr(self, key, value)
        self.Conv2d_1 = obj.Conv2d_1
        self.Conv2d_2 = obj.Conv2d_2
        self.down_sample_layer._insert(1, self.Conv2d_3)
        del self.down_sample_layer[0]

    def construct(self, x):
        identity = x
        conv1_var = self.Conv2d_1(x)
        bn1d_var = self.bn1d(conv1_var)
        out = self.relu(bn1d_var)
        conv2_var = self.Conv2d_2(out)
        out = self.bn2d(conv2_var)
        identity = self.down_sample_layer(identity)
        add_var = out + identity
        relu_var = self.relu(add_var)
        return relu_var
#
sys.path.insert(0, '/work/main/slb_recipe')

class ResidualBlockBaseOpt_1(ResidualBlockBase, nn.Cell):

    def __init__(self, obj):
        nn.Cell.__init__(self)
        for key, value in obj.__dict__.items():
            setattr(self, key, value)
        self.Conv2d = obj.Conv2d
        self.Conv2d_1 = obj.Conv2d_1

    def construct(self, x):
        identity = x
        conv1_var = self.Conv2d(x)
        bn1d_var = self.bn1d(conv1_var)
        out = self.relu(bn1d_var)
        conv2_var = self.Conv2d_1(out)
        out = self.bn2d(conv2_var)
        add_var = out + identity
        relu_var = self.relu(add_var)
        return relu_var
#
sys.path.insert(0, '/work/main/slb_recipe')

class ResidualBlockBaseOpt(ResidualBlockBase, nn.Cell):

    def __init__(self, obj):
        nn.Cell.__init__(self)
        for key, value in obj.__dict__.items():
            setattr(self, key, value)
        self.Conv2d = obj.Conv2d
        self.Conv2d_1 = obj.Conv2d_1

    def construct(self, x):
        identity = x
        conv1_var = self.Conv2d(x)
        bn1d_var = self.bn1d(conv1_var)
        out = self.relu(bn1d_var)
        conv2_var = self.Conv2d_1(out)
        out = self.bn2d(conv2_var)
        add_var = out + identity
        relu_var = self.relu(add_var)
        return relu_var
#
sys.path.insert(0, '/work/main/slb_recipe')
from slb_recipe.resnet import ResNet

class ResNetOpt(ResNet, nn.Cell):

    def __init__(self, obj):
        nn.Cell.__init__(self)
        for key, value in obj.__dict__.items():
            setattr(self, key, value)
        self.layer1[0] = ResidualBlockBaseOpt(self.layer1[0])
        self.layer1[1] = ResidualBlockBaseOpt_1(self.layer1[1])
        self.layer2[0] = ResidualBlockBaseOpt_2(self.layer2[0])
        self.layer2[1] = ResidualBlockBaseOpt_3(self.layer2[1])
        self.layer3[0] = ResidualBlockBaseOpt_4(self.layer3[0])
        self.layer3[1] = ResidualBlockBaseOpt_5(self.layer3[1])
        self.layer4[0] = ResidualBlockBaseOpt_6(self.layer4[0])
        self.layer4[1] = ResidualBlockBaseOpt_7(self.layer4[1])
        self.Conv2d = obj.Conv2d

    def construct(self, x):
        conv1_var = self.Conv2d(x)
        bn1_var = self.bn1(conv1_var)
        x = self.relu(bn1_var)
        pad_var = self.pad(x)
        x = self.maxpool(pad_var)
        layer1_var = self.layer1(x)
        layer2_var = self.layer2(layer1_var)
        layer3_var = self.layer3(layer2_var)
        x = self.layer4(layer3_var)
        tuple_var = (2, 3)
        x = mean_opt(x, axis=tuple_var, keep_dims=True)
        flatten_var = self.flatten(x)
        end_point_var = self.end_point(flatten_var)
        return end_point_var
#