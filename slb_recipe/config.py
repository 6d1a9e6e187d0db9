"""Recipe configuration: a YAML file plus `--key value` command-line overrides of any key.

Every key is declared once in OPTIONS with its type, default (the value of Golden Stick's SLB recipe) and the
values it allows, so a typo, a wrong type or a value outside its set is caught before any work
starts, with a one-line message naming the key and what it accepts.
"""
import difflib
import math
import os
import re
from dataclasses import dataclass
from types import SimpleNamespace

import yaml

from slb_recipe.dataset import DATASETS
from slb_recipe.export_formats import EXPORT_FORMATS
from slb_recipe.lr_schedule import DECAY_MODES
from slb_recipe.quant_type import QUANT_TYPES
from slb_recipe.resnet import CONV_INITS, DENSE_INITS

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
DEFAULT_CONFIG_PATH = os.path.join(CONFIG_DIR, "resnet18_digits_config.yaml")



class ConfigError(ValueError):
    """A configuration value that the recipe cannot use; the message is one line."""


@dataclass(frozen=True)
class Option:
    kind: type
    default: object
    help: str
    choices: tuple = None
    minimum: float = None
    maximum: float = None

    def describe(self):
        """What the option allows, in words, for error messages and --help."""
        if self.choices:
            return "one of " + ", ".join(str(choice) for choice in self.choices)
        text = {bool: "True or False", int: "an integer", float: "a finite number", str: "a string"}[self.kind]
        if self.minimum is not None:
            text += f" >= {self.minimum}"
        if self.maximum is not None:
            text += f" <= {self.maximum}"
        return text


OPTIONS = {
    # data
    "dataset": Option(str, "cifar10", "which data set data_path holds", DATASETS),
    "data_path": Option(str, "", "cifar10: folder with data_batch_1..5.bin and test_batch.bin; "
                                 "imagenet: folder with train/ and val/; fashion_mnist: folder with the four "
                                 "idx files (train-images-idx3-ubyte.gz, ...); digits: unused"),
    "class_num": Option(int, 10, "number of classes", minimum=2),
    "batch_size": Option(int, 32, "batch size per worker", minimum=1),
    "train_image_size": Option(int, 224, "training image side in pixels", minimum=8),
    "eval_image_size": Option(int, 224, "evaluation image side in pixels", minimum=8),
    "train_num_samples": Option(int, 0, "use only this many training samples (0: all)", minimum=0),
    "eval_num_samples": Option(int, 0, "use only this many evaluation samples (0: all)", minimum=0),
    "shuffle": Option(bool, True, "shuffle the training data every epoch"),
    "num_parallel_workers": Option(int, 2, "data-pipeline worker threads", minimum=1),
    # model
    "width": Option(int, 64, "channels of ResNet18's first stage (64: the standard network)", minimum=1),
    "conv_init": Option(str, "XavierUniform", "initializer of conv weights", tuple(CONV_INITS)),
    "dense_init": Option(str, "TruncatedNormal", "initializer of the classifier", tuple(DENSE_INITS)),
    # quantization
    "quant_type": Option(str, "W1", "weight bits (W32: float baseline) and optional 8-bit activations; "
                                    "_STE: a straight-through-estimator baseline instead of SLB", QUANT_TYPES),
    "enable_bn_calibration": Option(bool, False, "re-estimate BN statistics with discrete weights"),
    "t_start_val": Option(float, 1.0, "initial temperature", minimum=1e-12),
    "t_start_time": Option(float, 0.2, "fraction of epochs after which the temperature rises", minimum=0, maximum=1),
    "t_end_time": Option(float, 0.6, "fraction of epochs after which the temperature stops rising",
                         minimum=0, maximum=1),
    "t_factor": Option(float, 1.2, "temperature growth factor per epoch (Golden Stick's), used while t_end_val "
                                   "is 0", minimum=1e-12),
    "t_end_val": Option(float, 0.0, "temperature reached when training turns hard, whatever epoch_size "
                                    "(0: rise by t_factor instead)", minimum=0),
    # False: the recipe reproduces Golden Stick's (bare candidates; BatchNorm follows every conv).
    "enable_weight_scale": Option(bool, False, "learn a per-output-channel scale of the candidate values "
                                               "(False: Golden Stick's bare candidates)"),
    "search_start": Option(str, "float", "where SLB's search starts: 'float' (the soft weight is the float "
                                         "network's, for a trained network) or 'random' (every candidate about "
                                         "equally likely, for training from scratch)", ("float", "random")),
    "search_dtype": Option(str, "float32", "how SLB's logits and their momentum are stored: 'float32', or "
                                           "'bfloat16' for half their memory (needs fused_logit_update)",
                           ("float32", "bfloat16")),
    "enable_dense_quant": Option(bool, False, "quantize the classifier (nn.Dense) too"),
    "exclude_layers": Option(str, "", "comma-separated fnmatch patterns of layers kept in float, e.g. 'conv1,end_point'"),
    "layer_bits": Option(str, "", "comma-separated pattern:bits pairs (bits 1, 2 or 4) overriding quant_type's "
                                  "weight bits, e.g. 'conv1:4,layer4.*:2'; the first matching pattern wins"),
    # optimisation
    "epoch_size": Option(int, 100, "total epochs of the run", minimum=1),
    "loss_scale": Option(float, 1024.0, "fixed loss scale", minimum=1e-12),
    "momentum": Option(float, 0.9, "SGD momentum", minimum=0, maximum=1),
    "fused_logit_update": Option(bool, True, "SLB's logits take their Momentum step inside the fused CPU kernel "
                                             "(mindspore_slb.SlbMomentum; nn.Momentum when False or under "
                                             "run_distribute)"),
    "weight_decay": Option(float, 1e-4, "weight decay of conv and dense weights", minimum=0),
    "warmup_epochs": Option(int, 5, "epochs of linear warmup from lr_init to lr_max", minimum=0),
    "lr_decay_mode": Option(str, "poly", "learning-rate decay after warmup", DECAY_MODES),
    "lr_init": Option(float, 0.01, "learning rate at the first step", minimum=0),
    "lr_max": Option(float, 0.1, "learning rate at the end of warmup", minimum=0),
    "lr_end": Option(float, 0.00001, "learning rate at the last step", minimum=0),
    "use_label_smooth": Option(bool, True, "smooth the one-hot labels"),
    "label_smooth_factor": Option(float, 0.1, "label smoothing amount", minimum=0, maximum=0.999),
    # MindSpore's seeds are unsigned 32-bit integers.
    "seed": Option(int, 1, "random seed of initialisation and data order", minimum=0, maximum=2 ** 32 - 1),
    # run
    "device_target": Option(str, "auto", "auto: GPU when MindSpore can use one, else CPU", ("auto", "CPU", "GPU")),
    "mode_name": Option(str, "GRAPH", "MindSpore execution mode", ("GRAPH", "PYNATIVE")),
    "run_distribute": Option(bool, False, "data-parallel training under msrun"),
    "device_num": Option(int, 1, "data-parallel workers expected (1: whatever msrun starts)", minimum=1),
    "eval_interval": Option(int, 0, "evaluate every this many epochs during training (0: never)", minimum=0),
    "progress_interval_s": Option(float, 30.0, "within an epoch, print a progress line every this many seconds "
                                               "(0: only the epoch summary)", minimum=0),
    "plots": Option(bool, True, "train.py and sweep.py draw PNG figures into output_path (needs matplotlib)"),
    # sweep.py
    "sweep_quant_types": Option(str, "W32,W4,W2,W1", "sweep.py: comma-separated quant_type values to train"),
    "sweep_seeds": Option(str, "1", "sweep.py: comma-separated seeds, each quant_type trained once per seed"),
    # checkpoints and outputs
    "output_path": Option(str, "./output", "folder for checkpoints, logs and results"),
    "checkpoint_path": Option(str, "checkpoint", "checkpoint folder, relative to output_path"),
    "save_checkpoint": Option(bool, True, "save checkpoints during training"),
    "save_checkpoint_epochs": Option(int, 5, "save a checkpoint every this many epochs (and at the end)", minimum=1),
    "keep_checkpoint_max": Option(int, 10, "checkpoints kept per run", minimum=1),
    "pre_trained": Option(str, "", "checkpoint to resume from (continues at the epoch it records)"),
    "float_checkpoint": Option(str, "", "W32 checkpoint of this recipe (same width, class_num and dataset) whose "
                                        "network SLB or STE starts from: quantizing a trained network"),
    "float_epochs": Option(int, 0, "SLB and STE runs without float_checkpoint: the first this many of the epoch_size "
                                   "epochs train the float network, then SLB or STE starts from it as from "
                                   "float_checkpoint; one learning-rate and temperature schedule spans the run "
                                   "(0: quantized from the first epoch; W32 runs ignore it)", minimum=0),
    "has_trained_epoch": Option(int, 0, "epochs already trained, for a checkpoint that records none", minimum=0),
    "checkpoint_file_path": Option(str, "", "checkpoint for eval.py/export.py (empty: the run's latest)"),
    "file_name": Option(str, "resnet18_slb", "exported file name, without extension (MINDIR_PACKED and "
                                             "ONNX_PACKED add _packed)"),
    "file_format": Option(str, "MINDIR", "export format: " + ", ".join(
        f"{name} ({export_format.description})" for name, export_format in EXPORT_FORMATS.items()),
        tuple(EXPORT_FORMATS)),
}

_TRUE_WORDS = ("true", "yes", "1")
_FALSE_WORDS = ("false", "no", "0")


def _convert(key, value):
    """Convert a YAML or command-line value to the option's type, or raise ConfigError."""
    option = OPTIONS[key]
    if isinstance(value, str) and option.kind is not str:
        value = _parse_text(key, option, value)
    # bool is an int subclass: True must not pass as an integer, nor 1 as a flag.
    if option.kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if type(value) is not option.kind:  # pylint: disable=unidiomatic-typecheck
        raise ConfigError(f"config key '{key}' must be {option.describe()}, got {value!r}")
    # NaN passes every comparison with a bound, and no key means anything by infinity.
    if option.kind is float and not math.isfinite(value):
        raise ConfigError(f"config key '{key}' must be {option.describe()}, got {value!r}")
    if option.choices and value not in option.choices:
        raise ConfigError(f"config key '{key}' must be {option.describe()}, got {value!r}")
    if (option.minimum is not None and value < option.minimum) or \
            (option.maximum is not None and value > option.maximum):
        raise ConfigError(f"config key '{key}' must be {option.describe()}, got {value!r}")
    return value


def _parse_text(key, option, text):
    lowered = text.strip().lower()
    if option.kind is bool:
        if lowered in _TRUE_WORDS or lowered in _FALSE_WORDS:
            return lowered in _TRUE_WORDS
    else:
        try:
            return option.kind(lowered)
        except ValueError:
            pass
    raise ConfigError(f"config key '{key}' must be {option.describe()}, got {text!r}")


def _check_known(key):
    if key not in OPTIONS:
        close = difflib.get_close_matches(key, OPTIONS, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(f"unknown config key '{key}'{hint}; known keys: {', '.join(OPTIONS)}")


def _split_command_line(argv):
    """Turn ['--a', '1', '--b=2'] into [('a', '1'), ('b', '2')]."""
    pairs = []
    tokens = list(argv)
    while tokens:
        token = tokens.pop(0)
        if not token.startswith("--") or token == "--":
            raise ConfigError(f"expected --key value, got {token!r}")
        key, has_value, value = token[2:].partition("=")
        if not has_value:
            if not tokens:
                raise ConfigError(f"config key '{key}' has no value on the command line")
            value = tokens.pop(0)
        pairs.append((key, value))
    return pairs


class _DuplicateKey(yaml.YAMLError):
    """A mapping gives one key twice: PyYAML would keep the last value without a word."""

    def __init__(self, key, first_line, second_line):
        super().__init__(f"key {key!r} twice")
        self.key, self.lines = key, (first_line, second_line)


class _UniqueKeyLoader(yaml.SafeLoader):  # pylint: disable=too-many-ancestors
    """yaml.safe_load's loader, refusing a key given twice in one mapping."""

    def construct_mapping(self, node, deep=False):
        first_lines = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, str):
                continue  # _read_yaml refuses it, naming it
            line = key_node.start_mark.line + 1
            if key in first_lines:
                raise _DuplicateKey(key, first_lines[key], line)
            first_lines[key] = line
        return super().construct_mapping(node, deep=deep)


def _read_yaml(path):
    if not os.path.isfile(path):
        raise ConfigError(f"config_path '{path}' is not a file")
    try:
        with open(path, encoding="utf-8") as stream:
            content = yaml.load(stream, Loader=_UniqueKeyLoader) or {}  # a SafeLoader: no arbitrary objects
    except UnicodeDecodeError as error:
        raise ConfigError(f"config_path '{path}' is not UTF-8 text (byte {error.start})") from error
    except _DuplicateKey as error:
        raise ConfigError(f"config_path '{path}' gives the key '{error.key}' twice (lines {error.lines[0]} and "
                          f"{error.lines[1]}); give each key once") from error
    except yaml.YAMLError as error:
        raise ConfigError(f"config_path '{path}' is not valid YAML: {str(error).splitlines()[0]}") from error
    if not isinstance(content, dict):
        raise ConfigError(f"config_path '{path}' must hold a mapping of key: value")
    for key in content:
        if not isinstance(key, str):
            raise ConfigError(f"config_path '{path}' has the key {key!r}; keys must be option names")
    return content


def split_patterns(text):
    """'a, b.*' -> ['a', 'b.*']; '' -> []."""
    return [item.strip() for item in text.split(",") if item.strip()]


def parse_layer_bits(text):
    """'conv1:4,layer4.*:2' -> {'conv1': 4, 'layer4.*': 2}, or ConfigError naming the bad pair."""
    bits = {}
    for pair in split_patterns(text):
        pattern, _, value = pair.rpartition(":")
        if not pattern or value.strip() not in ("1", "2", "4"):
            raise ConfigError(f"config key 'layer_bits' must be comma-separated pattern:bits pairs with bits "
                              f"1, 2 or 4, got {pair!r} in {text!r}")
        bits[pattern.strip()] = int(value)
    return bits


# The characters MindSpore's export accepts in a file's path (mindspore._checkparam's
# check_file_name_by_regular); anything else fails there, after the checkpoint was loaded.
MINDIR_PATH_CHARACTERS = re.compile(r"[0-9a-zA-Z@_\-.:/\\]+")
MINDIR_PATH_ALLOWED = "letters, digits and @ _ - . : / \\"


def _check_output_names(values):
    """file_name must name a visible file of output_path; a MINDIR's path must suit MindSpore's export."""
    file_name = values["file_name"]
    if not file_name or file_name.startswith(".") or "/" in file_name:
        raise ConfigError(f"config key 'file_name' must be a file name not starting with '.' and without '/', "
                          f"got {file_name!r}")
    if values["file_format"].startswith("MINDIR"):
        for key in ("output_path", "file_name"):
            if not MINDIR_PATH_CHARACTERS.fullmatch(values[key]):
                raise ConfigError(f"config key '{key}' must hold only {MINDIR_PATH_ALLOWED} (all MindSpore's export "
                                  f"accepts for file_format {values['file_format']}; SLB accepts any), "
                                  f"got {values[key]!r}")


# Keys holding comma-separated values, each a valid value of the single-value key named beside them.
LIST_KEYS = {"sweep_quant_types": "quant_type", "sweep_seeds": "seed"}


def parse_list(key, text):
    """The values of a LIST_KEYS key, e.g. 'W32, W1' -> ['W32', 'W1']; at least one, none twice."""
    item_key = LIST_KEYS[key]
    items = split_patterns(text)
    values = []
    for item in items:
        try:
            values.append(_convert(item_key, item))
        except ConfigError:
            values.append(None)
    problem = ("nothing listed" if not values else
               f"{items[values.index(None)]!r} is not valid" if None in values else
               "a value repeats" if len(set(values)) < len(values) else None)
    if problem:
        raise ConfigError(f"config key '{key}' must be comma-separated values of '{item_key}' "
                          f"({OPTIONS[item_key].describe()}), each once, got {text!r} ({problem})")
    return values


def _check_consistency(values, given):
    parse_layer_bits(values["layer_bits"])
    _check_output_names(values)
    for key in LIST_KEYS:
        parse_list(key, values[key])
    if values["t_end_time"] < values["t_start_time"]:
        raise ConfigError(f"config key 't_end_time' must be >= t_start_time ({values['t_start_time']}), "
                          f"got {values['t_end_time']}")
    # A config file lists every key; t_factor given on the command line means the user wants it used.
    if values["t_end_val"] and "t_factor" in given:
        raise ConfigError(f"config key 't_factor' ({values['t_factor']}) is unused while t_end_val is "
                          f"{values['t_end_val']}: both set how the temperature rises (add --t_end_val 0 to rise "
                          "by t_factor)")
    if values["t_end_val"] and values["t_end_val"] < values["t_start_val"]:
        raise ConfigError(f"config key 't_end_val' must be 0 or >= t_start_val ({values['t_start_val']}), "
                          f"got {values['t_end_val']}")
    if values["warmup_epochs"] > values["epoch_size"]:
        raise ConfigError(f"config key 'warmup_epochs' must be <= epoch_size ({values['epoch_size']}), "
                          f"got {values['warmup_epochs']}")
    _check_float_epochs(values, given)
    if values["has_trained_epoch"] >= values["epoch_size"]:
        raise ConfigError(f"config key 'has_trained_epoch' must be < epoch_size ({values['epoch_size']}), "
                          f"got {values['has_trained_epoch']}")
    if values["search_dtype"] != "float32" and (not values["fused_logit_update"] or values["run_distribute"]):
        raise ConfigError(f"config key 'search_dtype' '{values['search_dtype']}' needs fused_logit_update True and "
                          f"run_distribute False (only SlbMomentum steps bfloat16 logits), got fused_logit_update "
                          f"{values['fused_logit_update']} and run_distribute {values['run_distribute']}")
    if values["dataset"] != "digits" and not values["data_path"]:
        raise ConfigError(f"config key 'data_path' must name the {values['dataset']} folder, got ''")


def _check_float_epochs(values, given):
    float_epochs = values["float_epochs"]
    if not float_epochs:
        return
    if float_epochs >= values["epoch_size"]:
        raise ConfigError(f"config key 'float_epochs' must be < epoch_size ({values['epoch_size']}), leaving the "
                          f"quantized network at least one epoch, got {float_epochs}")
    # A config file lists every key; a float_checkpoint on the command line means the user has the network.
    if values["float_checkpoint"]:
        hint = " (add --float_epochs 0 to start from it)" if "float_checkpoint" in given else ""
        raise ConfigError(f"config key 'float_epochs' ({float_epochs}) trains a float network while float_checkpoint "
                          f"'{values['float_checkpoint']}' gives one{hint}")
    if values["search_start"] == "random":
        raise ConfigError(f"config key 'float_epochs' ({float_epochs}) needs search_start 'float': a random start "
                          "would discard the float network those epochs train")


def _resolve(argv):
    """The config file and every key's value. Later sources win: option defaults, then the YAML
    file (`--config_path FILE`, default: the digits recipe), then the command line. Returns the
    config file, the values and the keys the command line set."""
    pairs = _split_command_line(argv or [])
    config_path = DEFAULT_CONFIG_PATH
    for key, value in pairs:
        if key == "config_path":
            config_path = value
    values = {key: option.default for key, option in OPTIONS.items()}
    sources = list(_read_yaml(config_path).items()) + [pair for pair in pairs if pair[0] != "config_path"]
    for key, value in sources:
        _check_known(key)
        values[key] = _convert(key, value)
    return config_path, values, {key for key, _ in pairs}


def load_config(argv=None):
    """Build the configuration from `--config_path FILE` (default: the digits recipe) and overrides."""
    config_path, values, given = _resolve(argv)
    _check_consistency(values, given)
    return SimpleNamespace(config_path=config_path, **values)


def usage(argv=None):
    """Text listing every key, what it allows and the value a run with these arguments would use
    (the config file's where it sets one, not the option's own default)."""
    config_path, values, _ = _resolve(argv)
    lines = [f"options (YAML keys, each can be given as --key value); each shows its value from {config_path}"
             f"{' and the command line' if argv else ''}:",
             f"  --config_path FILE (default: the digits recipe, {DEFAULT_CONFIG_PATH})"]
    for key, option in OPTIONS.items():
        lines.append(f"  --{key}: {option.help}; {option.describe()}; value {values[key]!r}")
    return "\n".join(lines)


def parse_args(argv):
    """load_config for a script's main(): --help prints the keys, a bad value exits with one line."""
    argv = list(argv)
    try:
        if "-h" in argv or "--help" in argv:
            print(usage([token for token in argv if token not in ("-h", "--help")]))
            raise SystemExit(0)
        return load_config(argv)
    except ConfigError as error:
        raise SystemExit(f"error: {error}") from None


def with_overrides(config, **overrides):
    """A copy of config with some keys replaced by values known to be valid."""
    return SimpleNamespace(**{**vars(config), **overrides})
