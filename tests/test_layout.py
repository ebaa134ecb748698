"""Training in channels_first, saving in channels_last (`keras_ba.training.layout`).

A model built with `data_format="channels_first"` takes NHWC images and
transposes them once; its channels_last copy must compute the same function
and carry the optimizer's state, so that the saved file is what the
channels_first model would have written, in the layout every backend runs.
TensorFlow has no channels_first convolution on CPU: the models run in the
JAX and PyTorch passes.
"""

import json
import zipfile

import keras
import numpy as np
import pytest
from conftest import BACKEND, forward, only_in

from keras_ba.errors import WorkflowError
from keras_ba.training import layout
from keras_ba.training.models import ModelSpec, build_model

RUNS_CHANNELS_FIRST = pytest.mark.skipif(
    BACKEND == "tensorflow", reason="TensorFlow has no channels_first convolution on CPU"
)
TINY = ModelSpec("ba_resnet18", depths=(1, 1, 1, 1), widths=(8, 16, 32, 64))


def test_auto_is_channels_first_for_resnets_under_pytorch_only():
    def auto(name, backend):
        return layout.resolve_data_format("auto", name, backend=backend)

    assert auto("ba_resnet18", "torch") == auto("ba_resnet50", "torch") == "channels_first"
    assert auto("ba_efficientnet_b0", "torch") == "channels_last"
    assert auto("ba_resnext50_32x4d", "torch") == "channels_last"  # not measured
    assert auto("ba_mobilenet_v3_small", "torch") == "channels_last"
    assert auto("ba_resnet18", "jax") == auto("ba_resnet18", "tensorflow") == "channels_last"
    explicit = layout.resolve_data_format("channels_first", "ba_efficientnet_b0", "torch")
    assert explicit == "channels_first"
    on_gpu = layout.resolve_data_format("channels_first", "m", "tensorflow", has_gpu=True)
    assert on_gpu == "channels_first"
    with pytest.raises(ValueError, match="needs a GPU under TensorFlow"):
        layout.resolve_data_format("channels_first", "m", backend="tensorflow", has_gpu=False)
    with pytest.raises(ValueError, match="`data_format` must be one of"):
        layout.resolve_data_format("nchw")


def test_the_input_stays_nhwc_and_is_transposed_once():
    model = TINY.build(10, 32, data_format="channels_first")
    assert model.input_shape == (None, 32, 32, 3)
    permutes = [x for x in model.layers if isinstance(x, keras.layers.Permute)]
    assert [x.name for x in permutes] == [layout.TRANSPOSE_NAME]
    assert model.get_layer("conv1_conv").data_format == "channels_first"
    with pytest.raises(WorkflowError, match="`data_format` must be 'channels_last' or"):
        build_model("ba_resnet18", 10, 32, data_format="NCHW")


@only_in(
    "torch",
    reason="building and copying weights is backend-independent: once, in the PyTorch pass "
    "(JAX compiles every weight's initializer of these full-size models)",
)
@pytest.mark.parametrize("name", ["ba_efficientnet_b0", "ba_mobilenet_v3_small"])
def test_other_families_build_in_channels_first(name):
    model = ModelSpec(name).build(5, 64, data_format="channels_first")
    copy = layout.channels_last_copy(model, lambda fmt: ModelSpec(name).build(5, 64, fmt))
    assert model.input_shape == copy.input_shape == (None, 64, 64, 3)
    for a, b in zip(model.weights, copy.weights, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))


@RUNS_CHANNELS_FIRST
def test_channels_last_copy_computes_the_same_and_keeps_the_optimizer_state(tmp_path):
    def build(data_format):
        return TINY.build(10, 16, data_format=data_format)

    model = build("channels_first")
    model.compile(
        optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    rng = np.random.default_rng(0)
    images = rng.normal(size=(8, 16, 16, 3)).astype("float32")
    labels = np.arange(8) % 10
    # Two steps (momentum is not zero now), in the batch of the steps below:
    # one compiled train step on JAX.
    model.fit(images, labels, batch_size=8, epochs=2, verbose=0, shuffle=False)

    copy = layout.channels_last_copy(model, build)
    config = json.dumps(copy.get_config())
    assert '"channels_first"' not in config and layout.TRANSPOSE_NAME not in config
    expected = forward(model, images)
    np.testing.assert_allclose(forward(copy, images), expected, atol=1e-5)
    momenta = [keras.ops.convert_to_numpy(v) for v in model.optimizer.variables]
    assert any(np.abs(m).max() > 0 for m in momenta[2:])
    for mine, theirs in zip(copy.optimizer.variables, momenta, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(mine), theirs)

    path = tmp_path / "model.keras"
    copy.save(path)
    with zipfile.ZipFile(path) as archive:
        assert "channels_first" not in archive.read("config.json").decode()
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(forward(loaded, images), expected, atol=1e-5)
    # Training goes on from the same state in both layouts.
    model.fit(images, labels, batch_size=8, epochs=1, verbose=0, shuffle=False)
    loaded.fit(images, labels, batch_size=8, epochs=1, verbose=0, shuffle=False)
    for a, b in zip(model.weights, loaded.weights, strict=True):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), atol=1e-5
        )
