"""BA backbones as KerasHub backbones: task models, presets, `convert --to-preset`.

Tiny models (one block per stage, 32-64 px). The preset made here is
loaded under the two other backends once (the JAX pass), and the command
line conversion runs once (backend-independent file work, the JAX pass).
"""

import json
import os

import keras
import numpy as np
import pytest
from conftest import BACKEND, REFERENCE_DIR, forward, only_in, run_python
from model_contract import randomize_weights

keras_hub = pytest.importorskip("keras_hub")

from keras_ba.applications import (  # noqa: E402
    BAEfficientNetBackbone,
    BAResNetBackbone,
    hub,
)

SIZE = 32
EFFICIENT_BLOCKS = [
    dict(kernel_size=3, repeats=1, filters_in=32, filters_out=16, expand_ratio=6,
         id_skip=True, strides=2, se_ratio=0.25),
]  # fmt: skip


def resnet(attention="bav1", size=SIZE, **kwargs):
    return BAResNetBackbone(
        [1, 1, 1, 1],
        [8, 8, 16, 16],
        block_type="basic",
        stem_filters=8,
        attention=attention,
        reduction=4,
        image_shape=(size, size, 3),
        **kwargs,
    )


def efficientnet():
    return BAEfficientNetBackbone(
        0.25, 1.0, blocks_args=EFFICIENT_BLOCKS, attention="bav2", image_shape=(SIZE, SIZE, 3)
    )


def images(count, size=SIZE, seed=0):
    """Raw RGB in [0, 255]: what the KerasHub preprocessor takes."""
    return np.random.default_rng(seed).uniform(0, 255, (count, size, size, 3)).astype("float32")


def imagenet_normalized(x):
    """The authors' input convention, computed here in NumPy."""
    mean = np.array([0.485, 0.456, 0.406]) * 255
    std = np.array([0.229, 0.224, 0.225]) * 255
    return ((x - mean) / std).astype("float32")


def outputs(model, x):
    return keras.ops.convert_to_numpy(model.predict(x, verbose=0))


# === ImageClassifier ===


@pytest.mark.parametrize("family", ["resnet", "efficientnet"])
def test_image_classifier_fits_predicts_and_round_trips(family, tmp_path):
    backbone = resnet() if family == "resnet" else efficientnet()
    assert isinstance(backbone, keras_hub.models.Backbone)
    model = hub.image_classifier(backbone, num_classes=3)
    assert isinstance(model, keras_hub.models.ImageClassifier)
    assert model.backbone is backbone  # unchanged: the task holds the BA backbone itself
    x, y = images(8), np.arange(8) % 3
    # the preprocessor is the ImageNet normalization the BA models expect
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model.preprocessor(x)), imagenet_normalized(x), atol=1e-4
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-2), run_eagerly=BACKEND == "torch")
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    before = outputs(model, x)
    path = str(tmp_path / "classifier.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert type(loaded) is type(model) and type(loaded.backbone) is type(backbone)
    np.testing.assert_allclose(outputs(loaded, x), before, atol=1e-5)


# === Presets ===

PRESET_FILES = {
    "config.json",
    "image_converter.json",
    "metadata.json",
    "model.weights.h5",
    "preprocessor.json",
    "task.json",
    "task.weights.h5",
}

FRESH_PRESET = """
import json, sys
import keras_hub, keras_ba  # nothing else: keras_ba registers its KerasHub classes
import keras, numpy as np
preset, x = sys.argv[1], np.load(sys.argv[2])
classifier = keras_hub.models.ImageClassifier.from_preset(preset)
backbone = keras_hub.models.Backbone.from_preset(preset)
print(json.dumps({
    "backend": keras.backend.backend(),
    "classes": [type(classifier).__name__, type(backbone).__name__],
    "logits": keras.ops.convert_to_numpy(classifier.predict(x, verbose=0)).tolist(),
    "features": keras.ops.convert_to_numpy(backbone(x, training=False)).tolist(),
}))
"""


@pytest.fixture(scope="module")
def preset(tmp_path_factory):
    """A trained-looking classifier (random weights, BN statistics included) saved as a preset."""
    keras.utils.set_random_seed(3)
    model = hub.image_classifier(resnet(attention="bav2"), num_classes=4, image_size=(SIZE, SIZE))
    randomize_weights(model)
    folder = tmp_path_factory.mktemp("preset") / "ba_resnet_tiny"
    model.save_to_preset(str(folder))
    return model, str(folder)


def test_preset_has_kerashub_layout_and_loads_identically(preset):
    model, folder = preset
    assert set(os.listdir(folder)) == PRESET_FILES
    with open(os.path.join(folder, "config.json")) as file:
        config = json.load(file)
    assert config["registered_name"] == "keras_ba>BAResNetBackbone"
    with open(os.path.join(folder, "metadata.json")) as file:
        assert json.load(file)["tasks"] == ["ImageClassifier"]
    x = images(2, seed=1)
    classifier = keras_hub.models.ImageClassifier.from_preset(folder)
    assert type(classifier) is type(model)
    np.testing.assert_array_equal(outputs(classifier, x), outputs(model, x))
    backbone = keras_hub.models.Backbone.from_preset(folder)
    assert type(backbone) is BAResNetBackbone
    assert backbone.get_config() == model.backbone.get_config()
    features = imagenet_normalized(x)
    np.testing.assert_array_equal(forward(backbone, features), forward(model.backbone, features))
    # the family's own class loads it too, and the backbone saves a preset on its own
    again = BAResNetBackbone.from_preset(folder)
    np.testing.assert_array_equal(forward(again, features), forward(model.backbone, features))


@only_in("jax", reason="a preset is files: loaded under the two other backends once, from JAX")
def test_preset_loads_under_the_other_backends(preset, tmp_path):
    model, folder = preset
    x = images(2, seed=2)
    np.save(tmp_path / "x.npy", x)
    expected_logits = outputs(model, x)
    expected_features = forward(model.backbone, x)  # the backbone alone takes any input
    for other in ("tensorflow", "torch"):
        code = f"import sys; sys.argv = {['x', folder, str(tmp_path / 'x.npy')]!r}\n"
        result = run_python(code + FRESH_PRESET, backend=other)
        assert result.returncode == 0, result.stderr[-3000:]
        report = json.loads(result.stdout.strip().splitlines()[-1])
        assert report["backend"] == other
        assert report["classes"] == ["BAResNetImageClassifier", "BAResNetBackbone"]
        np.testing.assert_allclose(report["logits"], expected_logits, atol=1e-5)
        np.testing.assert_allclose(report["features"], expected_features, atol=1e-4)


# === keras-ba convert --to-preset ===


@only_in(
    "jax", reason="a conversion writes files, the same on every backend: once, in the JAX pass"
)
def test_convert_to_preset_gives_the_fixtures_trunk(tmp_path, capsys):
    from keras_ba.cli import main

    with np.load(REFERENCE_DIR / "parity" / "bav2_basic.npz") as data:
        weights = {k[2:]: data[k].astype("float32") for k in data.files if k.startswith("w/")}
        x = data["x_eval_nchw"].transpose(0, 2, 3, 1).astype("float32")  # ImageNet-normalized
        logits = data["logits_eval"]
        meta = json.loads(str(data["meta"]))
    checkpoint = tmp_path / "authors.npz"
    np.savez(checkpoint, **weights)
    (tmp_path / "presets").mkdir()
    folder = tmp_path / "presets" / "ba_resnet_fixture"
    argv = ["convert", str(checkpoint), "--arch", "ba_resnet18", "--block", meta["block"]]
    argv += ["--depths", *map(str, meta["depths"]), "--widths", *map(str, meta["widths"])]
    argv += ["--stem-filters", str(meta["stem"]), "--classifier-activation", "none"]
    assert main(argv + ["--to-preset", str(folder)]) == 0
    assert f"Wrote classifier preset {folder}" in capsys.readouterr().out
    assert set(os.listdir(folder)) == PRESET_FILES
    assert sorted(os.listdir(tmp_path / "presets")) == ["ba_resnet_fixture"]  # no temporary left

    backbone = keras_hub.models.Backbone.from_preset(str(folder))
    features = forward(backbone, x)
    # the trunk, checked through the authors' own classifier weights (NumPy)
    pooled = features.mean(axis=(1, 2))
    np.testing.assert_allclose(
        pooled @ weights["fc.weight"].T + weights["fc.bias"], logits, atol=1e-4
    )
    classifier = keras_hub.models.ImageClassifier.from_preset(str(folder))
    np.testing.assert_allclose(forward(classifier, x), logits, atol=1e-4)

    assert main(argv + ["--to-preset", str(folder)]) == 1  # not over an existing preset
    assert "exists and is not empty" in capsys.readouterr().err
