"""The recipe's figures, as PNG files; the only module that uses matplotlib.

matplotlib is optional: without it `available()` says so once per process and every drawing
function returns without writing. Figures are drawn on matplotlib's Figure directly (no pyplot):
nothing global changes, and a PNG needs no display. Each file is written under a temporary name
and renamed, so an interrupted run leaves the previous figure intact, never a broken one.
"""
import math
import os

import numpy as np

from slb_recipe.files import atomic_path

TRAINING_CURVES = "training_curves.png"
SCHEDULES = "schedules.png"
SEARCH_DECIDEDNESS = "search_decidedness.png"
CHOSEN_VALUES = "chosen_values.png"
SWEEP_RESULTS = "sweep_results.png"

MISSING_MESSAGE = "matplotlib is not installed: no plots (pip install matplotlib)"
# Up to this many layers each gets a line of its own; more are drawn as a heat map.
MAX_DECIDEDNESS_LINES = 8

_missing_reported = False


def available():
    """Whether matplotlib can be imported; says once per process when it cannot."""
    global _missing_reported  # pylint: disable=global-statement
    try:
        import matplotlib  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    except ImportError:
        if not _missing_reported:
            _missing_reported = True
            print(MISSING_MESSAGE)
        return False
    return True


def _new_figure(width, height, columns=1, rows=1):
    """(figure, flat list of axes); only once available() said yes."""
    from matplotlib.figure import Figure  # pylint: disable=import-outside-toplevel
    figure = Figure(figsize=(width, height), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False)
    return figure, list(axes.ravel())


def _save(figure, folder, name):
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    # The caller reports a failure; no half-written file stays.
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=100)
    return path


def _epoch_axis(axes):
    """x is the epoch: whole numbers only, which a run of a few epochs would otherwise lack."""
    from matplotlib.ticker import MaxNLocator  # pylint: disable=import-outside-toplevel
    axes.set_xlabel("epoch")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))


def _note(axes, text):
    """An empty panel saying why it is empty."""
    axes.text(0.5, 0.5, text, ha="center", va="center", wrap=True, transform=axes.transAxes)
    axes.set_xticks([])
    axes.set_yticks([])


def draw_training_figures(folder, history, decidedness_history):
    """Training curves, schedules and (for a searched network) the search's decidedness.

    `history` is EpochReport.history; `decidedness_history` one (epoch, {layer path: decidedness})
    per epoch. Returns the paths written.
    """
    if not available():
        return []
    return [path for path in (_draw_training_curves(folder, history), _draw_schedules(folder, history),
                               _draw_decidedness(folder, decidedness_history)) if path]


def _draw_training_curves(folder, history):
    figure, (loss_axes, accuracy_axes) = _new_figure(10, 4, columns=2)
    epochs = [record["epoch"] for record in history]
    loss_axes.plot(epochs, [record["loss"] for record in history], marker="o")
    loss_axes.set(title="training loss (epoch mean)", ylabel="loss")
    _epoch_axis(loss_axes)
    evaluated = [record for record in history if "eval" in record]
    if evaluated:
        for metric, label in (("top_1_accuracy", "top-1"), ("top_5_accuracy", "top-5")):
            accuracy_axes.plot([record["epoch"] for record in evaluated],
                               [record["eval"][metric] for record in evaluated], marker="o", label=label)
        accuracy_axes.set(title="evaluation accuracy", ylabel="accuracy", ylim=(0, 1.02))
        _epoch_axis(accuracy_axes)
        accuracy_axes.legend()
    else:
        _note(accuracy_axes, "no evaluation during training:\nset eval_interval > 0 for accuracy curves")
    return _save(figure, folder, TRAINING_CURVES)


def _draw_schedules(folder, history):
    figure, (temperature_axes, lr_axes) = _new_figure(10, 4, columns=2)
    epochs = [record["epoch"] for record in history]
    if history and history[0]["temperature"] is not None:
        temperature_axes.plot(epochs, [record["temperature"] for record in history], marker="o")
        # The schedule multiplies the temperature by t_factor per epoch: a log scale shows it as a line.
        temperature_axes.set(title="SLB temperature", ylabel="temperature", yscale="log")
        _epoch_axis(temperature_axes)
    else:
        _note(temperature_axes, "no temperature: float network (W32) or straight-through baseline")
    lr_axes.plot(epochs, [record["lr"] for record in history], marker="o")
    lr_axes.set(title="learning rate (epoch's last step)", ylabel="learning rate")
    _epoch_axis(lr_axes)
    return _save(figure, folder, SCHEDULES)


def _draw_decidedness(folder, decidedness_history):
    layers = list(decidedness_history[0][1]) if decidedness_history else []
    if not layers:
        return None
    epochs = [epoch for epoch, _ in decidedness_history]
    table = np.array([[values[layer] for _, values in decidedness_history] for layer in layers])
    if len(layers) <= MAX_DECIDEDNESS_LINES:
        figure, (axes,) = _new_figure(8, 5)
        for layer, row in zip(layers, table):
            axes.plot(epochs, row, marker="o", label=layer)
        axes.set(ylim=(0, 1.02), ylabel="mean largest candidate probability")
        axes.legend(fontsize="small")
    else:
        figure, (axes,) = _new_figure(max(6, 0.5 * len(epochs) + 4), 0.25 * len(layers) + 2)
        image = axes.imshow(table, aspect="auto", vmin=0.0, vmax=1.0, cmap="viridis",
                            extent=(epochs[0] - 0.5, epochs[-1] + 0.5, len(layers) - 0.5, -0.5))
        axes.set_yticks(range(len(layers)), layers, fontsize="small")
        figure.colorbar(image, ax=axes, label="mean largest candidate probability")
    axes.set_title("how decided the search is, per quantized layer")
    _epoch_axis(axes)
    return _save(figure, folder, SEARCH_DECIDEDNESS)


def draw_chosen_values(folder, layers):
    """Per layer, the share of its weights on each candidate value; `layers` holds (path, chosen
    values) pairs (search_state.chosen_values_by_layer). Returns the path written, or None."""
    if not layers or not available():
        return None
    columns = min(4, len(layers))
    rows = math.ceil(len(layers) / columns)
    figure, panels = _new_figure(3 * columns, 2.2 * rows + 0.6, columns=columns, rows=rows)
    for axes, (path, chosen) in zip(panels, layers):
        values, counts = np.unique(chosen, return_counts=True)
        # Bars as wide as the gap between neighbouring values: 1-bit and 4-bit panels both read.
        width = 0.8 * (np.diff(values).min() if len(values) > 1 else 1.0)
        axes.bar(values, counts / counts.sum(), width=width)
        axes.set_title(path, fontsize="small")
        axes.set_ylim(0, 1)
    for axes in panels[len(layers):]:
        axes.set_axis_off()
    figure.suptitle("chosen candidate values per quantized layer (share of the layer's weights)")
    return _save(figure, folder, CHOSEN_VALUES)


def draw_sweep(folder, summary):
    """Grouped bars: per quantization type, mean top-1 and top-5 over seeds, error bars min to max.

    `summary` holds sweep.summarize's records. Returns the path written, or None.
    """
    if not summary or not available():
        return None
    figure, (axes,) = _new_figure(max(6, 1.4 * len(summary) + 2), 4.5)
    positions = np.arange(len(summary))
    bar_width = 0.38
    for offset, (metric, label) in zip((-bar_width / 2, bar_width / 2), (("top_1", "top-1"), ("top_5", "top-5"))):
        means = [record[f"{metric}_mean"] for record in summary]
        # Lists, not a [2, N] array: matplotlib 3.11 probes an array's rows with a deprecated NumPy conversion.
        spread = [[mean - record[f"{metric}_min"] for mean, record in zip(means, summary)],
                  [record[f"{metric}_max"] - mean for mean, record in zip(means, summary)]]
        bars = axes.bar(positions + offset, means, bar_width, yerr=spread, capsize=4, label=label)
        # Inside the bars: above them the error bars would cover the numbers.
        axes.bar_label(bars, fmt="%.3f", fontsize="small", label_type="center", color="white")
    axes.set_xticks(positions, [f"{record['quant_type']}\n({record['runs']} run{'s' * (record['runs'] > 1)})"
                                for record in summary])
    axes.set(ylim=(0, 1.15), ylabel="accuracy", title="mean accuracy over seeds (error bars: min to max)")
    axes.legend(loc="upper left", ncols=2)
    return _save(figure, folder, SWEEP_RESULTS)
