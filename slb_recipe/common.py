"""What train.py, eval.py, export.py and sweep.py share: runtime set-up, the (quantized)
network, data splits, checkpoints and top-k evaluation."""
import os
import re
import sys
from types import SimpleNamespace

import mindspore as ms
import mindspore.dataset as ds
import mindspore.nn as nn
from mindspore.communication import get_group_size, get_rank, init

from slb_recipe.config import parse_args, parse_layer_bits, split_patterns
from slb_recipe.dataset import DataPathError, create_dataset
from slb_recipe.resnet import resnet18

CHECKPOINT_NAME = re.compile(r"^resnet18_(?P<quant>W\d+(A8|_STE)?)-(?P<epoch>\d+)\.ckpt$")
STE_SUFFIX = "_STE"
# A checkpoint is written under this infix first, then renamed; a leftover one is an interrupted save.
PARTIAL_INFIX = ".partial."
# Key under which a checkpoint records the last epoch it completed (the epoch reached).
EPOCH_KEY = "epoch_num"
# Config keys a checkpoint records: a network of other values cannot use its parameters.
RECORD_KEYS = ("quant_type", "width", "class_num", "dataset")
# Recorded too where SLB is applied (not W32): the keys that decide which parameters SLB gives the network.
# A scale the run lacks would otherwise be left unloaded without a word.
SLB_RECORD_KEYS = ("enable_weight_scale", "enable_dense_quant", "exclude_layers", "layer_bits")
# Recorded in a canonical form, so that spellings of the same setting compare equal.
CANONICAL_RECORD = {
    "exclude_layers": lambda text: ",".join(split_patterns(text)),
    "layer_bits": lambda text: ",".join(f"{pattern}:{bits}" for pattern, bits in parse_layer_bits(text).items()),
}
TOPK_METRICS = ("top_1_accuracy", "top_5_accuracy")


class RecipeError(RuntimeError):
    """A problem with the run's inputs that the user can fix; the message is one line."""


def script_main(run, argv=None):
    """Entry point of a recipe script: parse the configuration, run, and turn the user's errors
    (bad data path, mismatched checkpoint, diverged loss) into a one-line exit message."""
    config = fit_workers_to_machine(parse_args(sys.argv[1:] if argv is None else argv))
    try:
        return run(config)
    except (RecipeError, DataPathError) as error:
        raise SystemExit(f"error: {error}") from None


def fit_workers_to_machine(config):
    """num_parallel_workers capped at the CPU count: MindSpore refuses more workers than CPUs."""
    cpus = os.cpu_count() or 1
    if config.num_parallel_workers <= cpus:
        return config
    print(f"num_parallel_workers {config.num_parallel_workers} lowered to {cpus}, the CPU count of this machine")
    return with_overrides(config, num_parallel_workers=cpus)


def with_overrides(config, **overrides):
    """A copy of config with some keys replaced by values known to be valid."""
    return SimpleNamespace(**{**vars(config), **overrides})


def resolve_device_target(device_target):
    """'auto' becomes GPU when MindSpore can use one here, else CPU; GPU where it cannot is refused."""
    gpu_usable = ms.hal.is_available("GPU")
    if device_target == "auto":
        return "GPU" if gpu_usable else "CPU"
    if device_target == "GPU" and not gpu_usable:
        raise RecipeError("device_target is GPU but this MindSpore cannot use a GPU here: "
                          "use device_target CPU or auto")
    return device_target


def setup_runtime(config, distributed=False):
    """Set mode, device and seeds; join the data-parallel group when asked.

    Returns (rank_id, rank_size); (0, 1) when not distributed.
    """
    target = resolve_device_target(config.device_target)
    ms.set_context(mode=ms.GRAPH_MODE if config.mode_name == "GRAPH" else ms.PYNATIVE_MODE)
    # MindSpore refuses set_device once its runtime started, even for the same device (the
    # scripts' main() functions run one after another in one process in the tests and the sweep).
    if ms.get_context("device_target") != target:
        ms.set_device(target)
    ms.set_seed(config.seed)
    ds.config.set_seed(config.seed)
    if not distributed:
        return 0, 1
    init()
    rank_id, rank_size = get_rank(), get_group_size()
    if config.device_num not in (1, rank_size):
        raise RecipeError(f"device_num is {config.device_num} but msrun started {rank_size} workers")
    ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True,
                                 device_num=rank_size)
    return rank_id, rank_size


def create_split(config, do_train, rank_id=0, rank_size=1, first_epoch=0):
    """The training or evaluation pipeline the config describes; training starts at first_epoch's order."""
    return create_dataset(
        config.dataset, config.data_path, do_train, config.batch_size,
        config.train_image_size if do_train else config.eval_image_size,
        num_samples=config.train_num_samples if do_train else config.eval_num_samples,
        shuffle=config.shuffle, num_parallel_workers=config.num_parallel_workers,
        rank_id=rank_id, rank_size=rank_size, seed=config.seed, first_epoch=first_epoch,
        class_num=config.class_num)


def weight_bits(quant_type):
    """'W2A8' -> 2; 'W1_STE' -> 1; 'W32' (the float baseline) -> 32."""
    return int(re.match(r"W(\d+)", quant_type).group(1))


def build_slb_algorithm(config, has_trained_epoch):
    """The SLB algorithm for the config's quant_type (the straight-through baseline for W*_STE), or
    None for the float baseline W32."""
    if config.quant_type == "W32":
        return None
    # pylint: disable-next=import-outside-toplevel
    from mindspore_slb import WEIGHT_DTYPES, QuantDtype, SlbQuantAwareTraining
    return SlbQuantAwareTraining({
        "quant_dtype": [QuantDtype.INT8, WEIGHT_DTYPES[weight_bits(config.quant_type)]],
        "enable_act_quant": config.quant_type.endswith("A8"),
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
        "layer_bits": {pattern: WEIGHT_DTYPES[bits] for pattern, bits in parse_layer_bits(config.layer_bits).items()},
        "weight_search": "ste" if config.quant_type.endswith(STE_SUFFIX) else "slb",
    })


def build_network(config, has_trained_epoch=0, float_start=None):
    """ResNet18 for the config, with SLB applied unless quant_type is W32. Returns (net, algo).

    `float_start`, a W32 checkpoint's parameters (read_float_start), is loaded into the float
    network first: SLB then starts from what that network computes.

    The temperature schedule is checked here too, so that settings SLB refuses stop a run before
    any data is read.
    """
    net = resnet18(config.class_num, config.width, config.conv_init, config.dense_init)
    if float_start is not None:
        load_into_network(net, float_start, config.float_checkpoint)
    algo = build_slb_algorithm(config, has_trained_epoch)
    if algo is not None:
        # Golden Stick's algorithm (served by benchmarks/side_by_side.py's shim) has no such check.
        check_schedule = getattr(algo, "check_schedule", None)
        try:
            if check_schedule is not None:
                check_schedule()
            net = algo.apply(net)
        except ValueError as error:  # mindspore_slb's one-line messages name the key
            raise RecipeError(f"SLB refuses these settings: {error}") from error
    return net, algo


def checkpoint_dir(config, rank_id=0):
    """Where a run writes checkpoints; data-parallel runs keep one folder per rank."""
    folder = os.path.join(config.output_path, config.checkpoint_path)
    return os.path.join(folder, f"rank_{rank_id}") if config.run_distribute else folder


def checkpoint_name(quant_type, epoch):
    return f"resnet18_{quant_type}-{epoch}.ckpt"


def saved_checkpoints(folder, quant_type):
    """Completed checkpoints of quant_type in folder, as (epoch, path), oldest first."""
    if not os.path.isdir(folder):
        return []
    found = []
    for name in os.listdir(folder):
        match = CHECKPOINT_NAME.match(name)
        if match and match.group("quant") == quant_type:
            found.append((int(match.group("epoch")), os.path.join(folder, name)))
    return sorted(found)


def save_checkpoint_atomically(cell, path, append_dict):
    """Write to a temporary name and rename, so an interrupted save never replaces a good file."""
    temporary = path[:-len(".ckpt")] + PARTIAL_INFIX + "ckpt"
    ms.save_checkpoint(cell, temporary, append_dict=append_dict)
    os.replace(temporary, path)


def checkpoint_record(config):
    """What a checkpoint of this run records about the network it holds."""
    keys = RECORD_KEYS + (SLB_RECORD_KEYS if config.quant_type != "W32" else ())
    return {key: CANONICAL_RECORD.get(key, lambda value: value)(getattr(config, key)) for key in keys}


def read_checkpoint(path, config, record=None):
    """The parameters of the checkpoint at path, refused when its record differs from `record`
    (default: checkpoint_record(config)).

    Checkpoints without a record (written before it existed) are left to load_into_network's checks.
    """
    if not os.path.isfile(path):
        raise RecipeError(f"checkpoint '{path}' is not a file")
    try:
        param_dict = ms.load_checkpoint(path)
    except (ValueError, RuntimeError) as error:  # MindSpore's messages blame filters or name no cause
        raise RecipeError(f"checkpoint '{path}' is not a readable MindSpore checkpoint "
                          f"({type(error).__name__})") from error
    for key, expected in (checkpoint_record(config) if record is None else record).items():
        recorded = _recorded_value(param_dict, key)
        if recorded is not None and recorded != expected:
            raise RecipeError(f"checkpoint '{path}' was trained with {key} {_shown(recorded)}, "
                              f"this run has {key} {_shown(expected)}")
    return param_dict


def _recorded_value(param_dict, key):
    """A record entry as saved: strings come back as str, numbers as a one-element Parameter."""
    if key not in param_dict:
        return None
    value = param_dict[key]
    return value if isinstance(value, str) else value.asnumpy().item()


def read_float_start(config):
    """The parameters of config.float_checkpoint, which must be a W32 checkpoint of this recipe (same
    width, class_num and dataset), or None when it is not set."""
    if not config.float_checkpoint:
        return None
    return read_checkpoint(config.float_checkpoint, config, {**checkpoint_record(config), "quant_type": "W32"})
def _shown(value):
    return repr(value) if value == "" else value


def epoch_reached(param_dict):
    """The epoch a recipe checkpoint records as completed, or None for another checkpoint."""
    return int(param_dict[EPOCH_KEY].asnumpy()) if EPOCH_KEY in param_dict else None


def load_into_network(net, param_dict, path):
    """Load a checkpoint that must cover every parameter of net (a mismatch means another recipe)."""
    _check_shapes(net, param_dict, path)
    missing, _ = ms.load_param_into_net(net, param_dict)
    if missing:
        raise RecipeError(f"checkpoint '{path}' lacks {len(missing)} parameters of this network "
                          f"(e.g. {missing[0]}): was it trained with another quant_type, width or class_num?")


def _check_shapes(net, param_dict, path):
    """Refuse before loading: MindSpore's own shape error names neither the checkpoint nor a likely cause."""
    for param in net.get_parameters():
        stored = param_dict.get(param.name)
        if stored is not None and not isinstance(stored, str) and tuple(stored.shape) != tuple(param.shape):
            raise RecipeError(f"checkpoint '{path}' holds {param.name} of shape {tuple(stored.shape)}, this network "
                              f"needs {tuple(param.shape)}: was it trained with another quant_type, width or "
                              "class_num?")


def resolve_checkpoint(config):
    """checkpoint_file_path, or when empty the latest checkpoint the configured run wrote."""
    if config.checkpoint_file_path:
        return config.checkpoint_file_path
    folder = checkpoint_dir(config)
    found = saved_checkpoints(folder, config.quant_type)
    if not found:
        raise RecipeError(f"no {config.quant_type} checkpoint in '{folder}'; "
                          "train first or set checkpoint_file_path")
    return found[-1][1]


def load_trained_network(config):
    """The network of config with the checkpoint eval/export should use. Returns (net, algo, path)."""
    path = resolve_checkpoint(config)
    param_dict = read_checkpoint(path, config)
    net, algo = build_network(config)
    load_into_network(net, param_dict, path)
    return net, algo, path


def loss_function(config):
    smoothing = config.label_smooth_factor if config.use_label_smooth else 0.0
    return nn.CrossEntropyLoss(reduction="mean", label_smoothing=smoothing)


def topk_metrics(class_num):
    # With fewer than five classes every label is within the top five.
    return {"top_1_accuracy": nn.Top1CategoricalAccuracy(),
            "top_5_accuracy": nn.TopKCategoricalAccuracy(min(5, class_num))}


def evaluate(net, dataset, config):
    """top_1_accuracy and top_5_accuracy of net on dataset, in inference mode."""
    net.set_train(False)
    model = ms.Model(net, loss_fn=loss_function(config), metrics=topk_metrics(config.class_num))
    result = model.eval(dataset, dataset_sink_mode=False)
    return {name: float(result[name]) for name in TOPK_METRICS}
