"""Channel attention weights of a trained model, collected in one pass.

`attention_probe` builds a multi-output model over the existing graph: for
every `BridgeAttention` / `SqueezeExcite` layer (found by type, nested
functional models included) it re-calls the *same* layer object, with its
trained weights, on the layer's own input tensors with
`return_attention_scores=True`. Nothing of the forward pass is
re-implemented and no Lambda layer is used, so the probe works on the
TensorFlow, JAX and PyTorch backends and sees exactly what the model sees.

Example:
>>> import numpy as np
>>> from keras_ba.analysis._examples import tiny_model
>>> result = attention_weights(tiny_model("bav1"), np.random.rand(5, 16, 16, 3))
>>> result.layers, result.weights["conv3_block1_ba"].shape
(('conv2_block1_ba', 'conv3_block1_ba'), (5, 16))
"""

import dataclasses
import re

import keras
import numpy as np
from keras import ops

from keras_ba.analysis.errors import AnalysisError
from keras_ba.layers import BridgeAttention, SqueezeExcite

ATTENTION_CLASSES = (BridgeAttention, SqueezeExcite)
FEATURES = ("pooled", "squeezed")
STAGE_PATTERNS = (
    re.compile(r"^(conv\d+)_block\d+"),  # BA-ResNet / ResNeXt: conv{stage}_block{i}_ba
    re.compile(r"^(block\d+)[a-z]+_"),  # BA-EfficientNet: block{stage}{a,b,..}_ba
)


def kind_of(layer):
    """`"ba"` for `BridgeAttention`, `"se"` for `SqueezeExcite`, else None.

    Example:
    >>> kind_of(SqueezeExcite()), kind_of(keras.layers.Dense(2))
    ('se', None)
    """
    if isinstance(layer, BridgeAttention):
        return "ba"
    if isinstance(layer, SqueezeExcite):
        return "se"
    return None


def find_attention_layers(model):
    """The attention layers of `model` in graph order, nested models included.

    Layers are found by type (`BridgeAttention`, `SqueezeExcite` or their
    subclasses), never by name pattern.

    Args:
        model: a Keras model.

    Returns:
        A list of layers.

    Example:
    >>> from keras_ba.analysis._examples import tiny_model
    >>> [layer.name for layer in find_attention_layers(tiny_model("se"))]
    ['conv2_block1_se', 'conv3_block1_se']
    """
    found = []
    for layer in getattr(model, "layers", []):
        if isinstance(layer, ATTENTION_CLASSES):
            found.append(layer)
        elif isinstance(layer, keras.Model):
            found.extend(find_attention_layers(layer))
    return found


def select_attention_layers(model, layers=None, kinds=("ba", "se")):
    """The attention layers to analyse, with clear errors for bad requests.

    Args:
        model: a Keras model.
        layers: None (all), or a list of layer names.
        kinds: which kinds to keep (`"ba"`, `"se"`).

    Returns:
        A list of layers in graph order.

    Raises:
        AnalysisError: the model has no attention layer, a name does not
            exist or is not an attention layer.

    Example:
    >>> select_attention_layers(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]))
    Traceback (most recent call last):
    ...
    keras_ba.analysis.errors.AnalysisError: The model 'sequential...' has no attention layer (BridgeAttention or SqueezeExcite): there is nothing to analyse.
    """
    found = find_attention_layers(model)
    if not found:
        raise AnalysisError(
            f"The model {model.name!r} has no attention layer (BridgeAttention or "
            "SqueezeExcite): there is nothing to analyse."
        )
    by_name = {layer.name: layer for layer in found}
    if layers is not None:
        if isinstance(layers, str):
            layers = [layers]
        selected = []
        for name in layers:
            if name not in by_name:
                what = "is not an attention layer" if _has_layer(model, name) else "does not exist"
                raise AnalysisError(
                    f"Layer {name!r} {what} in model {model.name!r}; its attention layers are: "
                    f"{_short_list(by_name)}."
                )
            selected.append(by_name[name])
        selected_ids = {id(layer) for layer in selected}
        found = [layer for layer in found if id(layer) in selected_ids]
    return [layer for layer in found if kind_of(layer) in kinds]


def _has_layer(model, name):
    for layer in getattr(model, "layers", []):
        if layer.name == name or (isinstance(layer, keras.Model) and _has_layer(layer, name)):
            return True
    return False


def _short_list(names, limit=8):
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


# === The probe ===


class _AttentionProbe(keras.layers.Layer):
    """Re-calls one attention layer (same object, shared weights) for its scores.

    Returns `[weights, pooled_1..n, squeezed_1..n]` as requested. A wrapper
    layer is needed because Keras' functional graph check reads the output
    count of a layer's *first* call (one tensor) and so rejects a second
    call of the same layer with `return_attention_scores=True` (two).
    """

    def __init__(self, attention, pooled=False, squeezed=False, **kwargs):
        super().__init__(**kwargs)
        self.attention = attention
        self.pooled = pooled
        self.squeezed = squeezed and isinstance(attention, BridgeAttention)

    def call(self, inputs):
        if isinstance(self.attention, BridgeAttention):
            _, weights = self.attention(inputs, training=False, return_attention_scores=True)
        else:
            _, weights = self.attention(inputs, return_attention_scores=True)
        outputs = [weights]
        features = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        pooled = [self._pool(x) for x in features]
        if self.pooled:
            outputs += pooled
        if self.squeezed:
            outputs += self._squeeze(pooled)
        return outputs

    def _pool(self, feature):
        rank = len(feature.shape)
        if self.attention.data_format == "channels_last":
            axes = tuple(range(1, rank - 1))
        else:
            axes = tuple(range(2, rank))
        return ops.mean(feature, axis=axes)

    def _squeeze(self, pooled):
        """The paper's squeezed features S_i, from the layer's own sublayers."""
        layer = self.attention
        vectors = [dense(x) for dense, x in zip(layer.squeeze_layers, pooled, strict=True)]
        if layer.version == "v1":
            vectors = [
                norm(x, training=False)
                for norm, x in zip(layer.squeeze_norms, vectors, strict=True)
            ]
        return vectors


def _check_squeezable(layer):
    needed = ("squeeze_layers", "squeeze_norms") if layer.version == "v1" else ("squeeze_layers",)
    missing = [name for name in needed if not hasattr(layer, name)]
    if missing:
        raise AnalysisError(
            f"Layer {layer.name!r} has no attribute {missing[0]!r}, so its squeezed features "
            "S_i cannot be read; use features='pooled'."
        )


def attention_probe(model, layers=None, features=(), predictions=False):
    """A model that returns the attention weights of `model`'s attention layers.

    Args:
        model: a functional Keras model (nested functional models are
            searched too).
        layers: None (all attention layers) or a list of layer names.
        features: which block features to return as well: `"pooled"`
            (global average of each input of the layer, `gap(X_i)`) and/or
            `"squeezed"` (the paper's `S_i`: v1 `BN_i(W_i gap(X_i))`, v2
            `W_i gap(X_i)`; BridgeAttention only).
        predictions: also return the model's output (single-output models).

    Returns:
        `(probe, names)`: `probe(x)` returns a dict with `"attention"`:
        `{layer name: [weights, pooled..., squeezed...]}` (and
        `"predictions"` when asked); `names` lists the layers in graph order.

    Raises:
        AnalysisError: see `select_attention_layers`; an unknown feature.

    Example:
    >>> import numpy as np
    >>> from keras_ba.analysis._examples import tiny_model
    >>> model = tiny_model("bav1")
    >>> probe, names = attention_probe(model, layers=["conv2_block1_ba"], features=["pooled"])
    >>> [tuple(x.shape) for x in probe(np.zeros((2, 16, 16, 3)))["attention"]["conv2_block1_ba"]]
    [(2, 8), (2, 8), (2, 8)]
    """
    features = (features,) if isinstance(features, str) else tuple(features)
    for feature in features:
        if feature not in FEATURES:
            raise AnalysisError(f"Unknown feature {feature!r}; choose from {FEATURES}.")
    selected = select_attention_layers(model, layers)
    if "squeezed" in features:
        for layer in selected:
            if isinstance(layer, BridgeAttention):
                _check_squeezable(layer)
    wanted = {id(layer) for layer in selected}
    attention = _probe_outputs(model, wanted, "pooled" in features, "squeezed" in features)
    names = [layer.name for layer in selected]
    outputs = {"attention": {name: attention[name] for name in names}}
    if predictions:
        if len(model.outputs) != 1:
            raise AnalysisError("predictions=True needs a model with a single output.")
        outputs["predictions"] = model.outputs[0]
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    return keras.Model(inputs, outputs, name=f"{model.name}_attention_probe"), names


def _probe_outputs(model, wanted, pooled, squeezed):
    """`{name: tensors}` in `model`'s own graph, recursing into nested models."""
    outputs = {}
    for layer in model.layers:
        if id(layer) in wanted:
            outputs[layer.name] = _AttentionProbe(layer, pooled, squeezed)(layer.input)
        elif isinstance(layer, keras.Model) and any(
            id(inner) in wanted for inner in find_attention_layers(layer)
        ):
            inner = _probe_outputs(layer, wanted, pooled, squeezed)
            inner_inputs = layer.inputs[0] if len(layer.inputs) == 1 else layer.inputs
            # `Functional.input` returns the nested model's own Input tensors;
            # `Operation.input` gives the tensors of its (first) call in `model`.
            call_inputs = keras.Operation.input.fget(layer)
            outputs.update(keras.Model(inner_inputs, inner)(call_inputs))
    return outputs


# === Data ===


def iterate_batches(data, batch_size=64):
    """Yields `(images, labels or None)` NumPy batches from `data`.

    Args:
        data: an array of model-ready images `(N, H, W, C)`; a tuple
            `(images, labels)` with integer or one-hot labels; or an
            iterable of such batches (a `tf.data.Dataset`, a generator, a
            `keras.utils.PyDataset`).
        batch_size: batch size used to split arrays.

    Raises:
        AnalysisError: an empty dataset, images that are not 4-D, labels
            whose count differs from the images'.

    Example:
    >>> import numpy as np
    >>> [x.shape[0] for x, _ in iterate_batches(np.zeros((5, 4, 4, 3)), 2)]
    [2, 2, 1]
    """
    count = 0
    for images, labels in _raw_batches(data, batch_size):
        images = np.asarray(images)
        if images.ndim < 3:
            raise AnalysisError(
                f"Expected batches of images (N, H, W, C); received an array of shape "
                f"{images.shape}."
            )
        if labels is not None:
            labels = np.asarray(labels)
            if labels.ndim == 2:
                labels = labels.argmax(axis=-1)
            labels = labels.reshape(-1).astype("int64")
            if len(labels) != len(images):
                raise AnalysisError(
                    f"Received {len(images)} images but {len(labels)} labels in one batch."
                )
        if len(images) == 0:
            continue
        count += len(images)
        yield images, labels
    if count == 0:
        raise AnalysisError("The data has no images: nothing to analyse.")


def _raw_batches(data, batch_size):
    if isinstance(data, np.ndarray) or (
        isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], np.ndarray)
    ):
        images, labels = (data, None) if isinstance(data, np.ndarray) else data
        if labels is not None and len(labels) != len(images):
            raise AnalysisError(f"Received {len(images)} images but {len(labels)} labels.")
        for begin in range(0, len(images), batch_size):
            end = begin + batch_size
            yield images[begin:end], None if labels is None else labels[begin:end]
        return
    iterator = data.as_numpy_iterator() if hasattr(data, "as_numpy_iterator") else data
    for item in iterator:
        if isinstance(item, (tuple, list)) and len(item) >= 2:
            yield item[0], item[1]
        elif isinstance(item, dict) and "images" in item:
            yield item["images"], item.get("labels")
        else:
            yield item, None


# === Collecting ===


@dataclasses.dataclass
class AttentionWeights:
    """Per-image channel weights of the attention layers of one model.

    Attributes:
        model_name: the model's name.
        layers: attention layer names in graph order.
        kinds: `{layer: "ba" | "se"}`.
        stages: `{layer: stage label}` (see `attention_stages`).
        weights: `{layer: float32 array (images, C_n)}`.
        labels: int array `(images,)`, or None when the data had no labels.
        predictions: predicted class per image, or None.
        pooled: `{layer: [array (images, C_i), ...]}` (when collected).
        squeezed: `{layer: [array (images, C_n // r), ...]}` (BA layers, when
            collected).

    Example:
        result = attention_weights(model, (images, labels))
        result.weights["conv4_block2_ba"].mean(axis=0)
    """

    model_name: str
    layers: tuple
    kinds: dict
    stages: dict
    weights: dict
    labels: np.ndarray | None = None
    predictions: np.ndarray | None = None
    pooled: dict = dataclasses.field(default_factory=dict)
    squeezed: dict = dataclasses.field(default_factory=dict)

    @property
    def num_images(self):
        """Number of images the weights were collected on."""
        return len(next(iter(self.weights.values())))


def attention_weights(model, data, layers=None, batch_size=64, features=()):
    """Per-image channel weights of every attention layer, in one pass.

    Runs `attention_probe` over `data` (inference mode: BatchNorms use
    their moving statistics).

    Args:
        model: a keras_ba model (any functional model with `BridgeAttention`
            or `SqueezeExcite` layers).
        data: model-ready images; see `iterate_batches` (labels are
            optional but needed for per-class aggregates).
        layers: None (all attention layers) or a list of layer names.
        batch_size: batch size for arrays.
        features: also collect `"pooled"` and/or `"squeezed"` block
            features (see `attention_probe`; `bridge_importance` uses them).

    Returns:
        An `AttentionWeights`; its `stages` follow `attention_stages`.

    Raises:
        AnalysisError: no attention layer, an unknown layer name, empty data.

    Example:
    >>> import numpy as np
    >>> from keras_ba.analysis._examples import tiny_model
    >>> model = tiny_model("bav1")
    >>> result = attention_weights(model, (np.random.rand(4, 16, 16, 3), np.arange(4) % 3))
    >>> result.stages["conv3_block1_ba"], result.labels.tolist()
    ('conv3', [0, 1, 2, 0])
    """
    features = (features,) if isinstance(features, str) else tuple(features)
    probe, names = attention_probe(
        model, layers, features, predictions=len(getattr(model, "outputs", [])) == 1
    )
    selected = {layer.name: layer for layer in select_attention_layers(model, names)}
    collected = {name: [] for name in names}
    labels, predictions = [], []
    have_labels = True
    for images, batch_labels in iterate_batches(data, batch_size):
        result = probe.predict_on_batch(images)
        for name in names:
            collected[name].append([_numpy(x) for x in result["attention"][name]])
        if "predictions" in result:
            predictions.append(_numpy(result["predictions"]).argmax(axis=-1))
        have_labels = have_labels and batch_labels is not None
        labels.append(batch_labels)
    weights, pooled, squeezed = {}, {}, {}
    for name in names:
        parts = [np.concatenate(column) for column in zip(*collected[name], strict=True)]
        weights[name] = parts[0]
        layer = selected[name]
        count = len(layer.input) if isinstance(layer.input, (list, tuple)) else 1
        rest = parts[1:]
        if "pooled" in features:
            pooled[name], rest = rest[:count], rest[count:]
        if "squeezed" in features and isinstance(layer, BridgeAttention):
            squeezed[name] = rest[:count]
    return AttentionWeights(
        model_name=model.name,
        layers=tuple(names),
        kinds={name: kind_of(selected[name]) for name in names},
        stages=attention_stages([selected[name] for name in names]),
        weights=weights,
        labels=np.concatenate(labels) if have_labels else None,
        predictions=np.concatenate(predictions) if predictions else None,
        pooled=pooled,
        squeezed=squeezed,
    )


def _numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x), dtype="float32")


# === Stages ===


def attention_stages(layers):
    """Groups attention layers into stages: `{layer name: stage label}`.

    The rule, in order:

    1. keras_ba names, when every layer has one: `conv{s}_block{i}_*`
       (BA-ResNet, ResNeXt) gives stage `conv{s}`, `block{s}{a,b,..}_*`
       (BA-EfficientNet) gives `block{s}`.
    2. Otherwise the resolution of the recalibrated feature map: consecutive
       layers at the same spatial size form a stage `stage1`, `stage2`, ...
       (a stage ends where a stride halves the resolution; MobileNetV3).
    3. Otherwise (unknown spatial sizes) every layer is its own stage.

    Args:
        layers: attention layers in graph order.

    Example:
    >>> from keras_ba.layers import SqueezeExcite
    >>> x = keras.Input((8, 8, 4))
    >>> a = SqueezeExcite(reduction=2, name="a"); b = SqueezeExcite(reduction=2, name="b")
    >>> _ = b(a(x))
    >>> attention_stages([a, b])
    {'a': 'stage1', 'b': 'stage1'}
    """
    names = [layer.name for layer in layers]
    for pattern in STAGE_PATTERNS:
        matches = [pattern.match(name) for name in names]
        if names and all(matches):
            return {name: match.group(1) for name, match in zip(names, matches, strict=True)}
    sizes = [_spatial_size(layer) for layer in layers]
    if any(size is None for size in sizes):
        return {name: f"stage{index + 1}" for index, name in enumerate(names)}
    stages, stage, previous = {}, 0, None
    for name, size in zip(names, sizes, strict=True):
        if size != previous:
            stage, previous = stage + 1, size
        stages[name] = f"stage{stage}"
    return stages


def _spatial_size(layer):
    feature = layer.input[-1] if isinstance(layer.input, (list, tuple)) else layer.input
    shape = tuple(feature.shape)
    spatial = shape[1:-1] if layer.data_format == "channels_last" else shape[2:]
    return None if any(dim is None for dim in spatial) else spatial
