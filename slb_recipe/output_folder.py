"""A training run's claim on its checkpoint folder: writable, exclusive, free of interrupted saves.

Two runs writing one folder would interleave checkpoint renames and deletions; the claim is an
exclusive flock on a lock file in the folder, which the kernel also releases when a run dies.
"""
import contextlib
import fcntl
import glob
import os

from slb_recipe.checkpoints import PARTIAL_INFIX, saved_checkpoints
from slb_recipe.errors import RecipeError

LOCK_NAME = ".train.lock"


@contextlib.contextmanager
def claimed_folder(folder):
    """Hold folder for the duration of a training run.

    Fails with one line when the folder cannot be created or written, or another run holds it.
    Removes partially written checkpoints when the claim starts and when the run fails.
    """
    lock = _open_lock(folder)
    try:
        _lock_exclusively(lock, folder)
        remove_partial_files(folder)
        try:
            yield folder
        except BaseException:
            remove_partial_files(folder)
            raise
    finally:
        lock.close()


def _open_lock(folder):
    try:
        os.makedirs(folder, exist_ok=True)
        return open(os.path.join(folder, LOCK_NAME), "a", encoding="utf-8")  # pylint: disable=consider-using-with
    except OSError as error:
        raise RecipeError(f"checkpoint folder '{folder}' (output_path/checkpoint_path) is not a writable folder: "
                          f"{error.strerror}") from error


def _lock_exclusively(lock, folder):
    try:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as error:
        lock.close()
        raise RecipeError(f"checkpoint folder '{folder}' is in use by another training run (it holds "
                          f"{LOCK_NAME}): wait for that run or choose another output_path") from error


def remove_partial_files(folder):
    """Delete checkpoints whose save never finished; under the claim no other run is writing them."""
    for path in glob.glob(os.path.join(glob.escape(folder), f"*{PARTIAL_INFIX}*")):
        os.remove(path)


def refuse_other_runs_checkpoints(folder, quant_type, resumed, has_trained_epoch):
    """A run writes its checkpoints only where they replace none of another run's, and where eval.py
    and export.py will find its own as the latest: a new run needs a folder without checkpoints of its
    quant_type, a resumed one none beyond the epoch it resumes from."""
    found = saved_checkpoints(folder, quant_type)
    later = [path for epoch, path in found if epoch > has_trained_epoch]
    if not resumed and found:
        raise RecipeError(f"checkpoint folder '{folder}' holds {os.path.basename(found[-1][1])} of an earlier "
                          f"{quant_type} run: resume it (pre_trained {found[-1][1]}) or choose another output_path")
    if later:
        raise RecipeError(f"checkpoint folder '{folder}' holds {os.path.basename(later[-1])}, beyond epoch "
                          f"{has_trained_epoch} that pre_trained reached, which this run would overwrite: move it "
                          "out or choose another output_path")
