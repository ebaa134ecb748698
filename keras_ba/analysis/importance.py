"""How much each bridged feature drives the attention weights (BAv1 Algorithm 1).

For every Bridge Attention block, a random forest predicts the block's
channel weights `w` (all `C_n` of them, a multi-output regression) from the
concatenated squeezed features `[S_1, ..., S_n]` of the block's layers.
The impurity (Gini) importance of a bridged feature is the sum of the
importances of its columns: `S_n` is the feature SE would see alone, the
others are what the bridge adds (paper Sec. 5.2, Fig. 5).

Example:
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> s1, s2 = rng.normal(size=(200, 3)), rng.normal(size=(200, 3))
>>> target = np.stack([np.tanh(s2[:, 0]), np.tanh(s2[:, 1])], axis=1)
>>> importance = feature_importance([s1, s2], target, n_estimators=10)
>>> bool(importance[1] > 0.8), round(float(importance.sum()), 6)
(True, 1.0)
"""

import dataclasses

import numpy as np

from keras_ba.analysis import probe as probe_lib
from keras_ba.analysis.errors import AnalysisError

NORMALIZATIONS = ("sum", "max")


def feature_importance(
    features,
    targets,
    n_estimators=32,
    max_samples=None,
    random_state=0,
    normalize="sum",
    n_jobs=1,
):
    """Importance of each feature group for predicting `targets` (Algorithm 1, one block).

    A `sklearn.ensemble.RandomForestRegressor` is fitted on
    `x = [F_1 | ... | F_n]` (the groups side by side) to predict `targets`;
    the importance of group `j` is the sum of the impurity importances of
    its columns.

    Differences from the printed Algorithm 1, which has an indexing slip:
    its loop sums `Importances(k)` and closes a group when
    `cnt == c^i - 1`, i.e. after `c^i - 1` columns, so the groups drift
    off the features' column boundaries (and `k = 0 .. 3c^i` reads one
    column too many). The text means "sum the `c^i` columns of each
    squeezed feature", which is what is done here, with group boundaries at
    the cumulative widths (so groups may also differ in width, e.g. pooled
    features). The paper then divides by the largest group (`res/max(res)`)
    for its heatmap; the default here divides by the sum, so that a block's
    importances add up to 1 (sklearn's importances already do, so the
    division only matters when the forest could not split);
    `normalize="max"` gives the paper's scaling.

    Args:
        features: list of arrays `(samples, c_j)`, one per bridged feature.
        targets: array `(samples,)` or `(samples, outputs)`.
        n_estimators: trees in the forest (the paper used sklearn's default,
            100; fewer are enough for a ranking and much faster).
        max_samples: bootstrap sample size per tree (None: all samples).
        random_state: seed of the forest.
        normalize: `"sum"` (rows add up to 1) or `"max"` (largest is 1).
        n_jobs: parallel jobs of the forest.

    Returns:
        float64 array `(len(features),)`; NaN where the targets are
        constant (no split, no importance).

    Raises:
        AnalysisError: no features, fewer than 2 samples, mismatched sample
            counts, an unknown normalization.

    Example:
    >>> import numpy as np
    >>> x = [np.arange(20.0)[:, None], np.zeros((20, 2))]
    >>> feature_importance(x, np.arange(20.0) ** 2, n_estimators=5).tolist()
    [1.0, 0.0]
    """
    from sklearn.ensemble import RandomForestRegressor

    if normalize not in NORMALIZATIONS:
        raise AnalysisError(f"Unknown normalization {normalize!r}; choose from {NORMALIZATIONS}.")
    if not features:
        raise AnalysisError("No features to rank: a block needs at least one bridged feature.")
    features = [np.asarray(f, dtype="float64").reshape(len(f), -1) for f in features]
    targets = np.asarray(targets, dtype="float64")
    samples = {len(f) for f in features} | {len(targets)}
    if len(samples) != 1:
        raise AnalysisError(
            f"Features and targets have different sample counts: {sorted(samples)}."
        )
    if len(targets) < 2:
        raise AnalysisError(f"Bridge importance needs at least 2 images; received {len(targets)}.")
    widths = [f.shape[1] for f in features]
    if np.allclose(targets, targets[:1]):
        return np.full(len(features), np.nan)
    forest = RandomForestRegressor(
        n_estimators=n_estimators,
        max_samples=max_samples,
        random_state=random_state,
        n_jobs=n_jobs,
    )
    forest.fit(np.concatenate(features, axis=1), targets)
    bounds = np.cumsum([0, *widths])
    importances = forest.feature_importances_
    groups = np.array(
        [importances[a:b].sum() for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    )
    scale = groups.sum() if normalize == "sum" else groups.max()
    if not scale > 0:
        return np.full(len(features), np.nan)
    return groups / scale


@dataclasses.dataclass
class BridgeImportance:
    """The blocks x features importance matrix of a BA model (paper Fig. 5).

    Attributes:
        model_name: the model's name.
        blocks: BA layer names, in graph order (rows).
        feature_names: `("S1", ..., "Sn")` (columns; `Sn` is the feature the
            layer recalibrates, the one SE would see alone).
        matrix: float64 `(blocks, features)`; NaN where a block has fewer
            features than the widest one.
        features: `"squeezed"` or `"pooled"`.
        normalize: `"sum"` or `"max"`.
        images: number of images the forests were fitted on.

    Example:
        result.matrix[result.blocks.index("conv4_block2_ba")]
    """

    model_name: str
    blocks: tuple
    feature_names: tuple
    matrix: np.ndarray
    features: str
    normalize: str
    images: int

    def rows(self):
        """`[{block, S1, ..., Sn}]` for CSV/JSON (NaN as None).

        Example:
            csv.DictWriter(file, ["block", *result.feature_names]).writerows(result.rows())
        """
        rows = []
        for block, values in zip(self.blocks, self.matrix, strict=True):
            row = {"block": block}
            for name, value in zip(self.feature_names, values, strict=True):
                row[name] = None if np.isnan(value) else float(value)
            rows.append(row)
        return rows


def bridge_importance(
    model,
    data,
    layers=None,
    features="squeezed",
    n_estimators=32,
    max_samples=None,
    random_state=0,
    normalize="sum",
    batch_size=64,
    n_jobs=1,
    weights=None,
):
    """Algorithm 1 of the BAv1 paper: importance of each bridged feature, per block.

    For each `BridgeAttention` layer, `feature_importance` ranks its
    features `S_1 ... S_n` as predictors of its channel weights over the
    images of `data`.

    Args:
        model: a model with `BridgeAttention` layers.
        data: model-ready images (see `keras_ba.analysis.iterate_batches`);
            a few hundred images are enough.
        layers: None (all BA layers) or a list of BA layer names.
        features: `"squeezed"` (the paper: `S_i = BN_i(W_i gap(X_i))` for
            v1, `W_i gap(X_i)` for v2, read from the layer's own sublayers;
            every `S_i` has the same width `C_n / r`) or `"pooled"`
            (`gap(X_i)`: the raw block features, of different widths).
        n_estimators, max_samples, random_state, normalize, n_jobs: see
            `feature_importance`.
        batch_size: batch size of the forward pass.
        weights: an `AttentionWeights` already collected with this
            `features` (skips the forward pass).

    Returns:
        A `BridgeImportance`.

    Raises:
        AnalysisError: the model has no attention layer, or only
            `SqueezeExcite` layers (nothing is bridged), a layer name that
            does not exist or is not a BA layer, empty data, fewer than 2
            images.

    Example:
    >>> import numpy as np
    >>> from keras_ba.analysis._examples import tiny_model
    >>> result = bridge_importance(tiny_model("bav1"), np.random.rand(16, 16, 16, 3),
    ...                            n_estimators=4)
    >>> result.blocks, result.feature_names, result.matrix.sum(axis=1).round(6).tolist()
    (('conv2_block1_ba', 'conv3_block1_ba'), ('S1', 'S2'), [1.0, 1.0])
    """
    if features not in probe_lib.FEATURES:
        raise AnalysisError(f"Unknown feature {features!r}; choose from {probe_lib.FEATURES}.")
    if normalize not in NORMALIZATIONS:
        raise AnalysisError(f"Unknown normalization {normalize!r}; choose from {NORMALIZATIONS}.")
    found = probe_lib.select_attention_layers(model, layers)
    blocks = [layer.name for layer in found if probe_lib.kind_of(layer) == "ba"]
    if not blocks:
        names = probe_lib._short_list(layer.name for layer in found)
        raise AnalysisError(
            f"Bridge importance needs BridgeAttention layers, and the selected layers of "
            f"{model.name!r} are all SqueezeExcite ({names}): an SE layer sees one feature, "
            "nothing is bridged."
        )
    if weights is None:
        weights = probe_lib.attention_weights(model, data, blocks, batch_size, (features,))
    source = weights.squeezed if features == "squeezed" else weights.pooled
    missing = [name for name in blocks if name not in source]
    if missing:
        raise AnalysisError(
            f"`weights` has no {features} features for {missing[0]!r}: collect them with "
            f"attention_weights(..., features=[{features!r}])."
        )
    count = max(len(source[name]) for name in blocks)
    matrix = np.full((len(blocks), count), np.nan)
    for row, name in enumerate(blocks):
        values = feature_importance(
            source[name],
            weights.weights[name],
            n_estimators=n_estimators,
            max_samples=max_samples,
            random_state=random_state,
            normalize=normalize,
            n_jobs=n_jobs,
        )
        matrix[row, : len(values)] = values
    return BridgeImportance(
        model_name=model.name,
        blocks=tuple(blocks),
        feature_names=tuple(f"S{i + 1}" for i in range(count)),
        matrix=matrix,
        features=features,
        normalize=normalize,
        images=weights.num_images,
    )
