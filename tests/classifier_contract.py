"""The classifier contract: one helper every family's test calls.

keras-hub's `run_image_classifier_test`, for keras_ba's keras.applications-
style builders (`BAResNet`, `BAEfficientNet`, ..., and the named variants):
`run_classifier_contract(build, ...)` checks, on a tiny configuration,

- heads: `include_top=True` gives `(None, classes)` through `predictions`;
  `include_top=False` gives the feature map, `pooling="avg"|"max"` the
  pooled vector through `avg_pool` / `max_pool`; no layer name holds '.'
  (refused under PyTorch);
- saving: `.keras` round trip with `safe_mode=True`, and the `weights=`
  argument from a `.weights.h5` and from a `.keras` file, outputs equal;
- mixed precision: under `mixed_bfloat16` the named attention layer
  computes in bfloat16, the variables and the predictions stay float32.

The backbone contract (fit moves every weight, pyramids, `jit_compile`)
is `model_contract.run_backbone_contract`; the layers' is
`layer_contract.run_layer_contract`.
"""

import keras
import numpy as np
from conftest import forward, shapes_only


def check_heads(build, classes, features_shape):
    """Output shapes and head layer names of the four head settings."""
    channels = features_shape[-1]
    expected = {
        (True, None): ((None, classes), "predictions"),
        (False, None): ((None, *features_shape), None),
        (False, "avg"): ((None, channels), "avg_pool"),
        (False, "max"): ((None, channels), "max_pool"),
    }
    for (include_top, pooling), (shape, last) in expected.items():
        model = shapes_only(build, include_top=include_top, pooling=pooling)
        assert model.output_shape == shape, (include_top, pooling, model.output_shape)
        if last is not None:
            assert model.layers[-1].name == last
        assert all("." not in layer.name for layer in model.layers)


def check_saving(build, x, tmp_path):
    """`.keras` with safe_mode=True, and `weights=` from both file kinds."""
    model = build()
    expected = forward(model, x)
    path = str(tmp_path / "classifier.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(forward(loaded, x), expected)
    weights_path = str(tmp_path / "classifier.weights.h5")
    model.save_weights(weights_path)
    for source in (weights_path, path):
        again = build(weights=source)  # the same program as `expected`: equal bits
        np.testing.assert_array_equal(forward(again, x), expected)


def check_mixed_precision(build, attention_layer):
    """bfloat16 compute in `attention_layer`, float32 variables and output."""
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = shapes_only(build)
        assert model.get_layer(attention_layer).compute_dtype == "bfloat16"
        assert model.get_layer("predictions").compute_dtype == "float32"
        assert all(w.dtype == "float32" for w in model.weights)
        assert model.outputs[0].dtype == "float32"
    finally:
        keras.config.set_dtype_policy("float32")


def run_classifier_contract(build, x, classes, features_shape, attention_layer, tmp_path):
    """Runs the whole classifier contract on the tiny builder `build`.

    Args:
        build: `build(**kwargs) -> keras.Model`, a tiny classifier whose
            keyword arguments are the keras.applications ones.
        x: a batch of inputs for `build()`.
        classes: the class count `build()` uses.
        features_shape: the trunk's output shape without the batch axis.
        attention_layer: the name of one attention layer of `build()`.
        tmp_path: a folder for the saved files.
    """
    check_heads(build, classes, features_shape)
    check_saving(build, x, tmp_path)
    check_mixed_precision(build, attention_layer)
