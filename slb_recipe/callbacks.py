"""Training callbacks of the recipe: per-epoch report with divergence guard, checkpoints, and
optional evaluation. Epochs are counted from the start of the whole run (has_trained_epoch plus
the epochs of this process), so a resumed run reports and saves the same epoch numbers as an
uninterrupted one."""
import math
import os
import time

import numpy as np
from mindspore import ops
from mindspore.train.callback import Callback

import mindspore_slb
from slb_recipe import plots
from slb_recipe.search_state import chosen_values_by_layer, decidedness_by_layer, overall_decidedness
from slb_recipe.checkpoints import EPOCH_KEY, checkpoint_name, save_checkpoint_atomically, saved_checkpoints
from slb_recipe.errors import RecipeError

BN_STATISTICS_SUFFIXES = (".moving_mean", ".moving_variance")


class LossDivergedError(RecipeError):
    """The training loss became NaN or infinite."""


def current_temperature(net):
    """The SLB temperature of net's weight quantizers (mindspore_slb.SlbFakeQuantizerPerLayer), or
    None for a network without (float, or the straight-through baseline)."""
    quantizer_type = mindspore_slb.SlbFakeQuantizerPerLayer
    for _, cell in net.cells_and_names():
        if isinstance(cell, quantizer_type):
            return float(cell.temperature)
    return None


def _loss_value(net_outputs):
    # With a loss-scale manager the train cell returns (loss, overflow, scale).
    loss = net_outputs[0] if isinstance(net_outputs, (tuple, list)) else net_outputs
    return float(np.mean(loss.asnumpy()))


class RunEpochCallback(Callback):
    """A callback that counts epochs over the whole run: has_trained_epoch plus this process's."""

    def __init__(self, has_trained_epoch, epoch_size):
        super().__init__()
        self.has_trained_epoch = has_trained_epoch
        self.epoch_size = epoch_size

    def run_epoch(self, run_context):
        return self.has_trained_epoch + run_context.original_args().cur_epoch_num


class EpochReport(RunEpochCallback):
    """Prints and records, per epoch: mean loss, time, temperature, learning rate (and accuracy).

    Stops training with LossDivergedError naming the epoch and step of a NaN or infinite loss.
    `lrs` is the learning-rate array of this process's steps; `evaluate`, when given, is called
    every `eval_interval` epochs and returns a dict of metrics. Within an epoch a progress line
    (step, mean loss so far, images per second, time left) follows every `progress_interval_s`
    seconds (0: none); `clock` is the time source, in seconds. The epoch time covers the training
    steps; what the callbacks before this one do at the epoch's end is timed apart, and shown in the
    epoch line as `epoch_end_work` (e.g. "BatchNorm calibration") when given.
    """

    def __init__(self, net, lrs, steps_per_epoch, has_trained_epoch, epoch_size, evaluate=None, eval_interval=0,
                 batch_size=1, progress_interval_s=0.0, clock=time.monotonic, epoch_end_work=None):
        super().__init__(has_trained_epoch, epoch_size)
        self.epoch_end_work = epoch_end_work
        self.net = net
        self.lrs = lrs
        self.steps_per_epoch = steps_per_epoch
        self.evaluate = evaluate
        self.eval_interval = eval_interval
        self.batch_size = batch_size
        self.progress_interval_s = progress_interval_s
        self.clock = clock
        self.history = []
        self._losses = []
        self._epoch_start = 0.0
        self._last_progress = 0.0

    def on_train_epoch_begin(self, run_context):
        self._losses = []
        self._epoch_start = self._last_progress = self._last_step_end = self.clock()

    def on_train_step_end(self, run_context):
        cb_params = run_context.original_args()
        loss = _loss_value(cb_params.net_outputs)
        if not math.isfinite(loss):
            step = (cb_params.cur_step_num - 1) % self.steps_per_epoch + 1
            raise LossDivergedError(f"training stopped: loss is {loss} at epoch {self.run_epoch(run_context)}, "
                                    f"step {step} of {self.steps_per_epoch}")
        self._losses.append(loss)
        now = self._last_step_end = self.clock()
        if self._progress_due(now):
            self._last_progress = now
            print(self._progress_line(run_context, now))

    def _progress_due(self, now):
        # The epoch's last step is left to the epoch summary.
        return bool(self.progress_interval_s) and len(self._losses) < self.steps_per_epoch and \
            now - self._last_progress >= self.progress_interval_s

    def _progress_line(self, run_context, now):
        steps = len(self._losses)
        elapsed = max(now - self._epoch_start, 1e-9)
        seconds_left = elapsed / steps * (self.steps_per_epoch - steps)
        return (f"epoch {self.run_epoch(run_context)}/{self.epoch_size} step {steps}/{self.steps_per_epoch}: "
                f"mean loss {np.mean(self._losses):.6f}, {steps * self.batch_size / elapsed:.1f} images/s, "
                f"about {seconds_left:.0f} s left in the epoch")

    def on_train_epoch_end(self, run_context):
        cb_params = run_context.original_args()
        epoch_of_process = cb_params.cur_epoch_num  # indexes lrs, which start at this process's first step
        # The training steps alone: callbacks before this one (BatchNorm calibration) are timed apart.
        seconds = self._last_step_end - self._epoch_start
        record = {
            "epoch": self.run_epoch(run_context),
            "loss": float(np.mean(self._losses)),
            "epoch_time_s": seconds,
            "step_time_ms": 1000.0 * seconds / self.steps_per_epoch,
            "epoch_end_s": self.clock() - self._last_step_end,
            "temperature": current_temperature(self.net),
            "decidedness": overall_decidedness(self.net),
            # The rate the optimizer used at this epoch's last step.
            "lr": float(self.lrs[epoch_of_process * self.steps_per_epoch - 1]),
        }
        if self.evaluate is not None and self.eval_interval and record["epoch"] % self.eval_interval == 0:
            record["eval"] = self.evaluate()
            cb_params.train_network.set_train(True)
        self.history.append(record)
        print(self._describe(record))

    def _describe(self, record):
        temperature = "n/a" if record["temperature"] is None else f"{record['temperature']:.6g}"
        text = (f"epoch {record['epoch']}/{self.epoch_size}: loss {record['loss']:.6f}, "
                f"epoch time {record['epoch_time_s']:.2f} s, per step {record['step_time_ms']:.1f} ms, "
                f"temperature {temperature}, lr {record['lr']:.6g}")
        if record["decidedness"] is not None:
            text += f", decided {record['decidedness']:.3f}"
        if self.epoch_end_work:
            text += f", then {self.epoch_end_work} {record['epoch_end_s']:.2f} s"
        if "eval" in record:
            text += ", " + ", ".join(f"{name} {value:.4f}" for name, value in record["eval"].items())
        return text


class TrainingPlots(Callback):
    """Redraws the run's figures in `folder` after every epoch, and at the end adds the chosen
    candidate values per layer (see slb_recipe.plots).

    Draws `report`'s history, so it must follow the EpochReport in the callback list. Records,
    per epoch, how decided each searched layer of `net` is.
    """

    def __init__(self, net, report, folder):
        super().__init__()
        self.net = net
        self.report = report
        self.folder = folder
        self.decidedness_history = []
        self.failed = False

    def on_train_epoch_end(self, run_context):
        self.decidedness_history.append((self.report.history[-1]["epoch"], decidedness_by_layer(self.net)))
        self._draw(lambda: plots.draw_training_figures(self.folder, self.report.history, self.decidedness_history))

    def on_train_end(self, run_context):
        self._draw(lambda: plots.draw_chosen_values(self.folder, chosen_values_by_layer(self.net)))

    def _draw(self, draw):
        # Figures are a view of the run, not its result: one that cannot be drawn (a full disk, a
        # matplotlib problem) must not end hours of training. Said once, then no more figures.
        if self.failed:
            return
        try:
            draw()
        except Exception as error:  # pylint: disable=broad-except
            self.failed = True
            print(f"plots: drawing into '{self.folder}' failed ({type(error).__name__}: {error}); "
                  "training goes on without figures")


class AverageBatchNormStatistics(Callback):
    """Data parallel: average the BN running statistics over the ranks after every epoch.

    Gradients are averaged every step, so trainable parameters agree on all ranks; the running
    statistics, though, see only each rank's shard. Averaging them makes every rank's checkpoint
    the same network, measured on all the data.
    """

    def __init__(self, net, rank_size):
        super().__init__()
        self.statistics = [param for param in net.get_parameters() if param.name.endswith(BN_STATISTICS_SUFFIXES)]
        self.rank_size = rank_size
        # The AllReduce primitive has CPU kernels; comm_func.all_reduce has none on CPU.
        self.sum_over_ranks = ops.AllReduce()

    def on_train_epoch_end(self, run_context):
        for param in self.statistics:
            ops.assign(param, self.sum_over_ranks(param.value()) / self.rank_size)


class CheckpointSaver(RunEpochCallback):
    """Saves the train network (weights, BN statistics, optimizer moments) with the epoch reached.

    Saves every `save_every` epochs and at the last epoch, with `record` (checkpoint_record's keys)
    beside the epoch reached; keeps the newest `keep_max` files it wrote (it deletes no other file),
    and writes each file under a temporary name first so an interrupted run, or a failed write, leaves
    the previous checkpoint intact and loadable.
    """

    def __init__(self, folder, record, has_trained_epoch, epoch_size, save_every, keep_max):
        super().__init__(has_trained_epoch, epoch_size)
        self.folder = folder
        self.record = record
        self.quant_type = record["quant_type"]
        self.save_every = save_every
        self.keep_max = keep_max
        self.last_path = None
        self.written = []

    def on_train_epoch_end(self, run_context):
        epoch = self.run_epoch(run_context)
        if epoch % self.save_every and epoch != self.epoch_size:
            return
        os.makedirs(self.folder, exist_ok=True)
        path = os.path.join(self.folder, checkpoint_name(self.quant_type, epoch))
        try:
            save_checkpoint_atomically(run_context.original_args().train_network, path,
                                       {EPOCH_KEY: epoch, **self.record})
        except OSError as error:  # a full disk, a quota: the run stops, its last checkpoint stays usable
            previous = saved_checkpoints(self.folder, self.quant_type)
            kept = f"the previous checkpoint '{previous[-1][1]}' is intact" if previous else "no earlier checkpoint"
            raise RecipeError(f"checkpoint '{path}' could not be written ({error.strerror or error}); {kept}") \
                from error
        self.last_path = path
        self.written.append(path)
        for old_path in self.written[:-self.keep_max]:
            os.remove(old_path)
        del self.written[:-self.keep_max]
