"""The recipe's network: ResNet18 with SLB (or the straight-through baseline) applied as quant_type
says, fresh or with a trained checkpoint loaded."""
import mindspore_slb

from slb_recipe.checkpoints import load_into_network, read_checkpoint, resolve_checkpoint
from slb_recipe.config import parse_layer_bits, split_patterns
from slb_recipe.errors import RecipeError
from slb_recipe.quant_type import parse_quant_type
from slb_recipe.resnet import resnet18


def build_slb_algorithm(config, has_trained_epoch):
    """The SLB algorithm for the config's quant_type (the straight-through baseline for W*_STE), or
    None for the float baseline W32."""
    quant_type = parse_quant_type(config.quant_type)
    if quant_type.is_float:
        return None
    dtypes = mindspore_slb.WEIGHT_DTYPES
    return mindspore_slb.SlbQuantAwareTraining({
        "quant_dtype": [mindspore_slb.QuantDtype.INT8, dtypes[quant_type.weight_bits]],
        "enable_act_quant": quant_type.activation_bits is not None,
        "enable_bn_calibration": config.enable_bn_calibration,
        "epoch_size": config.epoch_size,
        "has_trained_epoch": has_trained_epoch,
        "t_start_val": config.t_start_val,
        "t_start_time": config.t_start_time,
        "t_end_time": config.t_end_time,
        **({"t_end_val": config.t_end_val} if config.t_end_val else {"t_factor": config.t_factor}),
        "enable_weight_scale": config.enable_weight_scale,
        "enable_dense_quant": config.enable_dense_quant,
        "exclude_layers": split_patterns(config.exclude_layers),
        "layer_bits": {pattern: dtypes[bits] for pattern, bits in parse_layer_bits(config.layer_bits).items()},
        "weight_search": quant_type.search,
        "search_start": config.search_start,
        "search_dtype": config.search_dtype,
    })


def build_network(config, has_trained_epoch=0, float_start=None):
    """ResNet18 for the config, with SLB applied unless quant_type is W32. Returns (net, algo).

    `float_start`, a W32 checkpoint's parameters (checkpoints.read_float_start), is loaded into the
    float network first: SLB then starts from what that network computes.

    The temperature schedule is checked here too, so that settings SLB refuses stop a run before
    any data is read.
    """
    net = resnet18(config.class_num, config.width, config.conv_init, config.dense_init)
    if float_start is not None:
        load_into_network(net, float_start, config.float_checkpoint, "float_checkpoint")
    algo = build_slb_algorithm(config, has_trained_epoch)
    if algo is not None:
        try:
            algo.check_schedule()
            net = algo.apply(net)
        except ValueError as error:  # mindspore_slb's one-line messages name the key
            raise RecipeError(f"SLB refuses these settings: {error}") from error
    return net, algo


def load_trained_network(config):
    """The network of config with the checkpoint eval/export should use. Returns (net, algo, path)."""
    path = resolve_checkpoint(config)
    source = "checkpoint_file_path" if config.checkpoint_file_path else "checkpoint"
    param_dict = read_checkpoint(path, config, source=source)
    net, algo = build_network(config)
    load_into_network(net, param_dict, path, source)
    return net, algo, path
