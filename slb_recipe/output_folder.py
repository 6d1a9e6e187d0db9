"""A training run's claim on its checkpoint folder: writable, exclusive, free of interrupted saves.

Two runs writing one folder would interleave checkpoint renames and deletions; the claim is an
exclusive flock on a lock file in the folder, which the kernel also releases when a run dies.
"""
import contextlib
import fcntl
import glob
import os

from slb_recipe.common import PARTIAL_INFIX, RecipeError

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
