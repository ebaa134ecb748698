"""Matplotlib figures of the analysis report (PNG files, Agg backend).

Example:
    plot_attention_curves([ba_weights, se_weights], class_names, "curves.png")
    plot_importance(bridge_importance(model, data), "importance.png")
"""

import numpy as np

from keras_ba.analysis import stats as stats_lib
from keras_ba.analysis.saliency import METHOD_TITLES

MAX_CLASSES = 10  # class curves drawn per panel (the paper shows 4)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_attention_curves(results, class_names, path, max_classes=MAX_CLASSES, dpi=110):
    """The paper's Fig. 4: per-class mean channel weights of each stage's last block.

    One row per model (e.g. BA, then its SE baseline), one column per stage;
    in each panel one curve per class (the first `max_classes` classes),
    channel index on the x axis.

    Args:
        results: list of `AttentionWeights` (with labels).
        class_names: names of the classes, indexed by label.
        path: PNG file to write.
        max_classes: at most this many class curves per panel.
        dpi: resolution.

    Returns:
        The rows drawn: `[{model, stage, layer, class, channel, mean_weight}]`.

    Example:
        rows = plot_attention_curves([ba, se], ["0", "1"], "attention_curves.png")
    """
    plt = _pyplot()
    columns = max(len(stats_lib.last_layer_per_stage(r)) for r in results)
    figure, axes = plt.subplots(
        len(results),
        columns,
        figsize=(3.2 * columns, 2.6 * len(results)),
        squeeze=False,
        sharey=True,
    )
    colors = plt.get_cmap("tab10")
    rows = []
    for row, result in enumerate(results):
        stages = stats_lib.last_layer_per_stage(result)
        for column in range(columns):
            ax = axes[row][column]
            if column >= len(stages):
                ax.axis("off")
                continue
            stage, layer = stages[column]
            stats = stats_lib.class_statistics(result.weights[layer], result.labels)
            for index, (label, curve) in enumerate(
                zip(stats.classes[:max_classes], stats.class_means[:max_classes], strict=True)
            ):
                name = class_names[label] if label < len(class_names) else str(label)
                ax.plot(curve, lw=0.8, color=colors(index % 10), label=name)
                rows.extend(
                    {
                        "model": result.model_name,
                        "stage": stage,
                        "layer": layer,
                        "class": name,
                        "channel": channel,
                        "mean_weight": float(value),
                    }
                    for channel, value in enumerate(curve)
                )
            ax.set_title(f"{result.model_name}\n{layer}", fontsize=8)
            ax.tick_params(labelsize=7)
            if row == len(results) - 1:
                ax.set_xlabel("channel", fontsize=8)
            if column == 0:
                ax.set_ylabel("mean weight", fontsize=8)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        figure.legend(handles, labels, loc="center right", fontsize=7, title="class")
    figure.tight_layout(rect=(0, 0, 0.93, 1))
    figure.savefig(path, dpi=dpi)
    plt.close(figure)
    return rows


def plot_stage_spread(stage_rows, path, dpi=110):
    """Bars per stage: spread across classes and diversity across channels, per model.

    Args:
        stage_rows: rows of `stage_table` for one or more models.
        path: PNG file to write.
        dpi: resolution.

    Example:
        plot_stage_spread(stage_table(ba) + stage_table(se), "attention_spread.png")
    """
    plt = _pyplot()
    models = list(dict.fromkeys(row["model"] for row in stage_rows))
    stages = list(dict.fromkeys(row["stage"] for row in stage_rows))
    values = {(row["model"], row["stage"]): row for row in stage_rows}
    figure, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    width = 0.8 / len(models)
    for ax, key, title in (
        (axes[0], "class_spread", "spread across classes (mean over channels)"),
        (axes[1], "channel_std", "std across channels of the mean weight"),
    ):
        for index, model in enumerate(models):
            heights = [
                values[(model, stage)][key] if (model, stage) in values else np.nan
                for stage in stages
            ]
            positions = np.arange(len(stages)) + (index - (len(models) - 1) / 2) * width
            ax.bar(positions, heights, width=width, label=model)
        ax.set_xticks(np.arange(len(stages)), stages, fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=8)
    axes[0].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=dpi)
    plt.close(figure)


def plot_importance(importance, path, dpi=110):
    """The paper's Fig. 5: a blocks x features heatmap of bridge importance.

    Args:
        importance: a `BridgeImportance`.
        path: PNG file to write.
        dpi: resolution.

    Example:
        plot_importance(bridge_importance(model, data), "bridge_importance.png")
    """
    plt = _pyplot()
    matrix = np.asarray(importance.matrix)
    blocks = len(importance.blocks)
    figure, ax = plt.subplots(figsize=(1.2 + 0.9 * matrix.shape[1], 0.9 + 0.32 * blocks))
    image = ax.imshow(np.ma.masked_invalid(matrix), cmap="Blues", vmin=0, aspect="auto")
    for (row, column), value in np.ndenumerate(matrix):
        if np.isfinite(value):
            ax.text(
                column,
                row,
                f"{value:.2f}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if value > 0.6 * np.nanmax(matrix) else "black",
            )
    ax.set_xticks(range(matrix.shape[1]), importance.feature_names, fontsize=8)
    ax.set_yticks(range(blocks), importance.blocks, fontsize=7)
    ax.set_title(f"{importance.model_name}: bridge importance", fontsize=9)
    figure.colorbar(image, ax=ax, fraction=0.08)
    figure.tight_layout()
    figure.savefig(path, dpi=dpi)
    plt.close(figure)


def plot_cam_grid(display, overlays, titles, path, dpi=110):
    """A grid of CAM overlays: one row per image, the input then one column per method.

    Args:
        display: uint8 images `(K, H, W, 3)`.
        overlays: `{method: uint8 array (K, H, W, 3)}`.
        titles: one title per image (e.g. "true 3, predicted 3").
        path: PNG file to write.
        dpi: resolution.

    Example:
        plot_cam_grid(images, {"gradcam": blended}, ["7"], "explanations.png")
    """
    plt = _pyplot()
    methods = list(overlays)
    count = len(display)
    figure, axes = plt.subplots(
        count, 1 + len(methods), figsize=(1.6 * (1 + len(methods)), 1.6 * count), squeeze=False
    )
    for row in range(count):
        panels = [("input", display[row])] + [
            (METHOD_TITLES.get(m, m), overlays[m][row]) for m in methods
        ]
        for column, (name, image) in enumerate(panels):
            ax = axes[row][column]
            ax.imshow(image, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(name, fontsize=8)
            if column == 0:
                ax.set_ylabel(titles[row], fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=dpi)
    plt.close(figure)
