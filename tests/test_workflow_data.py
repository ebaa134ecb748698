"""Data sources, tf.data pipelines, augmentation, recipes and run-folder pieces.

In-process and fast; the same file runs under every KERAS_BACKEND (the
pipelines are tf.data and must feed all three backends).
"""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_ba.applications import preprocess_input
from keras_ba.training import augment, callbacks, data, recipes
from keras_ba.training.errors import WorkflowError

# === Sources ===


def test_digits_split_is_fixed_stratified_and_upscaled():
    first = data.load_splits(data.DataSource("digits"), load_size=16)
    second = data.load_splits(data.DataSource("digits"), load_size=16)
    assert (first.train_size, first.validation_size) == (1437, 360)
    assert first.class_names == tuple(str(i) for i in range(10))
    labels = np.array([int(y) for _, y in first.validation])
    assert np.bincount(labels, minlength=10).min() >= 35  # stratified: 36 per class
    image, _ = next(iter(first.train))
    assert image.shape == (16, 16, 3) and image.dtype == tf.uint8
    assert int(tf.reduce_max(image)) > 200  # 0..16 rescaled to 0..255
    a = [y for _, y in first.validation.take(20).as_numpy_iterator()]
    b = [y for _, y in second.validation.take(20).as_numpy_iterator()]
    assert a == b


def test_limit_caps_both_splits():
    splits = data.load_splits(data.DataSource("digits", limit=50), load_size=8)
    assert (splits.train_size, splits.validation_size) == (50, 50)
    assert sum(1 for _ in splits.train) == 50


def _write_folder(root, classes=("cat", "dog"), per_class=5, size=(20, 12)):
    rng = np.random.RandomState(0)
    for name in classes:
        os.makedirs(os.path.join(root, name), exist_ok=True)
        for i in range(per_class):
            pixels = rng.randint(0, 255, size + (3,), dtype=np.uint8)
            keras.utils.save_img(os.path.join(root, name, f"{i}.png"), pixels, scale=False)
    return root


def test_image_folder_split_and_square_crop(tmp_path):
    root = _write_folder(str(tmp_path / "photos"))
    splits = data.load_splits(data.DataSource(root, validation_split=0.2), load_size=16)
    assert splits.class_names == ("cat", "dog")
    assert (splits.train_size, splits.validation_size) == (8, 2)
    image, label = next(iter(splits.train))
    assert image.shape == (16, 16, 3) and image.dtype == tf.uint8
    assert int(label) in (0, 1)


def test_image_folder_with_train_and_val_layout(tmp_path):
    _write_folder(str(tmp_path / "set" / "train"), per_class=3)
    _write_folder(str(tmp_path / "set" / "val"), per_class=2)
    splits = data.load_splits(data.DataSource(str(tmp_path / "set")), load_size=8)
    assert (splits.train_size, splits.validation_size) == (6, 4)


@pytest.mark.parametrize(
    "layout, message",
    [
        ("missing", "does not exist"),
        ("empty", "has no class sub-folders"),
        ("empty_class", "No images"),
        ("corrupt", "not readable images"),
    ],
)
def test_bad_image_folders_raise_clear_errors(tmp_path, layout, message):
    root = tmp_path / "data"
    if layout != "missing":
        root.mkdir()
    if layout == "empty_class":
        _write_folder(str(root), classes=("a",))
        (root / "b").mkdir()
    if layout == "corrupt":
        _write_folder(str(root))
        (root / "cat" / "broken.jpg").write_bytes(b"this is not a jpeg")
    with pytest.raises(WorkflowError, match=message) as error:
        data.load_splits(data.DataSource(str(root)), load_size=8)
    if layout == "corrupt":
        assert "broken.jpg" in str(error.value)


def test_tfds_dataset_that_is_not_prepared_names_the_fix(tmp_path):
    source = data.DataSource("tfds:mnist", tfds_data_dir=str(tmp_path))
    with pytest.raises(WorkflowError, match="not prepared.*--tfds-data-dir"):
        data.load_splits(source, load_size=8)
    with pytest.raises(WorkflowError, match="Unknown TFDS dataset"):
        data.load_splits(data.DataSource("tfds:no_such_dataset_xyz"), load_size=8)


def test_tfds_dataset_prepared_locally_loads(tmp_path):
    import tensorflow_datasets as tfds

    class KerasBaTinyShapes(tfds.core.GeneratorBasedBuilder):
        """Two classes of 12x10 RGB images, prepared from NumPy: no download."""

        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            features = tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(12, 10, 3)),
                    "label": tfds.features.ClassLabel(names=["dark", "light"]),
                }
            )
            return tfds.core.DatasetInfo(
                builder=self, features=features, supervised_keys=("image", "label")
            )

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(6), "test": self._generate_examples(4)}

        def _generate_examples(self, count):
            for i in range(count):
                value = 40 if i % 2 == 0 else 220
                yield i, {"image": np.full((12, 10, 3), value, np.uint8), "label": i % 2}

    KerasBaTinyShapes(data_dir=str(tmp_path)).download_and_prepare()
    source = data.DataSource("tfds:keras_ba_tiny_shapes", tfds_data_dir=str(tmp_path))
    splits = data.load_splits(source, load_size=8)
    assert splits.class_names == ("dark", "light")
    assert (splits.train_size, splits.validation_size) == (6, 4)
    images = {int(y): int(x[0, 0, 0]) for x, y in splits.validation}
    assert images == {0: 40, 1: 220}


# === Pipelines ===


def test_normalize_is_preprocess_input():
    pixels = np.random.RandomState(0).uniform(0, 255, (2, 4, 4, 3)).astype("float32")
    np.testing.assert_allclose(
        augment.normalize(pixels).numpy(), preprocess_input(pixels), atol=1e-5
    )


def test_eval_transform_crops_like_resize_then_center_crop():
    image = np.zeros((1, 40, 60, 3), "float32")
    image[:, :, 10:50] = 255.0  # the central 40x40 square is white
    out = augment.eval_transform(image, image_size=16, crop_pct=0.5)  # resize 32, crop 16
    np.testing.assert_allclose(
        out.numpy(), preprocess_input(np.full((1, 16, 16, 3), 255.0)), atol=1e-5
    )
    same = np.random.RandomState(1).uniform(0, 255, (2, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(  # at the load size: no resampling
        augment.eval_transform(same, 16, 1.0).numpy(), preprocess_input(same), atol=1e-5
    )


def _first_batch(recipe, seed, limit=32):
    splits = data.load_splits(data.DataSource("digits", limit=limit), recipe.load_size())
    return [t.numpy() for t in next(iter(data.train_dataset(splits, recipe, seed)))]


def test_train_pipeline_is_deterministic_for_a_seed():
    recipe = recipes.get_recipe("small", image_size=16, batch_size=8)
    a, b, c = (_first_batch(recipe, seed) for seed in (3, 3, 4))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    assert a[0].shape == (8, 16, 16, 3) and a[0].dtype == np.float32
    np.testing.assert_array_equal(a[1].sum(axis=1), np.ones(8))  # one-hot
    assert a[0].min() < -1.5 and a[0].max() > 1.5  # normalized, not [0, 255]


def test_bav2_augmentation_runs_in_tf_data_and_mixes_labels():
    recipe = recipes.get_recipe("bav2", image_size=16, eval_crop_pct=1.0, batch_size=8)
    names = [name for name, _ in augment.train_augmenters(recipe, seed=0)]
    assert names == [
        "random_resized_crop",
        "random_flip",
        "randaugment",
        "normalize",
        "random_erasing",
        "mixup_or_cutmix",
    ]
    images, labels = _first_batch(recipe, seed=0)
    assert images.shape == (8, 16, 16, 3) and np.isfinite(images).all()
    np.testing.assert_allclose(labels.sum(axis=1), np.ones(8), atol=1e-5)
    assert labels.max(axis=1).min() < 1.0  # MixUp or CutMix made soft labels


def test_eval_pipeline_keeps_order_and_partial_batch():
    splits = data.load_splits(data.DataSource("digits", limit=10), load_size=16)
    batches = list(data.eval_dataset(splits.validation, 10, 16, 1.0, batch_size=4))
    assert [len(x) for x, _ in batches] == [4, 4, 2]
    labels = np.concatenate([y.numpy().argmax(1) for _, y in batches])
    assert labels.tolist() == [int(y) for _, y in splits.validation]


def test_batch_larger_than_data_is_a_clear_error():
    with pytest.raises(WorkflowError, match="smaller --batch-size"):
        data.steps_per_epoch(10, 64)


# === Recipes ===


def test_recipes_match_the_papers():
    bav1, bav2 = recipes.get_recipe("bav1"), recipes.get_recipe("bav2")
    assert (bav1.optimizer, bav1.lr, bav1.lr_batch, bav1.momentum, bav1.weight_decay) == (
        "sgd",
        0.1,
        256,
        0.9,
        1e-4,
    )
    assert (bav1.epochs, bav1.crop, bav1.flip) == (100, "random-resized", True)
    assert recipes.get_recipe("bav1", batch_size=512).peak_lr() == pytest.approx(0.2)
    assert (bav2.optimizer, bav2.lr, bav2.weight_decay, bav2.decay_1d_weights) == (
        "adamw",
        1e-3,
        0.05,
        False,
    )
    assert (bav2.warmup_epochs, bav2.min_lr, bav2.clipnorm, bav2.epochs) == (20, 1e-5, 5.0, 300)
    assert (
        bav2.randaugment,
        bav2.random_erasing,
        bav2.mixup,
        bav2.cutmix,
        bav2.label_smoothing,
    ) == (0.9, 0.25, 0.8, 1.0, 0.1)


def test_recipe_overrides_and_errors():
    quick = recipes.get_recipe("bav2", epochs=3, mixup=None)
    assert (quick.epochs, quick.mixup) == (3, 0.8)
    assert quick.warmup_epochs == pytest.approx(0.2)  # 20 of 300 -> 0.2 of 3
    assert recipes.get_recipe("bav2", epochs=30, warmup_epochs=1).warmup_epochs == 1
    with pytest.raises(WorkflowError, match="--warmup-epochs"):
        recipes.get_recipe("bav2", epochs=3, warmup_epochs=5)
    with pytest.raises(WorkflowError, match="--batch-size"):
        recipes.get_recipe("small", batch_size=0)
    with pytest.raises(WorkflowError, match="Unknown recipe 'bav3'"):
        recipes.get_recipe("bav3")
    with pytest.raises(WorkflowError, match="Unknown recipe fields"):
        recipes.get_recipe("small", batchsize=3)


def test_schedule_warms_up_then_cosine_to_min_lr():
    recipe = recipes.get_recipe("bav2", epochs=10, warmup_epochs=2)
    schedule = recipes.make_schedule(recipe, steps_per_epoch=5)
    values = [float(schedule(step)) for step in (0, 5, 10, 30, 50)]
    assert values[0] == pytest.approx(1e-6)
    assert values[1] == pytest.approx((1e-6 + 1e-3) / 2, rel=1e-4)
    assert values[2] == pytest.approx(1e-3)
    assert values[2] > values[3] > values[4]
    assert values[4] == pytest.approx(1e-5, rel=1e-4)


def _one_step_with_zero_gradients(recipe):
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(2), keras.layers.BatchNormalization()]
    )
    for variable in model.trainable_variables:
        variable.assign(np.ones(variable.shape, "float32"))
    optimizer = recipes.make_optimizer(recipe, steps_per_epoch=1, model=model)
    zeros = [keras.ops.zeros(v.shape) for v in model.trainable_variables]
    optimizer.apply_gradients(zip(zeros, model.trainable_variables, strict=True))
    return {
        v.path: float(keras.ops.convert_to_numpy(v).ravel()[0]) for v in model.trainable_variables
    }


def test_weight_decay_semantics():
    # AdamW (bav2): decoupled decay lr * wd on kernels, none on 1-D weights.
    bav2 = recipes.get_recipe("bav2", warmup_epochs=0, lr=0.1, min_lr=0.0)
    after = _one_step_with_zero_gradients(bav2)
    kernel = [v for k, v in after.items() if k.endswith("kernel")]
    one_d = [v for k, v in after.items() if not k.endswith("kernel")]
    assert kernel == [pytest.approx(1 - 0.1 * 0.05)]
    assert one_d == [1.0, 1.0, 1.0]  # bias, gamma, beta untouched
    # SGD (bav1): PyTorch's coupled 1e-4 with momentum 0.9 -> Keras' 1e-3, on all weights.
    bav1 = recipes.get_recipe("bav1", warmup_epochs=0, lr=0.1, lr_batch=0)
    after = _one_step_with_zero_gradients(bav1)
    assert list(after.values()) == [pytest.approx(1 - 0.1 * 1e-3, abs=1e-7)] * 4


# === Run-folder pieces ===


def test_csv_history_keeps_one_row_per_epoch_when_resuming(tmp_path):
    path = str(tmp_path / "history.csv")
    with open(path, "w") as file:  # epoch 1 written twice, epoch 2 unfinished
        file.write("epoch,loss\n0,2.0\n1,1.0\n1,1.0\n2,0.5\n")
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.ones((4, 2), "float32"), np.zeros((4, 1), "float32")
    logger = callbacks.ResumableCSVLogger(path)
    model.fit(x, y, epochs=3, initial_epoch=1, callbacks=[logger], verbose=0)
    history = callbacks.read_history(path)
    assert history["epoch"] == [0.0, 1.0, 2.0]
    assert history["loss"][0] == 2.0 and history["loss"][1] != 1.0
    model.fit(x, y, epochs=1, callbacks=[callbacks.ResumableCSVLogger(path)], verbose=0)
    assert callbacks.read_history(path)["epoch"] == [0.0]  # a new run starts a new history


def test_atomic_save_leaves_nothing_when_saving_fails(tmp_path):
    class Unsaveable(keras.layers.Layer):
        def get_config(self):
            raise RuntimeError("cannot serialize")

    model = keras.Sequential([keras.Input((2,)), Unsaveable()])
    target = tmp_path / "model.keras"
    with pytest.raises(RuntimeError, match="cannot serialize"):
        callbacks.atomic_save(model, str(target))
    assert list(tmp_path.iterdir()) == []
    good = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    callbacks.atomic_save(good, str(target))
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]


def test_output_dir_that_cannot_be_written(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(WorkflowError, match="Cannot write to the output folder"):
        callbacks.prepare_output_dir(str(blocker / "run"))


def test_plot_history_writes_a_png(tmp_path):
    from keras_ba.training import plots

    csv_path = tmp_path / "h.csv"
    csv_path.write_text(
        "epoch,loss,accuracy,val_loss,val_accuracy\n0,2,0.3,2.1,0.2\n1,1,0.6,1.2,0.5\n"
    )
    plots.plot_history(str(csv_path), str(tmp_path / "h.png"))
    assert (tmp_path / "h.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
