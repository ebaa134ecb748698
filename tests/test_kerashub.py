"""BA backbones as KerasHub backbones: task models, presets, `convert --to-preset`.

Tiny models (one block per stage, 32-64 px). Checks that do not depend on
the backend run in one pass each: the preset loaded under the two other
backends and the lean import (PyTorch pass), the command-line conversion
(TensorFlow pass), the augmentation rates (PyTorch pass).
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
    # the cheapest way per backend: eager on TensorFlow and PyTorch, XLA on JAX
    model.compile(optimizer=keras.optimizers.Adam(1e-2), run_eagerly=BACKEND != "jax")
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


@only_in(
    "torch",
    reason="a preset is files: loaded under the two other backends once, from PyTorch "
    "(the pass with the least compiling)",
)
def test_preset_loads_under_the_other_backends(preset, tmp_path):
    model, folder = preset
    x = images(2, seed=2)
    np.save(tmp_path / "x.npy", x)
    expected_logits = outputs(model, x)
    expected_features = forward(model.backbone, x)  # the backbone alone takes any input
    for other in [b for b in ("tensorflow", "jax", "torch") if b != BACKEND]:
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
    "tensorflow",
    reason="a conversion writes files, the same on every backend: once, in the TensorFlow pass",
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


# === Dense tasks: KerasHub's RetinaNet and DeepLabV3 on a BA backbone ===

FRESH_DETECTOR = """
import sys, numpy as np, keras_ba
model = keras_ba.load_model(sys.argv[1], safe_mode=True)  # imports what the file names
x = np.load(sys.argv[2])
raw = {k: np.asarray(v) for k, v in model(x, training=False).items()}
np.savez(sys.argv[3], encoder=type(model.backbone.image_encoder).__name__, **raw)
"""


def _fit_steps(model, x, y, steps=2, **compile_args):
    """A few training steps, the cheapest way per backend (XLA on JAX)."""
    mode = dict(jit_compile=True) if BACKEND == "jax" else dict(run_eagerly=True)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), **compile_args, **mode)
    batch = len(x) // steps
    history = model.fit(x, y, batch_size=batch, epochs=1, shuffle=False, verbose=0)
    assert np.isfinite(history.history["loss"][0]), history.history


def _check_keras_round_trip(model, x, tmp_path):
    raw = forward(model, x)
    path = str(tmp_path / "task.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert type(loaded) is type(model)
    assert type(loaded.backbone.image_encoder) is type(model.backbone.image_encoder)
    keras.tree.map_structure(np.testing.assert_array_equal, forward(loaded, x), raw)
    return path, raw


def test_retinanet_on_a_ba_backbone_trains_and_round_trips(tmp_path):
    from keras_ba import cv

    data = cv.make_digit_canvases(4, 64, digits=(0, 1), seed=0)
    x = imagenet_normalized(data["images"])
    boxes = cv.to_bounding_boxes(data, "yxyx")
    keras.utils.set_random_seed(0)
    model = cv.build_retinanet(
        resnet(size=64), 2, "yxyx", anchor_size=2, head_conv_layers=1, confidence_threshold=0.0
    )
    assert isinstance(model, keras_hub.models.RetinaNetObjectDetector)
    assert isinstance(model.backbone.image_encoder, BAResNetBackbone)  # the BA backbone itself
    _fit_steps(model, x, {"boxes": boxes["boxes"], "labels": boxes["classes"]})
    path, raw = _check_keras_round_trip(model, x[:2], tmp_path)
    assert raw["cls_logits"].shape == (2, 9 * (8 * 8 + 4 * 4 + 2 * 2), 2)  # 9 anchors, P3..P5
    if BACKEND == "tensorflow":  # once: a fresh process that only imports keras_ba
        np.save(tmp_path / "x.npy", x[:2])
        argv = ["x", path, str(tmp_path / "x.npy"), str(tmp_path / "out.npz")]
        result = run_python(f"import sys; sys.argv = {argv!r}\n" + FRESH_DETECTOR)
        assert result.returncode == 0, result.stderr[-3000:]
        fresh = np.load(tmp_path / "out.npz")
        assert str(fresh["encoder"]) == "BAResNetBackbone"
        for key, value in raw.items():
            np.testing.assert_array_equal(fresh[key], value)


def test_deeplab_v3_on_a_ba_backbone_trains_and_round_trips(tmp_path):
    from keras_ba import cv

    data = cv.make_digit_canvases(4, SIZE, digits=(0, 1), seed=0)
    x = imagenet_normalized(data["images"])
    keras.utils.set_random_seed(0)
    model = cv.build_deeplab_v3_plus(resnet(), 3, projection_filters=8, dilation_rates=(1, 2))
    assert isinstance(model, keras_hub.models.DeepLabV3ImageSegmenter)
    assert isinstance(model.backbone.image_encoder, BAResNetBackbone)
    # KerasHub's default loss and metric (categorical, one-hot masks): under PyTorch
    # Keras' sparse cross-entropy over (B, H, W, C) fails in backward (non-contiguous grad)
    _fit_steps(model, x, np.eye(3, dtype="float32")[data["masks"]])
    _, raw = _check_keras_round_trip(model, x[:2], tmp_path)
    assert raw.shape == (2, SIZE, SIZE, 3)
    np.testing.assert_allclose(raw.sum(-1), 1.0, atol=1e-5)  # softmax per pixel


# === Training augmentation on Keras core layers ===


def _run_stage(stage, batch, times):
    """`stage` applied `times` to `batch` inside tf.data (where Keras'
    preprocessing layers compute with TensorFlow under every backend)."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensors(batch).repeat(times).map(stage)
    return [{k: v.numpy() for k, v in out.items()} for out in ds]


@only_in(
    "torch",
    reason="tf.data computes the same under every backend (Keras' layers switch to TensorFlow "
    "there): measured once, in a pass whose Keras backend is not TensorFlow",
)
def test_augmentations_are_applied_at_their_configured_rates():
    from keras_ba.data import augment
    from keras_ba.training.recipes import get_recipe

    recipe = get_recipe("bav2", image_size=16)
    stages = dict(augment.train_augmenters(recipe, seed=0))
    rng = np.random.default_rng(0)
    count, side = 32, 16
    labels = np.eye(count, dtype="float32")  # image i is class i

    # Flip, 0.5 per image: a left-to-right ramp comes back reversed.
    ramp = np.broadcast_to(
        np.arange(side, dtype="float32")[None, None, :, None], (count, side, side, 3)
    )
    flipped = [
        np.all(o["images"][:, :, 0] > o["images"][:, :, -1], axis=(1, 2))
        for o in _run_stage(stages["random_flip"], {"images": ramp, "labels": labels}, 16)
    ]
    assert abs(np.mean(flipped) - 0.5) < 0.08, np.mean(flipped)

    # RandAugment m9: 2 ops, each applied with probability 0.5 -> a quarter unchanged.
    pixels = rng.uniform(64, 192, (count, side, side, 3)).astype("float32")
    outs = _run_stage(stages["randaugment"], {"images": pixels, "labels": labels}, 16)
    unchanged = [np.all(np.abs(o["images"] - pixels) < 1e-3, axis=(1, 2, 3)) for o in outs]
    assert abs(np.mean(unchanged) - 0.25) < 0.08, np.mean(unchanged)

    # Random erasing, 0.25 per image, 2-33% of the area filled with N(0, 1) noise.
    zeros = np.zeros((count, side, side, 3), "float32")
    outs = _run_stage(stages["random_erasing"], {"images": zeros, "labels": labels}, 16)
    erased = np.concatenate([np.any(o["images"] != 0, axis=-1) for o in outs])  # (N, H, W)
    hit = erased.any(axis=(1, 2))
    assert abs(hit.mean() - recipe.random_erasing) < 0.06, hit.mean()
    area = erased[hit].mean(axis=(1, 2))
    assert area.min() >= 0.01 and area.max() <= 0.36, (area.min(), area.max())
    noise = np.concatenate([o["images"][o["images"] != 0] for o in outs])
    assert abs(noise.std() - 1.0) < 0.1 and abs(noise.mean()) < 0.1

    # MixUp (alpha 0.8) or CutMix (alpha 1.0), one of them per batch with probability
    # 0.5. Image i is the constant i: MixUp leaves constant images whose value the
    # labels give exactly; CutMix pastes a rectangle, and the label weight of the
    # image's own class is the share of its pixels kept (Keras computes it from the
    # box before rounding to pixels: within 2 / side).
    constant = np.broadcast_to(
        np.arange(count, dtype="float32")[:, None, None, None], (count, 32, 32, 3)
    )
    outs = _run_stage(stages["mixup_or_cutmix"], {"images": constant, "labels": labels}, 48)
    cutmix = []
    for out in outs:
        images, mixed = out["images"], out["labels"]
        np.testing.assert_allclose(mixed.sum(axis=1), 1.0, atol=1e-5)
        if np.all(images.std(axis=(1, 2, 3)) < 1e-4):  # MixUp
            np.testing.assert_allclose(mixed @ np.arange(count), images[:, 0, 0, 0], atol=1e-3)
            cutmix.append(False)
        else:
            kept = np.mean(images == np.arange(count)[:, None, None, None], axis=(1, 2, 3))
            np.testing.assert_allclose(np.diagonal(mixed), kept, atol=2 / 32 + 1e-3)
            cutmix.append(True)
    assert abs(np.mean(cutmix) - augment.SWITCH_PROBABILITY) < 0.2, np.mean(cutmix)


# === The lean install ===

LEAN = """
import sys
sys.modules["keras_hub"] = sys.modules["keras_cv"] = None  # as if not installed
import keras
from keras_ba.applications import BAResNetBackbone, hub
from keras_ba.extras import MissingExtraError
backbone = BAResNetBackbone([1], [8], block_type="basic", stem="cifar", stem_filters=8,
                            reduction=4, image_shape=(16, 16, 3))
hub_bases = [c for c in type(backbone).__mro__ if c.__module__.startswith("keras_hub")]
print("BASES", isinstance(backbone, keras.Model), hub_bases)
for call in (lambda: backbone.save_to_preset("p"), lambda: BAResNetBackbone.from_preset("p"),
             lambda: hub.image_classifier(backbone, 2)):
    try:
        call()
    except MissingExtraError as error:
        print("ERROR", error)
try:
    import keras_ba.cv
except MissingExtraError as error:
    print("ERROR", error)
"""


@only_in(
    "torch", reason="an import in a fresh process, the same on every backend: the PyTorch pass"
)
def test_lean_install_imports_without_keras_hub_and_keras_cv():
    result = run_python(LEAN)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert "BASES True []" in lines, lines  # a keras.Model with no KerasHub base
    errors = [line for line in lines if line.startswith("ERROR")]
    assert len(errors) == 4, lines
    for error in errors[:3]:
        assert "needs the package 'keras-hub'" in error and '".[hub]"' in error, error
    assert "keras_ba.cv needs the package 'keras-hub'" in errors[3] and '".[cv]"' in errors[3]
