"""One helper that runs the model contract of a backbone configuration.

keras-hub's `run_backbone_test`, for keras_ba: every family's test file
calls `run_backbone_contract` once per configuration. It checks

- config: `from_config(get_config())` rebuilds the same backbone, and the
  class serializes under its registered `keras_ba>` name;
- shapes: the output and every `pyramid_outputs` level;
- training: a classifier on the backbone, compiled with `jit_compile=True`
  (XLA on TensorFlow and JAX; PyTorch runs eagerly, see below) or run the
  cheapest way, lowers the loss in one step and moves every trainable weight
  (a weight that never moves is a branch computed but unused);
- saving: the backbone and the classifier round-trip through `.keras` with
  `safe_mode=True`, outputs equal, `pyramid_outputs` kept;
- mixed precision: `dtype="mixed_bfloat16"` reaches every layer (float32
  variables, bfloat16 compute and output).

Rebuilds that only need shapes run under `keras.StatelessScope` (no
initial values: on JAX each new weight shape would cost an XLA compile);
`check_pyramid_shapes` runs pyramids on data at several sizes and in both
data formats, and test_resnet trains a classifier under mixed precision.

`check_loads_under_other_backends` saves a model and loads it in a fresh
process that only imports keras_ba, once per other backend
(`check_all_load_under_other_backends`: several models, one process per backend).

Also here: two user-side attention modules, a `keras.layers.Layer`
subclass (`PooledGate`) and a name registered with
`keras_ba.layers.register_attention` (`"test_swish_bridge"`), that the
family tests build into models.
"""

import json

import keras
import numpy as np
from conftest import BACKEND, BACKENDS, forward, run_python, shapes_only
from keras import layers, ops

from keras_ba.layers import BridgeAttention, attention_names, register_attention

# === User-side attention modules ===


@keras.saving.register_keras_serializable(package="keras_ba_tests")
class PooledGate(layers.Layer):
    """A user's own attention: one gate from all the block's pooled features.

    `w = sigmoid(W concat_i(gap(X_i)))`, output `X_n * w`. It accepts the
    keyword arguments every block passes (`ATTENTION_KWARGS`).
    """

    def __init__(
        self,
        reduction=16,
        hidden_activation="relu",
        gate_activation="sigmoid",
        data_format=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.reduction = reduction
        self.hidden_activation = hidden_activation
        self.gate_activation = gate_activation
        self.data_format = data_format or keras.config.image_data_format()

    def build(self, input_shape):
        axis = -1 if self.data_format == "channels_last" else 1
        channels = [shape[axis] for shape in input_shape]
        self.gate = layers.Dense(
            channels[-1], activation=self.gate_activation, name="gate", dtype=self.dtype_policy
        )
        self.gate.build((None, sum(channels)))

    def call(self, inputs):
        axes = (1, 2) if self.data_format == "channels_last" else (2, 3)
        pooled = ops.concatenate([ops.mean(x, axis=axes) for x in inputs], axis=-1)
        weights = ops.cast(self.gate(pooled), inputs[-1].dtype)
        if self.data_format == "channels_last":
            return inputs[-1] * weights[:, None, None, :]
        return inputs[-1] * weights[:, :, None, None]

    def compute_output_shape(self, input_shape):
        return input_shape[-1]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "reduction": self.reduction,
                "hidden_activation": self.hidden_activation,
                "gate_activation": self.gate_activation,
                "data_format": self.data_format,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_ba_tests")
def swish_bridge(features, name, **kwargs):
    """A registered builder: BAv1 with a swish hidden activation."""
    kwargs["hidden_activation"] = "swish"
    return BridgeAttention(version="v1", name=name, **kwargs)(features)


CUSTOM_NAME = "test_swish_bridge"
if CUSTOM_NAME not in attention_names():  # a second import must not re-register
    register_attention(CUSTOM_NAME, swish_bridge)


# === Tiny configurations shared by several test modules ===


def tiny_efficientnet_blocks(kernel_size=3, repeats=2):
    """A two-stage EfficientNet block table (`blocks_args`) of a few channels.

    A block without expansion (keeps SE), then an expanded stage of `repeats`
    blocks with `kernel_size` kernels (with 2 or more, the second one has the
    residual add and drop-connect).
    """
    return [
        dict(kernel_size=3, repeats=1, filters_in=32, filters_out=16, expand_ratio=1,
             id_skip=True, strides=1, se_ratio=0.25),
        dict(kernel_size=kernel_size, repeats=repeats, filters_in=16, filters_out=24,
             expand_ratio=6, id_skip=True, strides=2, se_ratio=0.25),
    ]  # fmt: skip


# === Helpers ===


def to_numpy(x):
    return ops.convert_to_numpy(x)


def as_json(config):
    """Tuples -> lists, as a config reads after a trip through a file."""
    return json.loads(json.dumps(config))


def randomize_weights(model, seed=0):
    """Random values for every variable, BatchNorm statistics included, so
    that a load that forgets any of them changes the outputs."""
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        value = rng.normal(scale=0.2, size=weight.shape)
        if "variance" in weight.path:
            value = np.abs(value) + 0.5
        weight.assign(value.astype(weight.dtype))


def _pyramid_shapes(pyramid):
    return {level: tuple(tensor.shape) for level, tensor in pyramid.items()}


def _classifier(backbone, classes):
    x = layers.GlobalAveragePooling2D(data_format=backbone.data_format)(backbone.output)
    return keras.Model(backbone.input, layers.Dense(classes, dtype="float32")(x))


# === The contract ===


def run_backbone_contract(
    backbone_cls,
    init_kwargs,
    input_data,
    expected_output_shape,
    expected_pyramid_shapes,
    tmp_path,
    frozen_weights=(),
    jit_compile=True,
):
    """Checks a backbone configuration end to end (see the module docstring).

    Args:
        backbone_cls: a keras_ba backbone class.
        init_kwargs: constructor arguments of a tiny configuration.
        input_data: a NumPy batch of images (2 to 4 of them).
        expected_output_shape: output shape without the batch axis.
        expected_pyramid_shapes: `{level: shape without the batch axis}`.
        frozen_weights: substrings of weight paths allowed not to move in a
            training step, with the reason stated by the caller.
        jit_compile: train with `jit_compile=True` (XLA; PyTorch stays
            eager), or the cheapest way: eagerly on TensorFlow and PyTorch
            (no graph to trace), compiled on JAX (its eager steps are
            slower than a compile). A compile costs tens of seconds on a
            busy CPU: one configuration per family is enough.

    Returns:
        `(backbone, loaded)`: the trained backbone and its copy loaded from
        `.keras`.
    """
    batch = len(input_data)
    # Config and serialization.
    backbone = backbone_cls(**init_kwargs)
    config = backbone.get_config()
    assert as_json(shapes_only(backbone_cls.from_config, config).get_config()) == as_json(config)
    serialized = keras.saving.serialize_keras_object(backbone)
    assert serialized["registered_name"] == f"keras_ba>{backbone_cls.__name__}"
    assert all("." not in w.path for w in backbone.weights)

    # Shapes.
    assert backbone.output_shape == (None,) + tuple(expected_output_shape)
    expected_pyramid = {k: (None,) + tuple(v) for k, v in expected_pyramid_shapes.items()}
    assert _pyramid_shapes(backbone.pyramid_outputs) == expected_pyramid
    # No layer opts out of XLA, so `jit_compile="auto"` is XLA wherever Keras
    # allows it (Keras' TensorFlow trainer turns it off on CPU-only machines
    # and under tf.distribute, whatever the model).
    opted_out = [x.name for x in backbone._flatten_layers() if not x.supports_jit]
    assert not opted_out, opted_out

    # One training step lowers the loss and moves every trainable weight.
    model = _classifier(backbone, classes=3)
    if BACKEND == "torch":
        # torch.compile costs ~50 s per graph on CPU: PyTorch runs eagerly
        # here; test_bridge_attention compiles a BA layer under PyTorch.
        mode = dict(run_eagerly=True)
    elif jit_compile or BACKEND == "jax":
        mode = dict(jit_compile=True)
    else:
        mode = dict(run_eagerly=True)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        **mode,
    )
    labels = np.arange(batch) % 3
    before = [to_numpy(w) for w in model.trainable_weights]
    # Two epochs of one batch: loss[1] is measured after exactly one step.
    history = model.fit(input_data, labels, epochs=2, batch_size=batch, shuffle=False, verbose=0)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)) and losses[1] < losses[0], losses
    for weight, old in zip(model.trainable_weights, before, strict=True):
        if any(tag in weight.path for tag in frozen_weights):
            continue
        assert not np.allclose(to_numpy(weight), old), f"{weight.path} got no gradient"

    # .keras round trips in safe mode: the backbone (its class, config and
    # pyramid) and the classifier (a plain functional model of its layers).
    path = str(tmp_path / "backbone.keras")
    backbone.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert type(loaded) is backbone_cls
    assert as_json(loaded.get_config()) == as_json(backbone.get_config())
    assert _pyramid_shapes(loaded.pyramid_outputs) == expected_pyramid
    np.testing.assert_allclose(
        forward(loaded, input_data),
        forward(backbone, input_data),
        rtol=1e-6,
        atol=1e-6,
    )
    model_path = str(tmp_path / "classifier.keras")
    model.save(model_path)
    loaded_model = keras.saving.load_model(model_path, safe_mode=True)
    assert as_json(loaded_model.get_config()) == as_json(model.get_config())
    np.testing.assert_allclose(
        forward(loaded_model, input_data),
        forward(model, input_data),
        rtol=1e-6,
        atol=1e-6,
    )

    # Mixed precision through the `dtype` argument, global policy float32.
    mixed = shapes_only(backbone_cls, **init_kwargs, dtype="mixed_bfloat16")
    for layer in mixed.layers:
        if not isinstance(layer, layers.InputLayer):
            assert layer.dtype_policy.name == "mixed_bfloat16", layer.name
    assert all(w.dtype == "float32" for w in mixed.weights)
    assert mixed.output.dtype == "bfloat16"
    assert all(t.dtype == "bfloat16" for t in mixed.pyramid_outputs.values())
    return backbone, loaded


# === Across backends ===

CROSS_LOAD = """
import json, sys, numpy as np, keras_ba
import keras
reports = {}
for case in json.loads(sys.argv[1]):
    model = keras_ba.load_model(case["path"], safe_mode=True)  # imports what the file names
    report = {"backend": keras.backend.backend()}
    x = np.load(case["inputs"])
    y = keras.ops.convert_to_numpy(model(x, training=False))
    report["max_diff"] = float(np.abs(y - np.load(case["expected"])).max())
    report["pyramid"] = sorted(getattr(model, "pyramid_outputs", {}))
    if case["fit"]:
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
        history = model.fit(x, np.arange(len(x)) % 10, epochs=1, verbose=0)
        report["loss"] = history.history["loss"][0]
    reports[case["name"]] = report
print(json.dumps(reports))
"""


def check_loads_under_other_backends(model, input_data, tmp_path, fit=False, targets=None):
    """Saves `model` here and loads it under each other backend (or `targets`).

    Each load runs in a fresh process that only imports keras_ba; its
    outputs must equal this backend's, a backbone keeps its
    `pyramid_outputs` levels, and with `fit=True` it trains one epoch.

    Returns:
        `{backend: report}` with `max_diff`, `pyramid` (level names) and,
        with `fit`, the finite `loss`.
    """
    reports = check_all_load_under_other_backends(
        {"model": (model, input_data)}, tmp_path, fit=fit, targets=targets
    )
    return {backend: report["model"] for backend, report in reports.items()}


def check_all_load_under_other_backends(models, tmp_path, fit=False, targets=None):
    """`check_loads_under_other_backends` for `{name: (model, input_data)}`:
    one fresh process per other backend loads them all (a process start,
    imports included, costs several seconds).

    Returns:
        `{backend: {name: report}}`.
    """
    cases = []
    for name, (model, input_data) in models.items():
        folder = tmp_path / f"cross_load_{name}"
        folder.mkdir()
        path, inputs, expected = (str(folder / f) for f in ("m.keras", "x.npy", "y.npy"))
        model.save(path)
        np.save(inputs, input_data)
        np.save(expected, forward(model, input_data))
        cases.append(dict(name=name, path=path, inputs=inputs, expected=expected, fit=fit))
    reports = {}
    for other in targets or BACKENDS:
        if other == BACKEND:
            continue
        code = f"import sys; sys.argv = ['load', {json.dumps(cases)!r}]\n" + CROSS_LOAD
        result = run_python(code, backend=other, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        by_name = json.loads(result.stdout.strip().splitlines()[-1])
        assert sorted(by_name) == sorted(models)
        for name, report in by_name.items():
            assert report["backend"] == other
            assert report["max_diff"] < 1e-5, (name, report)
            assert report["pyramid"] == sorted(getattr(models[name][0], "pyramid_outputs", {}))
            if fit:
                assert np.isfinite(report["loss"]), (name, report)
        reports[other] = by_name
    return reports


# === Pyramid shapes ===


def _to_format(shape, data_format):
    """(h, w, c) -> the shape in `data_format`."""
    return tuple(shape) if data_format == "channels_last" else (shape[2], shape[0], shape[1])


def check_pyramid_shapes(build, expected, sizes=(64, 96)):
    """`pyramid_outputs` shapes at several input sizes, in both data formats.

    Args:
        build: `build(image_shape, data_format)` returns a backbone.
        expected: `expected(size)` returns `{level: (h, w, c)}` for a
            `size` x `size` image, computed from the architecture.
        sizes: image sides to check.

    Symbolic shapes come from backbones built for each size (shapes only);
    computed shapes from one fully convolutional backbone run at every size,
    in channels_first under PyTorch (TensorFlow on CPU has no channels_first
    convolution; JAX's is covered by the channels_first parity fixture).
    """
    for data_format in ("channels_last", "channels_first"):
        for size in sizes:
            image_shape = _to_format((size, size, 3), data_format)
            backbone = shapes_only(build, image_shape, data_format)
            want = {k: (None,) + _to_format(v, data_format) for k, v in expected(size).items()}
            assert _pyramid_shapes(backbone.pyramid_outputs) == want, (data_format, size)
        if data_format == "channels_first" and BACKEND != "torch":
            # TensorFlow on CPU has no channels_first convolution; JAX runs it
            # (the channels_first parity fixture), but compiles every eager op
            # per shape, so the eager run is PyTorch's.
            continue
        pyramid = build(_to_format((None, None, 3), data_format), data_format).pyramid_model()
        for size in sizes:
            images = np.zeros((1,) + _to_format((size, size, 3), data_format), "float32")
            got = {k: tuple(v.shape) for k, v in forward(pyramid, images).items()}
            want = {k: (1,) + _to_format(v, data_format) for k, v in expected(size).items()}
            assert got == want, (data_format, size)
