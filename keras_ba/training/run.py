"""Train, evaluate and predict: the functions behind `keras-ba train|evaluate|predict`.

Example:
    from keras_ba.training import DataSource, ModelSpec, get_recipe, train
    result = train(ModelSpec("ba_resnet18"), DataSource("digits"),
                   get_recipe("small", epochs=3), "runs/digits")
    print(result.model_path)
"""

import contextlib
import dataclasses
import os
import time

import keras

from keras_ba.training import (
    callbacks,
    data,
    ddp_loop,
    distribute,
    export,
    models,
    multiprocess,
    recipes,
)
from keras_ba.training.errors import WorkflowError
from keras_ba.training.options import JIT_CHOICES, PRECISIONS, SUBSETS


@dataclasses.dataclass
class TrainResult:
    """What `train` produced.

    Attributes:
        model_path: the final `.keras` file.
        paths: the run folder's `RunPaths`.
        history: `{metric: [value per epoch]}` of this call's epochs.
        seconds: wall time of the call.
        model: the trained `keras.Model` (in memory; on every process).

    Example:
        result.history["val_accuracy"][-1]
    """

    model_path: str
    paths: callbacks.RunPaths
    history: dict
    seconds: float
    model: object = None


@contextlib.contextmanager
def dtype_policy(precision):
    """Sets the global dtype policy for `precision` (models built inside keep it).

    Example:
    >>> with dtype_policy("bfloat16"):
    ...     keras.config.dtype_policy().name
    'mixed_bfloat16'
    """
    if precision not in PRECISIONS:
        raise WorkflowError(
            f"--precision must be one of {tuple(PRECISIONS)}, received {precision!r}."
        )
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(PRECISIONS[precision])
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _run_folder(output, mode):
    """Worker 0 writes to `output`; other multi-worker workers to a sub-folder."""
    index = distribute.worker_index() if mode == "multi-worker" else 0
    return callbacks.RunPaths(output if index == 0 else os.path.join(output, f".worker{index}"))


def _run_config(model_spec, source, recipe, splits, seed, precision, mode, group):
    if source.kind == "folder":
        source = dataclasses.replace(source, data=os.path.abspath(source.data))
    return {
        "model": model_spec.name,
        "model_spec": dataclasses.asdict(model_spec),
        "class_names": list(splits.class_names),
        "image_size": recipe.image_size,
        "eval_crop_pct": recipe.eval_crop_pct,
        "data": dataclasses.asdict(source),
        "recipe": dataclasses.asdict(recipe),
        "seed": seed,
        "precision": precision,
        "distribute": mode,
        "processes": group.num_processes,
        "backend": keras.backend.backend(),
    }


def train(
    model_spec,
    source,
    recipe,
    output,
    seed=0,
    precision="float32",
    distribute_mode="none",
    devices=None,
    steps_per_epoch=None,
    jit_compile="auto",
    verbose="auto",
    cache="auto",
    plot=True,
    process_group=None,
    sync_batch_norm=True,
):
    """Trains a BA model; resumes an unfinished run in the same folder.

    Rerunning the same call after an interruption restores the last
    finished epoch (`BackupAndRestore`) and continues from the next one;
    `history.csv` keeps exactly one row per epoch.

    Args:
        model_spec: a `ModelSpec` (name and size options).
        source: a `DataSource`.
        recipe: a `Recipe` (see `get_recipe`).
        output: the run folder (created if needed).
        seed: seed of initialization, shuffling and augmentation.
        precision: `"float32"`, `"bfloat16"` or `"float16"` (mixed).
        distribute_mode: one of `distribute.MODES`.
        devices: split the CPU into this many devices first (tests on one
            machine); must run before TensorFlow/JAX start computing.
        steps_per_epoch: optimizer steps per epoch; default one pass over
            the training images.
        jit_compile: `"auto"`, `"on"` or `"off"` (XLA).
        verbose: Keras verbosity (`"auto"`, 0, 1 or 2).
        cache: `"auto"`, `"memory"` or `"none"` (decoded images in memory).
        plot: write `history.png` at the end (needs matplotlib).
        process_group: a `multiprocess.ProcessGroup` for several processes
            (`data-parallel` on JAX, `ddp` on PyTorch); default: resolved
            from the environment (`KERAS_BA_*`, torchrun, SLURM). Only
            process 0 writes files.
        sync_batch_norm: `ddp`: BatchNorm statistics over the global batch.

    Returns:
        A `TrainResult`.

    Raises:
        WorkflowError: bad data, paths, options, or a NaN loss.

    Example:
        train(ModelSpec("ba_resnet18"), DataSource("digits"),
              get_recipe("small", epochs=3), "runs/digits")
    """
    start = time.time()
    mode = _check_options(model_spec, distribute_mode, jit_compile)
    group = process_group or multiprocess.resolve_process_group(mode)
    multiprocess.check_mode(mode, group, devices=devices)
    multiprocess.check_batch(recipe.batch_size, group)
    if group.is_multi:
        multiprocess.initialize(group)  # before any JAX computation and any file
    if devices:
        distribute.configure_devices(devices)
    paths = _run_folder(output, mode)
    if group.is_chief:
        callbacks.prepare_output_dir(paths.root)
    # Strategies first: MultiWorkerMirroredStrategy must exist before any TF op.
    setup = distribute.setup_distribution(mode)
    if mode == "ddp":
        setup = distribute.Distribution(mode, group.num_processes)
    try:
        keras.utils.set_random_seed(seed)
        splits = data.load_splits(source, recipe.load_size())
        distribute.check_batch(recipe.batch_size, setup)
        steps = steps_per_epoch or data.steps_per_epoch(splits.train_size, recipe.batch_size)
        model = _build_and_compile(model_spec, recipe, splits, steps, precision, setup, jit_compile)
        if group.is_chief:
            callbacks.write_json(
                _run_config(model_spec, source, recipe, splits, seed, precision, setup.mode, group),
                paths.config,
            )
        _print_plan(model, recipe, splits, steps, setup, precision, paths, group)
        history = _fit(
            model, recipe, splits, steps, seed, cache, paths, verbose, source, setup, group,
            sync_batch_norm,
        )
    finally:
        if setup.mode == "data-parallel":
            keras.distribution.set_distribution(None)
    _check_finite(history, paths, group)
    if group.is_chief:
        callbacks.atomic_save(model, paths.model)
        if plot:
            _plot(paths, model.name)
        print(f"Saved {paths.model} ({time.time() - start:.0f} s).")
    multiprocess.shutdown(group)
    return TrainResult(paths.model, paths, history, time.time() - start, model)


def _check_options(model_spec, distribute_mode, jit_compile):
    """Cheap checks before any work; returns the resolved distribution mode."""
    mode = distribute.resolve_mode(distribute_mode)
    distribute.check_backend(mode)
    distribute.check_multi_worker(mode)
    if jit_compile not in JIT_CHOICES:
        raise WorkflowError(
            f"--jit-compile must be one of {tuple(JIT_CHOICES)}, received {jit_compile!r}."
        )
    models.check_model_name(model_spec.name)
    return mode


def _build_and_compile(model_spec, recipe, splits, steps, precision, setup, jit_compile):
    num_classes = len(splits.class_names)
    with dtype_policy(precision), setup.scope():
        model = model_spec.build(num_classes, recipe.image_size)
        model.compile(
            optimizer=recipes.make_optimizer(recipe, steps, model),
            loss=recipes.make_loss(recipe),
            metrics=recipes.make_metrics(num_classes),
            jit_compile=JIT_CHOICES[jit_compile],
        )
    return model


def _print_plan(model, recipe, splits, steps, setup, precision, paths, group):
    if not group.is_chief:
        print(f"Training as {group.describe()}; process 0 reports the progress.")
        return
    print(
        f"Training {model.name} ({model.count_params():,} parameters) on "
        f"{splits.train_size} images of {len(splits.class_names)} classes "
        f"({splits.validation_size} for validation), {recipe.image_size}x{recipe.image_size} px.\n"
        f"  {recipe.epochs} epochs x {steps} steps, batch {recipe.batch_size}, {recipe.optimizer} "
        f"peak lr {recipe.peak_lr():g}, precision {precision}, backend "
        f"{keras.backend.backend()}, {setup.mode} ({setup.replicas} replica(s)), "
        f"{group.describe()}.\n"
        f"  Run folder: {paths.root} (rerun the same command to resume)."
    )


def _fit(
    model, recipe, splits, steps, seed, cache, paths, verbose, source, setup, group,
    sync_batch_norm,
):
    import tensorflow as tf

    num_classes = len(splits.class_names)
    shards = multiprocess.shard_arguments(group)
    train_ds = data.train_dataset(splits, recipe, seed, cache, **shards)
    # JAX DataParallel needs every batch to split over the devices: the
    # validation during training skips the last partial batch there.
    drop = setup.mode == "data-parallel"
    if drop and splits.validation_size < recipe.batch_size:
        raise WorkflowError(
            f"--distribute data-parallel validates in full batches, but the {splits.validation_size} "
            f"validation images are fewer than --batch-size {recipe.batch_size}."
        )
    val_ds = data.eval_dataset(
        splits.validation,
        num_classes,
        recipe.image_size,
        recipe.eval_crop_pct,
        recipe.batch_size,
        splits.validation_size,
        cache,
        drop_remainder=drop,
        **shards,
    )
    progress = multiprocess.Progress()
    run_callbacks = multiprocess.process_callbacks(callbacks.make_callbacks(paths), group)
    run_callbacks.append(progress)
    verbose = verbose if group.is_chief else 0
    try:
        with multiprocess.peer_loss_guard(group, progress):
            if setup.mode == "ddp":
                return ddp_loop.fit(
                    model, train_ds, val_ds, recipe.epochs, steps, run_callbacks, group,
                    verbose, sync_batch_norm,
                )
            history = model.fit(
                train_ds,
                epochs=recipe.epochs,
                steps_per_epoch=steps,
                validation_data=val_ds,
                callbacks=run_callbacks,
                verbose=verbose,
                shuffle=False,
            )
    except tf.errors.InvalidArgumentError as error:
        raise WorkflowError(_data_error_message(error, source)) from None
    return history.history


MAX_FILES_TO_CHECK = 20_000  # decoding them all after a failure takes about a minute


def _data_error_message(error, source):
    message = data.clean_tf_message(error).rstrip(".")
    if source.kind != "folder":
        return f"The input pipeline failed: {message}."
    bad = data.find_unreadable_images(source.data, max_files=MAX_FILES_TO_CHECK)
    if bad is None:
        where = (
            "find it with keras_ba.training.data.find_unreadable_images"
            f"({source.data!r}) (it decodes every file)"
        )
    else:
        where = f"unreadable: {bad[:5]}" if bad else "no single file fails to decode on its own"
    return f"Reading the images of {source.data!r} failed: {message}; {where}."


def _check_finite(history, paths, group):
    losses = history.get("loss", [])
    if losses and not all(v == v and abs(v) != float("inf") for v in losses):
        if group.is_chief and os.path.exists(paths.checkpoint):
            os.remove(paths.checkpoint)  # written after the NaN step: NaN weights
        raise WorkflowError(
            "Training stopped: the loss became NaN or infinite (TerminateOnNaN); the model "
            "was not saved. Lower --lr, use --precision float32 or check the data."
        )


def _plot(paths, title):
    from keras_ba.training import plots

    try:
        plots.plot_history(paths.history_csv, paths.history_png, title=title)
    except WorkflowError as error:
        print(f"No history plot: {error}")


# === Evaluate and predict ===


def _source_of_run(model_path, source, limit):
    run = callbacks.read_json(callbacks.RunPaths(os.path.dirname(model_path)).config) or {}
    if source is None:
        if "data" not in run:
            raise WorkflowError(
                f"No run.json next to {model_path!r}: pass the data to evaluate on (--data)."
            )
        source = data.DataSource(**run["data"])
    if limit is not None:
        source = dataclasses.replace(source, limit=limit)
    return source


def evaluate(
    model_path,
    source=None,
    subset="validation",
    batch_size=64,
    limit=None,
    image_size=None,
    crop_pct=None,
    cache="auto",
    verbose="auto",
):
    """Accuracy and loss of a saved model on a data split.

    Args:
        model_path: a `.keras` file.
        source: a `DataSource`; default the one the model was trained on
            (from `run.json`), so the validation split is the same.
        subset: `"validation"` or `"train"`.
        batch_size: evaluation batch size.
        limit: evaluate at most this many images.
        image_size: model input side; default `run.json` or the model's.
        crop_pct: evaluation crop; default `run.json`, else 1.0.
        cache: as in `train`.
        verbose: Keras verbosity.

    Returns:
        `dict` with `accuracy`, `loss` (plain cross-entropy), `top5_accuracy`
        (more than 5 classes), `images`, `classes`, `chance`, `subset`.

    Example:
        evaluate("runs/digits/model.keras")["accuracy"]
    """
    if subset not in SUBSETS:
        raise WorkflowError(f"--subset must be one of {SUBSETS}, received {subset!r}.")
    source = _source_of_run(model_path, source, limit)
    model = export.load_trained_model(model_path)
    info = export.export_info(model_path, image_size, crop_pct)
    size = info["image_size"] or model.input_shape[1]
    splits = data.load_splits(source, int(round(size / info["crop_pct"])))
    num_classes = _check_classes(model, splits)
    images = splits.validation if subset == "validation" else splits.train
    count = splits.validation_size if subset == "validation" else splits.train_size
    ds = data.eval_dataset(images, num_classes, size, info["crop_pct"], batch_size, count, cache)
    model.compile(
        loss=keras.losses.CategoricalCrossentropy(), metrics=recipes.make_metrics(num_classes)
    )
    results = model.evaluate(ds, return_dict=True, verbose=verbose)
    results = {k: float(v) for k, v in results.items()}
    results.update(images=count, classes=num_classes, chance=1.0 / num_classes, subset=subset)
    return results


def _check_classes(model, splits):
    outputs = model.output_shape[-1]
    if outputs != len(splits.class_names):
        raise WorkflowError(
            f"The model predicts {outputs} classes but the data has {len(splits.class_names)}."
        )
    return outputs


def predict(model_path, inputs, top_k=1, batch_size=32, image_size=None, crop_pct=None):
    """Classifies image files with a saved model.

    Args:
        model_path: a `.keras` file.
        inputs: image files and/or folders (searched recursively).
        top_k: classes to return per image.
        batch_size: images per forward pass.
        image_size: model input side; default `run.json` or the model's.
        crop_pct: evaluation crop; default `run.json`, else 1.0.

    Returns:
        One `dict(path=..., top=[(class_name, probability), ...])` per image.

    Raises:
        WorkflowError: a missing or unreadable file (named).

    Example:
        predict("runs/digits/model.keras", ["digit.png"])[0]["top"][0]
    """
    import numpy as np

    from keras_ba.training import augment

    files = data.list_image_files(inputs)
    model = export.load_trained_model(model_path)
    info = export.export_info(model_path, image_size, crop_pct)
    size = info["image_size"] or model.input_shape[1]
    names = info["class_names"] or [str(i) for i in range(model.output_shape[-1])]
    results = []
    for begin in range(0, len(files), batch_size):
        chunk = files[begin : begin + batch_size]
        batch = np.concatenate(
            [
                augment.eval_transform(data.read_image(f)[None], size, info["crop_pct"]).numpy()
                for f in chunk
            ]
        )
        probabilities = np.asarray(model.predict(batch, verbose=0), dtype="float64")
        for path, row in zip(chunk, probabilities, strict=True):
            best = np.argsort(-row)[:top_k]
            results.append({"path": path, "top": [(names[i], float(row[i])) for i in best]})
    return results
