"""Aggregates of attention weights as in the BAv1 paper's Fig. 4.

The paper averages the channel weights of each block over the images of a
class and compares the curves of BA-Net and SENet: in later stages BA's
weights vary more across channels ("more diverse") and its class curves
separate where SE's overlap. Two numbers per layer measure exactly that:

- `channel_std`: standard deviation across channels of the mean weight
  (how diverse the weights are);
- `class_spread`: mean over channels of the standard deviation across
  classes of the per-class mean weight (how far apart the class curves are).

Example:
>>> import numpy as np
>>> stats = class_statistics(np.array([[0.2, 0.8], [0.4, 0.6], [0.9, 0.1]]), np.array([0, 0, 1]))
>>> stats.class_means.round(2).tolist(), stats.spread.round(2).tolist()
([[0.3, 0.7], [0.9, 0.1]], [0.3, 0.3])
"""

import dataclasses

import numpy as np

from keras_ba.analysis.errors import AnalysisError


@dataclasses.dataclass
class ClassStatistics:
    """Per-class aggregates of one layer's weights `(images, C)`.

    Attributes:
        classes: the class indices present, ascending.
        counts: images per class.
        class_means: `(classes, C)` mean weight per class and channel.
        mean: `(C,)` mean weight per channel over all images.
        spread: `(C,)` standard deviation across classes (population, ddof
            0) of `class_means`; zeros with one class.
        channel_std: standard deviation across channels of `mean`.
        class_spread: mean of `spread` over channels.

    Example:
        stats.class_means[stats.classes.tolist().index(3)]  # the curve of class 3
    """

    classes: np.ndarray
    counts: np.ndarray
    class_means: np.ndarray
    mean: np.ndarray
    spread: np.ndarray
    channel_std: float
    class_spread: float


def class_statistics(weights, labels):
    """Mean weight per channel per class, and its spread across classes.

    Args:
        weights: array `(images, C)` of one layer's channel weights.
        labels: integer class per image `(images,)`.

    Returns:
        A `ClassStatistics` (float64).

    Raises:
        AnalysisError: no images, no labels, or mismatched lengths.

    Example:
    >>> import numpy as np
    >>> stats = class_statistics(np.array([[0.5, 0.5], [0.7, 0.1]]), np.array([2, 2]))
    >>> stats.classes.tolist(), stats.class_spread, round(stats.channel_std, 2)
    ([2], 0.0, 0.15)
    """
    weights = np.asarray(weights, dtype="float64")
    if labels is None:
        raise AnalysisError(
            "Per-class aggregates need labels: pass (images, labels) or a dataset of "
            "(images, labels) batches."
        )
    labels = np.asarray(labels).reshape(-1)
    if weights.ndim != 2 or len(weights) == 0:
        raise AnalysisError(
            f"Expected weights of shape (images, channels) with at least one image; "
            f"received shape {weights.shape}."
        )
    if len(labels) != len(weights):
        raise AnalysisError(f"Received {len(weights)} weight rows but {len(labels)} labels.")
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    sums = np.zeros((len(classes), weights.shape[1]))
    np.add.at(sums, inverse, weights)
    class_means = sums / counts[:, None]
    mean = weights.mean(axis=0)
    spread = class_means.std(axis=0)
    return ClassStatistics(
        classes=classes,
        counts=counts,
        class_means=class_means,
        mean=mean,
        spread=spread,
        channel_std=float(mean.std()),
        class_spread=float(spread.mean()),
    )


def layer_table(result):
    """One row per attention layer: stage, channels and the Fig. 4 numbers.

    Args:
        result: an `AttentionWeights` with labels.

    Returns:
        A list of dicts with `model`, `layer`, `kind`, `stage`, `channels`,
        `images`, `mean_weight`, `min_weight`, `max_weight`, `channel_std`,
        `class_spread`.

    Example:
        rows = layer_table(attention_weights(model, (images, labels)))
    """
    rows = []
    for name in result.layers:
        weights = result.weights[name]
        stats = class_statistics(weights, result.labels)
        rows.append(
            {
                "model": result.model_name,
                "layer": name,
                "kind": result.kinds[name],
                "stage": result.stages[name],
                "channels": int(weights.shape[1]),
                "images": int(weights.shape[0]),
                "mean_weight": float(weights.mean()),
                "min_weight": float(weights.min()),
                "max_weight": float(weights.max()),
                "channel_std": stats.channel_std,
                "class_spread": stats.class_spread,
            }
        )
    return rows


def stage_table(result):
    """One row per stage: the layer numbers averaged over the stage's layers.

    Also names the stage's last layer (the one the paper's Fig. 4 plots).

    Args:
        result: an `AttentionWeights` with labels.

    Returns:
        A list of dicts with `model`, `stage`, `layers`, `last_layer`,
        `channel_std`, `class_spread`, `mean_weight`, in stage order.

    Example:
        for row in stage_table(result): print(row["stage"], row["class_spread"])
    """
    rows = layer_table(result)
    stages = []
    for row in rows:
        if not stages or stages[-1]["stage"] != row["stage"]:
            stages.append({"model": row["model"], "stage": row["stage"], "rows": []})
        stages[-1]["rows"].append(row)
    return [
        {
            "model": stage["model"],
            "stage": stage["stage"],
            "layers": len(stage["rows"]),
            "last_layer": stage["rows"][-1]["layer"],
            "channel_std": float(np.mean([r["channel_std"] for r in stage["rows"]])),
            "class_spread": float(np.mean([r["class_spread"] for r in stage["rows"]])),
            "mean_weight": float(np.mean([r["mean_weight"] for r in stage["rows"]])),
        }
        for stage in stages
    ]


def last_layer_per_stage(result):
    """`[(stage, layer name)]`: the last attention layer of each stage (Fig. 4).

    Example:
        last_layer_per_stage(result)  # [('conv2', 'conv2_block2_ba'), ...]
    """
    last = {}
    for name in result.layers:
        last[result.stages[name]] = name
    return list(last.items())
