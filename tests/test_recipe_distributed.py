"""Data-parallel training: two CPU workers under msrun end with identical networks."""
import os
import shutil
import socket
import subprocess
import sys

import mindspore as ms
import numpy as np

from recipe_data import REPO_ROOT, SCRIPTS_DIR, tiny_args


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def msrun_path():
    """msrun ships with mindspore: beside this interpreter, also when its environment is not activated."""
    found = shutil.which("msrun", path=os.path.dirname(sys.executable)) or shutil.which("msrun")
    assert found, "msrun, which ships with mindspore, is neither beside the interpreter nor on PATH"
    return found


def test_two_workers_share_gradients_and_end_identical(tmp_path):
    args = tiny_args(tmp_path, quant_type="W1", run_distribute=True, mode_name="PYNATIVE", train_num_samples=16)
    command = [msrun_path(), "--worker_num=2", "--local_worker_num=2", "--master_addr=127.0.0.1",
               f"--master_port={free_port()}", f"--log_dir={tmp_path / 'logs'}", "--join=True",
               os.path.join(SCRIPTS_DIR, "train.py")] + args
    # msrun starts its workers with the `python` on PATH: this interpreter's, as in an activated environment.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [REPO_ROOT, os.environ.get("PYTHONPATH")])),
               PATH=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]))
    finished = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
                              check=False)
    logs = {rank: (tmp_path / "logs" / f"worker_{rank}.log").read_text() for rank in range(2)}
    assert finished.returncode == 0, logs[0][-3000:] + logs[1][-3000:]
    for rank, log in logs.items():
        assert f"rank {rank} of 2" in log and "epoch 2/2: loss" in log

    states = []
    for rank in range(2):
        checkpoint = tmp_path / "checkpoint" / f"rank_{rank}" / "resnet18_W1-2.ckpt"
        states.append({name: value.asnumpy() for name, value in ms.load_checkpoint(str(checkpoint)).items()
                       if not isinstance(value, str)})
    assert set(states[0]) == set(states[1])
    for name, value in states[0].items():
        np.testing.assert_array_equal(states[1][name], value, err_msg=name)
    # Each rank read its own shard, so the ranks' losses differ although their networks agree.
    first_losses = [log.split("epoch 1/2: loss ")[1].split(",")[0] for log in logs.values()]
    assert first_losses[0] != first_losses[1]
