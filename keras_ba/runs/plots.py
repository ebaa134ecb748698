"""Training curves from the CSV history, as a PNG (matplotlib).

Example:
    plot_history("runs/digits/history.csv", "runs/digits/history.png")
"""

from keras_ba.errors import WorkflowError
from keras_ba.extras import require
from keras_ba.runs.folder import atomic_path, read_history


def plot_history(csv_path, png_path, title=None):
    """Plots loss (log scale) and accuracy per epoch, train and validation.

    Args:
        csv_path: a `history.csv` written by `keras-ba train`.
        png_path: the PNG file to write.
        title: figure title (default: none).

    Raises:
        MissingExtraError: without matplotlib (the `train` extra).
        WorkflowError: without history rows.

    Example:
    >>> import tempfile, os
    >>> folder = tempfile.mkdtemp()
    >>> csv_path = os.path.join(folder, "h.csv")
    >>> _ = open(csv_path, "w").write("epoch,loss,val_loss\\n0,2.0,2.1\\n1,1.5,1.7\\n")
    >>> plot_history(csv_path, os.path.join(folder, "h.png"))
    """
    matplotlib = require("matplotlib", "train", "Plotting the training curves")
    matplotlib.use("Agg")
    from matplotlib import pyplot, ticker

    history = read_history(csv_path)
    if not history.get("epoch"):
        raise WorkflowError(f"{csv_path!r} has no epochs to plot.")
    epochs = [int(e) + 1 for e in history["epoch"]]
    metrics = [m for m in ("loss", "accuracy") if m in history]
    figure, axes = pyplot.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.6), squeeze=False)
    for axis, metric in zip(axes[0], metrics, strict=True):
        for key, label in ((metric, "train"), (f"val_{metric}", "validation")):
            if key in history:
                axis.plot(epochs, history[key], marker="o", label=label)
        axis.set_xlabel("epoch")
        axis.set_ylabel(metric)
        axis.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
        if metric == "loss":
            axis.set_yscale("log")
        axis.grid(alpha=0.3)
        axis.legend()
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    with atomic_path(png_path) as temporary:
        figure.savefig(temporary, dpi=100, format="png")
    pyplot.close(figure)
