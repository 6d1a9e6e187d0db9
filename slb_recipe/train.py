"""Train ResNet18 with SLB weight quantization (or the float baseline, quant_type W32).

    python scripts/train.py --config_path configs/resnet18_cifar10_config.yaml [--key value ...]
    msrun --worker_num=2 --local_worker_num=2 --master_addr=127.0.0.1 scripts/train.py --run_distribute True

Resume with --pre_trained CKPT: the run continues at the epoch the checkpoint records as reached,
on the same temperature and learning-rate schedule as an uninterrupted run.
"""
import mindspore as ms
import mindspore.nn as nn

import mindspore_slb

from slb_recipe import plots
from slb_recipe.callbacks import AverageBatchNormStatistics, CheckpointSaver, EpochReport, TrainingPlots
from slb_recipe.checkpoints import (checkpoint_dir, checkpoint_progress, checkpoint_record, epoch_reached,
                                    load_into_network, read_checkpoint, read_float_start)
from slb_recipe.config import with_overrides
from slb_recipe.dataset import create_split
from slb_recipe.errors import RecipeError
from slb_recipe.lr_schedule import get_lr
from slb_recipe.metrics import evaluate, loss_function
from slb_recipe.network import build_network
from slb_recipe.output_folder import claimed_folder, refuse_other_runs_checkpoints
from slb_recipe.quant_type import FLOAT, parse_quant_type
from slb_recipe.runtime import script_main, setup_runtime
from slb_recipe.search_state import searching

# A weight scale, like a BatchNorm scale, sets a magnitude: decaying it would shrink the layer.
NO_DECAY_NAME_PARTS = ("beta", "gamma", "bias", "weight_scale")


def parameter_groups(net, weight_decay):
    """Weight decay on conv/dense weights only, not on BN scales and shifts or biases."""
    decayed, undecayed = [], []
    for param in net.trainable_params():
        (undecayed if any(part in param.name for part in NO_DECAY_NAME_PARTS) else decayed).append(param)
    return [{"params": decayed, "weight_decay": weight_decay}, {"params": undecayed, "weight_decay": 0.0},
            {"order_params": net.trainable_params()}]


def resume_state(config, stop_epoch):
    """(checkpoint dict or None, epochs already trained) for --pre_trained."""
    if not config.pre_trained:
        return None, config.has_trained_epoch
    param_dict = read_checkpoint(config.pre_trained, config, source="pre_trained")
    reached = epoch_reached(param_dict)
    has_trained_epoch = config.has_trained_epoch if reached is None else reached
    if has_trained_epoch >= stop_epoch:
        last = f"epoch_size {stop_epoch}" if stop_epoch == config.epoch_size else f"float_epochs {stop_epoch}"
        raise RecipeError(f"pre_trained '{config.pre_trained}' already reached epoch {has_trained_epoch} of {last}")
    return param_dict, has_trained_epoch


def build_optimizer(config, net, lrs, resumed):
    """Momentum SGD over the remaining learning rates.

    On resume only the momentum buffers come from the checkpoint, not the step counter or the
    learning-rate array: the optimizer gets the remaining slice of the schedule and counts from
    its start. A checkpoint without buffers (not written by this recipe) starts them at zero.
    """
    # SlbMomentum updates the logits before any all-reduce could average their gradients.
    momentum_type = mindspore_slb.SlbMomentum if config.fused_logit_update and not config.run_distribute \
        else nn.Momentum
    optimizer = momentum_type(parameter_groups(net, config.weight_decay), ms.Tensor(lrs), config.momentum,
                              loss_scale=config.loss_scale)
    if resumed is not None:
        # Set the buffers one by one: load_param_into_net on an optimizer strips the "moments."
        # prefix and would write the buffers into the network's own parameters. Both optimizers
        # name them "moments.<parameter>", so either resumes the other's checkpoint.
        for buffer in optimizer.get_parameters():
            if buffer.name.startswith("moments.") and buffer.name in resumed:
                buffer.set_data(resumed[buffer.name])
    return optimizer


def training_callbacks(config, model, net, algo, train_data, lrs, has_trained_epoch, stop_epoch, rank_id,
                       rank_size):
    """SLB's own callbacks, then the report, BN-statistics averaging, checkpoints and figures, in that order.

    The figures come last, drawn once the epoch's checkpoint is safe. Only rank 0 draws them: all
    ranks hold the same network.
    """
    report = EpochReport(net, lrs, train_data.get_dataset_size(), has_trained_epoch, config.epoch_size,
                         evaluate=_periodic_evaluation(config, net, train_data), eval_interval=config.eval_interval,
                         batch_size=config.batch_size, progress_interval_s=config.progress_interval_s,
                         epoch_end_work="BatchNorm calibration" if algo is not None and config.enable_bn_calibration
                         else None)
    callbacks = (algo.callbacks(model, train_data) if algo is not None else []) + [report]
    if rank_size > 1:
        callbacks.append(AverageBatchNormStatistics(net, rank_size))
    if config.save_checkpoint:
        callbacks.append(CheckpointSaver(checkpoint_dir(config, rank_id), checkpoint_record(config),
                                         has_trained_epoch, stop_epoch, config.save_checkpoint_epochs,
                                         config.keep_checkpoint_max))
    if config.plots and rank_id == 0 and plots.available():
        callbacks.append(TrainingPlots(net, report, config.output_path))
    return callbacks


def run(config, prepare_network=None):
    """Train as configured; returns {'history': per-epoch records, 'checkpoint': last path saved}.

    The checkpoint folder is claimed first, so an unusable or busy output_path stops the run
    before any data is read. `prepare_network`, when given, is called with the network once SLB is
    applied, before a resumed checkpoint is loaded and before training (comparisons use it to save
    or set the starting state).

    With float_epochs, the float network trains first, as epochs 1..float_epochs of this run's
    schedule (checkpoints resnet18_W32-<epoch>), and the quantized network takes over at that
    epoch from its weights, as a run resumed there would.
    """
    rank_id, rank_size = setup_runtime(config, distributed=config.run_distribute)
    with claimed_folder(checkpoint_dir(config, rank_id)):
        float_reached = float_epochs_reached(config)
        if float_reached is None:
            return _train(config, rank_id, rank_size, prepare_network)
        quantized = with_overrides(config, pre_trained="", has_trained_epoch=config.float_epochs)
        if float_reached == config.float_epochs:
            # An interrupted run whose float network is complete: the quantized network starts from it.
            return _train(with_overrides(quantized, float_checkpoint=config.pre_trained), rank_id, rank_size,
                          prepare_network)
        float_phase = with_overrides(config, quant_type=FLOAT, float_epochs=0, plots=False)
        float_net = _train(float_phase, rank_id, rank_size, None, stop_epoch=config.float_epochs)["network"]
        print(f"float_epochs {config.float_epochs}: {config.quant_type} starts from the float network")
        return _train(quantized, rank_id, rank_size, prepare_network,
                      float_start={param.name: param for param in float_net.get_parameters()})


def float_epochs_reached(config):
    """How many of float_epochs the run has trained (0 new, or pre_trained's epoch when it holds the
    float network), or None where no float part is left: float_epochs 0, a W32 run, or a run resumed
    from a checkpoint of the quantized network. Reads pre_trained's record only, once."""
    if not config.float_epochs or parse_quant_type(config.quant_type).is_float:
        return None
    if not config.pre_trained:
        return 0
    quant_type, epoch = checkpoint_progress(config.pre_trained, "pre_trained")
    return (epoch or 0) if quant_type == FLOAT else None


def _train(config, rank_id, rank_size, prepare_network, stop_epoch=None, float_start=None):
    """Train epochs has_trained_epoch+1..stop_epoch (default: epoch_size) of the run's schedule."""
    stop_epoch = stop_epoch or config.epoch_size
    resumed, has_trained_epoch = resume_state(config, stop_epoch)
    # A resumed run holds all it needs; the float start is read, and checked, for a new run only.
    if float_start is None and resumed is None:
        float_start = read_float_start(config)
    # Before any data is read: another run's checkpoints in the folder, and settings SLB refuses.
    if config.save_checkpoint:
        refuse_other_runs_checkpoints(checkpoint_dir(config, rank_id), config.quant_type, resumed is not None,
                                      has_trained_epoch)
    net, algo = build_network(config, has_trained_epoch, float_start)
    train_data = create_split(config, True, rank_id, rank_size, first_epoch=has_trained_epoch)
    steps_per_epoch = train_data.get_dataset_size()
    if steps_per_epoch == 0:
        raise RecipeError(f"batch_size {config.batch_size} is larger than the training samples of one worker")
    if prepare_network is not None:
        prepare_network(net)
    if resumed is not None:
        load_into_network(net, resumed, config.pre_trained, "pre_trained")
    schedule = get_lr(config.lr_init, config.lr_end, config.lr_max, config.warmup_epochs, config.epoch_size,
                      steps_per_epoch, config.lr_decay_mode)
    lrs = schedule[has_trained_epoch * steps_per_epoch:stop_epoch * steps_per_epoch]
    model = ms.Model(net, loss_fn=loss_function(config), optimizer=build_optimizer(config, net, lrs, resumed),
                     loss_scale_manager=ms.FixedLossScaleManager(config.loss_scale, drop_overflow_update=False))
    callbacks = training_callbacks(config, model, net, algo, train_data, lrs, has_trained_epoch, stop_epoch, rank_id,
                                   rank_size)
    print(f"training {config.quant_type} ResNet18 (width {config.width}) on {config.dataset}: "
          f"epochs {has_trained_epoch + 1}..{stop_epoch} of {config.epoch_size}, {steps_per_epoch} steps each, "
          f"rank {rank_id} of {rank_size}")
    # No data sinking, also on GPU: the report then sees every step's loss, for the epoch's mean
    # and to stop at the first step whose loss is not finite.
    model.train(stop_epoch - has_trained_epoch, train_data, callbacks=callbacks, dataset_sink_mode=False)
    report = next(callback for callback in callbacks if isinstance(callback, EpochReport))
    saver = next((callback for callback in callbacks if isinstance(callback, CheckpointSaver)), None)
    return {"history": report.history, "checkpoint": saver.last_path if saver else None, "network": net}


def _periodic_evaluation(config, net, train_data):
    """Evaluation during training, of the network convert would deploy: while SLB still trains
    soft weights, the BatchNorm statistics are first re-estimated with the hard weights (their
    moving averages describe the soft network; training normalises with batch statistics, so it
    is unaffected)."""
    if not config.eval_interval:
        return None
    eval_data = create_split(config, False)

    calibrators = []

    def run():
        if searching(net):
            # Only this package's networks search (search_state), so its submodule is there.
            # pylint: disable-next=import-outside-toplevel
            from mindspore_slb import CALIBRATION_BATCHES, BatchNormCalibrator
            if not calibrators:
                calibrators.append(BatchNormCalibrator(net))
            calibrators[0].calibrate(train_data, CALIBRATION_BATCHES)
        return evaluate(net, eval_data, config)
    return run


def main(argv=None):
    return script_main(run, argv)
