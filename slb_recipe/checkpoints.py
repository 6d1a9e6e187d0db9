"""The recipe's checkpoints: where a run keeps them, their names, the record of the settings each
holds, and reading, checking and loading them."""
import os
import re

import mindspore as ms

from slb_recipe.config import parse_layer_bits, split_patterns
from slb_recipe.errors import RecipeError
from slb_recipe.files import atomic_path
from slb_recipe.quant_type import FLOAT, QUANT_TYPE_PATTERN, parse_quant_type

CHECKPOINT_NAME = re.compile(rf"^resnet18_(?P<quant>{QUANT_TYPE_PATTERN})-(?P<epoch>\d+)\.ckpt$")
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
    with atomic_path(path, path[:-len(".ckpt")] + PARTIAL_INFIX + "ckpt") as temporary:
        ms.save_checkpoint(cell, temporary, append_dict=append_dict)


def checkpoint_record(config):
    """What a checkpoint of this run records about the network it holds."""
    keys = RECORD_KEYS + (() if parse_quant_type(config.quant_type).is_float else SLB_RECORD_KEYS)
    return {key: CANONICAL_RECORD.get(key, lambda value: value)(getattr(config, key)) for key in keys}


def read_checkpoint(path, config, record=None, source="checkpoint", wanted="this run has"):
    """The parameters of the checkpoint at path, refused when its record differs from `record`
    (default: checkpoint_record(config)). Errors name the file as `source` (the config key it
    came from, where it came from one) and the record's value as what `wanted`.

    Checkpoints without a record (written before it existed) are left to load_into_network's checks.
    """
    param_dict = _load(path, source=source)
    for key, expected in (checkpoint_record(config) if record is None else record).items():
        recorded = _recorded_value(param_dict, key)
        if recorded is not None and recorded != expected:
            raise RecipeError(f"{source} '{path}' was trained with {key} {_shown(recorded)}, "
                              f"{wanted} {key} {_shown(expected)}")
    return param_dict


def _load(path, choice_func=None, source="checkpoint"):
    """ms.load_checkpoint (the entries choice_func accepts), failing with one line naming the file."""
    if not os.path.isfile(path):
        raise RecipeError(f"{source} '{path}' is not a file")
    try:
        return ms.load_checkpoint(path, choice_func=choice_func)
    except (ValueError, RuntimeError) as error:  # MindSpore's messages blame filters or name no cause
        raise RecipeError(f"{source} '{path}' is not a readable MindSpore checkpoint "
                          f"({type(error).__name__})") from error


def _recorded_value(param_dict, key):
    """A record entry as saved: strings come back as str, numbers as a one-element Parameter."""
    if key not in param_dict:
        return None
    value = param_dict[key]
    return value if isinstance(value, str) else value.asnumpy().item()


def _shown(value):
    return repr(value) if value == "" else value


def read_float_start(config):
    """The parameters of config.float_checkpoint, which must be a W32 checkpoint of this recipe (same
    width, class_num and dataset), or None when it is not set."""
    if not config.float_checkpoint:
        return None
    return read_checkpoint(config.float_checkpoint, config, {**checkpoint_record(config), "quant_type": FLOAT},
                           source="float_checkpoint", wanted="a float start needs")


def checkpoint_progress(path, source="checkpoint"):
    """(quant_type, epoch reached) a recipe checkpoint records, each None where it records none;
    reads those two entries only."""
    entries = _load(path, lambda name: name in ("quant_type", EPOCH_KEY), source)
    return _recorded_value(entries, "quant_type"), epoch_reached(entries)


def epoch_reached(param_dict):
    """The epoch a recipe checkpoint records as completed, or None for another checkpoint."""
    return int(param_dict[EPOCH_KEY].asnumpy()) if EPOCH_KEY in param_dict else None


def load_into_network(net, param_dict, path, source="checkpoint"):
    """Load a checkpoint that must cover every parameter of net (a mismatch means another recipe);
    errors name the file as `source`, as read_checkpoint's do."""
    _check_shapes(net, param_dict, path, source)
    missing, _ = ms.load_param_into_net(net, param_dict)
    if missing:
        raise RecipeError(f"{source} '{path}' lacks {len(missing)} parameters of this network "
                          f"(e.g. {missing[0]}): was it trained with another quant_type, width or class_num?")


def _check_shapes(net, param_dict, path, source):
    """Refuse before loading: MindSpore's own shape error names neither the checkpoint nor a likely cause."""
    for param in net.get_parameters():
        stored = param_dict.get(param.name)
        if stored is not None and not isinstance(stored, str) and tuple(stored.shape) != tuple(param.shape):
            raise RecipeError(f"{source} '{path}' holds {param.name} of shape {tuple(stored.shape)}, this network "
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
