"""A recipe script's process: its entry point, device, execution mode, seeds and data-parallel group."""
import os
import sys

import mindspore as ms
import mindspore.dataset as ds
from mindspore.communication import get_group_size, get_rank, init

from slb_recipe.config import parse_args, with_overrides
from slb_recipe.dataset import DataPathError
from slb_recipe.errors import RecipeError


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
