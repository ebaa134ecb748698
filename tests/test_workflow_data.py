"""Data sources, tf.data pipelines, augmentation, recipes and run-folder pieces.

In-process and fast. The pipelines are tf.data, the same whatever the
backend: this file runs in the TensorFlow pass; the workflow tests train
from these pipelines under all three backends.
"""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import only_in

from keras_ba.applications import preprocess_input
from keras_ba.data import augment, transforms
from keras_ba.data import pipeline as data
from keras_ba.errors import WorkflowError
from keras_ba.runs import folder as run_folder
from keras_ba.training import callbacks, recipes

pytestmark = only_in("tensorflow", reason="tf.data pipelines: the TensorFlow pass")

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
        ("one_class", "has 1 class .* needs at least two classes"),
        ("val_missing_class", "hold different class folders: only in the first \\['dog'\\]"),
        ("val_empty_class", "No images .* in the class folders \\['dog'\\] of .*val"),
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
    if layout == "one_class":
        _write_folder(str(root), classes=("cat",))
    if layout.startswith("val_"):
        _write_folder(str(root / "train"), per_class=2)
        _write_folder(str(root / "val"), classes=("cat",), per_class=2)
        if layout == "val_empty_class":
            (root / "val" / "dog").mkdir()
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
        transforms.normalize(pixels).numpy(), preprocess_input(pixels), atol=1e-5
    )


def test_eval_transform_crops_like_resize_then_center_crop():
    image = np.zeros((1, 40, 60, 3), "float32")
    image[:, :, 10:50] = 255.0  # the central 40x40 square is white
    out = transforms.eval_transform(image, image_size=16, crop_pct=0.5)  # resize 32, crop 16
    np.testing.assert_allclose(
        out.numpy(), preprocess_input(np.full((1, 16, 16, 3), 255.0)), atol=1e-5
    )
    same = np.random.RandomState(1).uniform(0, 255, (2, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(  # at the load size: no resampling
        transforms.eval_transform(same, 16, 1.0).numpy(), preprocess_input(same), atol=1e-5
    )


def _first_batch(recipe, seed, limit=32):
    splits = data.load_splits(data.DataSource("digits", limit=limit), recipe.load_size())
    return [t.numpy() for t in next(iter(data.train_dataset(splits, recipe, seed)))]


def test_train_pipeline_with_seed_0_repeats_exactly():
    # keras-cv layers take a falsy seed for "unseeded" (TensorFlow's global
    # generator): seed 0 must still give the same batches every time.
    recipe = recipes.get_recipe("small", image_size=16, batch_size=8)
    splits = data.load_splits(data.DataSource("digits", limit=32), recipe.load_size())
    runs = [
        [x.numpy() for x, _ in data.train_dataset(splits, recipe, seed=0).take(4)] for _ in range(2)
    ]
    for a, b in zip(*runs, strict=True):
        np.testing.assert_array_equal(a, b)
    assert augment.layer_seed(0, 0) != 0 and augment.layer_seed(0, 0) != augment.layer_seed(1, 0)


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
    with pytest.raises(WorkflowError, match="smaller `batch_size`"):
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
    with pytest.raises(WorkflowError, match="`warmup_epochs`"):
        recipes.get_recipe("bav2", epochs=3, warmup_epochs=5)
    with pytest.raises(WorkflowError, match="`batch_size`"):
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
    with open(path, "w") as file:  # a torn row: damaged, named (never dropped silently)
        file.write("epoch,loss\n0,2.0\n1,1.0\n3\n")
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.ones((4, 2), "float32"), np.zeros((4, 1), "float32")
    with pytest.raises(ValueError, match="history.csv' is damaged .line 4 has 1 values"):
        model.fit(x, y, epochs=2, initial_epoch=1, verbose=0,
                  callbacks=[callbacks.ResumableCSVLogger(path)])  # fmt: skip
    with open(path, "w") as file:  # epoch 1 written twice (killed before its backup), epoch 2
        file.write("epoch,loss\n0,2.0\n1,1.0\n1,1.0\n2,0.5\n")
    logger = callbacks.ResumableCSVLogger(path)
    model.fit(x, y, epochs=3, initial_epoch=1, callbacks=[logger], verbose=0)
    history = run_folder.read_history(path)
    assert history["epoch"] == [0.0, 1.0, 2.0]
    assert history["loss"][0] == 2.0 and history["loss"][1] != 1.0
    model.fit(x, y, epochs=1, callbacks=[callbacks.ResumableCSVLogger(path)], verbose=0)
    assert run_folder.read_history(path)["epoch"] == [0.0]  # a new run starts a new history
    assert [p.name for p in tmp_path.iterdir()] == ["history.csv"]  # no temporary left


def test_atomic_save_leaves_nothing_when_saving_fails(tmp_path):
    class Unsaveable(keras.layers.Layer):
        def get_config(self):
            raise RuntimeError("cannot serialize")

    model = keras.Sequential([keras.Input((2,)), Unsaveable()])
    target = tmp_path / "model.keras"
    with pytest.raises(RuntimeError, match="cannot serialize"):
        run_folder.atomic_save(model, str(target))
    assert list(tmp_path.iterdir()) == []
    good = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    run_folder.atomic_save(good, str(target))
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]


def _compiled_dense(seed):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="mse")
    model.optimizer.build(model.trainable_variables)
    return model


def _train_step(model):
    model.train_on_batch(np.ones((4, 3), "float32"), np.zeros((4, 2), "float32"))


def test_training_state_restores_weights_optimizer_and_epoch(tmp_path):
    folder = str(tmp_path / "backup")
    model = _compiled_dense(0)
    for epoch in (1, 2, 3):
        _train_step(model)
        run_folder.save_training_state(model, folder, epoch)
    assert sorted(os.listdir(folder)) == ["epoch-0002", "epoch-0003"]  # the newest two
    fresh = _compiled_dense(1)
    assert run_folder.restore_training_state(fresh, folder) == 3
    for a, b in zip(model.get_weights(), fresh.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert int(fresh.optimizer.iterations) == 3  # the optimizer state came back too
    momentum = [v for v in fresh.optimizer.variables if "momentum" in v.path]
    assert momentum and all(np.abs(keras.ops.convert_to_numpy(v)).max() > 0 for v in momentum)


@pytest.mark.parametrize("damage", ["truncated", "no_info", "garbage_info"])
def test_damaged_newest_state_falls_back_to_the_previous_one(tmp_path, capsys, damage):
    folder = str(tmp_path / "backup")
    model = _compiled_dense(0)
    _train_step(model)
    run_folder.save_training_state(model, folder, 1)
    epoch_one = [w.copy() for w in model.get_weights()]
    _train_step(model)
    newest = run_folder.save_training_state(model, folder, 2)
    weights = os.path.join(newest, "state.weights.h5")
    if damage == "truncated":  # what a kill inside an in-place h5 write leaves
        with open(weights, "r+b") as file:
            file.truncate(os.path.getsize(weights) // 2)
    elif damage == "no_info":
        os.remove(os.path.join(newest, "state.json"))
    else:
        with open(os.path.join(newest, "state.json"), "w") as file:
            file.write('{"epoch": 2, "bytes"')
    os.makedirs(os.path.join(folder, ".tmp-interrupted"))  # a save that was killed
    fresh = _compiled_dense(1)
    assert run_folder.restore_training_state(fresh, folder) == 1
    assert "Skipping the damaged backup" in capsys.readouterr().out
    for a, b in zip(epoch_one, fresh.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert os.listdir(folder) == ["epoch-0001"]


def test_no_intact_state_means_training_from_the_start(tmp_path):
    folder = tmp_path / "backup"
    (folder / "epoch-0001").mkdir(parents=True)
    (folder / "epoch-0001" / "state.weights.h5").write_bytes(b"\x89HDF\r\n")
    assert run_folder.restore_training_state(_compiled_dense(0), str(folder)) == 0


def test_a_state_of_another_model_is_a_clear_error(tmp_path):
    folder = str(tmp_path / "backup")
    run_folder.save_training_state(_compiled_dense(0), folder, 1)
    other = keras.Sequential([keras.Input((5,)), keras.layers.Dense(7)])
    other.compile(optimizer="sgd", loss="mse")
    with pytest.raises(WorkflowError, match="does not fit this model"):
        run_folder.restore_training_state(other, folder)


def test_run_config_names_the_fields_that_differ(tmp_path):
    a = run_folder.RunConfig(model="m", model_spec={"widths": [8, 16]}, recipe={"epochs": 3})
    b = run_folder.RunConfig(model="m", model_spec={"widths": (8, 32)}, recipe={"epochs": 3})
    assert a.differences(b) == ["model_spec.widths"]
    assert a.differences(run_folder.RunConfig.from_dict(a.to_dict())) == []
    c = run_folder.RunConfig.from_dict(dict(a.to_dict(), status="finished", class_names=["x"]))
    assert a.differences(c) == []  # status and class names are not configuration
    a.save(str(tmp_path / "run.json"))
    assert run_folder.RunConfig.load(str(tmp_path / "run.json")) == a


def test_output_dir_that_cannot_be_written(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(WorkflowError, match="Cannot write to the output folder"):
        run_folder.prepare_output_dir(str(blocker / "run"))


def test_plot_history_writes_a_png(tmp_path):
    from keras_ba.runs import plots

    csv_path = tmp_path / "h.csv"
    csv_path.write_text(
        "epoch,loss,accuracy,val_loss,val_accuracy\n0,2,0.3,2.1,0.2\n1,1,0.6,1.2,0.5\n"
    )
    plots.plot_history(str(csv_path), str(tmp_path / "h.png"))
    assert (tmp_path / "h.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.csv", "h.png"]


def test_missing_extra_is_named(monkeypatch):
    import sys

    from keras_ba.extras import MissingExtraError

    monkeypatch.setitem(sys.modules, "keras_cv", None)  # as if not installed
    recipe = recipes.get_recipe("small", image_size=16)
    with pytest.raises(MissingExtraError, match=r'"train" extra .*pip install -e "\.\[train\]"'):
        augment.train_augmenters(recipe, seed=0)
    # A recipe without keras-cv layers does not need it.
    plain = recipes.get_recipe("small", image_size=16, crop="center", flip=False)
    assert [n for n, _ in augment.train_augmenters(plain, seed=0)] == ["center_crop", "normalize"]


def test_the_library_holds_no_test_hooks():
    root = os.path.dirname(os.path.dirname(os.path.abspath(recipes.__file__)))
    for folder, _, names in os.walk(root):
        for name in names:
            if name.endswith(".py"):
                text = open(os.path.join(folder, name)).read()
                for hook in ("KILL_AFTER_EPOCH", "KillAfterEpoch", "KILL_IN_EPOCH", "KillInEpoch"):
                    assert hook not in text, (name, hook)
                assert "os.kill(os.getpid()" not in text, name  # fault injection is test-side


def test_runs_of_earlier_versions_keep_their_state(tmp_path, capsys):
    # keras.callbacks.BackupAndRestore's layout: restored when intact, skipped when cut off.
    folder = tmp_path / "backup"
    folder.mkdir()
    model = _compiled_dense(0)
    _train_step(model)
    model.save_weights(str(folder / "latest.weights.h5"))
    (folder / "training_metadata.json").write_text('{"epoch": 2, "batch": 0}')
    fresh = _compiled_dense(1)
    assert run_folder.restore_training_state(fresh, str(folder)) == 2
    for a, b in zip(model.get_weights(), fresh.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    weights = folder / "latest.weights.h5"
    with open(weights, "r+b") as file:
        file.truncate(weights.stat().st_size // 2)
    assert run_folder.restore_training_state(_compiled_dense(1), str(folder)) == 0
    assert "Skipping the damaged backup" in capsys.readouterr().out
    # A run.json without `status`: finished when its model exists and no backup is left.
    run_folder.write_json({"model": "m"}, str(tmp_path / "run.json"))
    assert run_folder.RunConfig.load(str(tmp_path / "run.json")).status == "running"
    (tmp_path / "model.keras").write_bytes(b"")
    import shutil

    shutil.rmtree(folder)
    assert run_folder.RunConfig.load(str(tmp_path / "run.json")).status == "finished"
