"""`train`: the function behind `keras-ba train`.

A run lives in its run folder (`run_folder`). Rerunning the same call:

- after an interruption (a kill at any instant, even while a file is being
  written) resumes from the last finished epoch: the newest intact backup
  restores the weights, the optimizer state and the epoch, and training
  continues with the next epoch; `history.csv` keeps one row per epoch;
- after the run finished does nothing and says so (`overwrite=True`
  trains again from scratch);
- with another configuration (other widths, epochs, data, ...) in the same
  folder is refused, naming the fields that differ, before anything is
  written.

Example:
    from keras_ba.training import DataSource, ModelSpec, get_recipe, train
    result = train(ModelSpec("ba_resnet18"), DataSource("digits"),
                   get_recipe("small", epochs=3), "runs/digits")
    print(result.model_path)
"""

import contextlib
import dataclasses
import os
import shutil
import time

import keras

from keras_ba import _keras_compat
from keras_ba.data import pipeline as data
from keras_ba.errors import WorkflowError
from keras_ba.options import JIT_CHOICES, PRECISIONS, resolve_verbosity
from keras_ba.runs import folder as run_folder
from keras_ba.runs import guard as run_guard
from keras_ba.training import callbacks, layout, models, recipes
from keras_ba.training import devices as device_lib
from keras_ba.training.distributed import ddp_loop, modes
from keras_ba.training.distributed import launch as multiprocess
from keras_ba.training.distributed import strategies as distribute
from keras_ba.version import __version__


@dataclasses.dataclass
class TrainResult:
    """What `train` produced.

    Attributes:
        model_path: the final `.keras` file.
        paths: the run folder's `RunPaths`.
        history: `{metric: [value per epoch]}` of the whole run (all epochs,
            also those of earlier, interrupted calls), from `history.csv`.
        seconds: wall time of the call.
        initial_epoch: epochs already done when this call started (restored
            from the backup).
        already_finished: True when the run was finished before this call
            (nothing was trained).
        model: the trained `keras.Model` in memory (every process of a
            multi-process run holds it); None when nothing was trained.

    Example:
        result.history["val_accuracy"][-1]
    """

    model_path: str
    paths: run_folder.RunPaths
    history: dict
    seconds: float
    initial_epoch: int = 0
    already_finished: bool = False
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
            f"`precision` must be one of {tuple(PRECISIONS)}. Received: `precision={precision!r}`."
        )
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(PRECISIONS[precision])
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


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
    overwrite=False,
    log=print,
    process_group=None,
    sync_batch_norm=True,
    data_format="auto",
    device=None,
):
    """Trains a BA model in the run folder `output`; resumes an unfinished run there.

    Rerunning the same call after an interruption restores the newest intact
    backup and continues with the next epoch; rerunning it after the run
    finished returns at once (`already_finished`); another configuration in
    the same folder is refused before anything is written. Two runs with the
    same arguments, backend and data give the same history on CPU (see the
    README for the limits).

    Args:
        model_spec: a `ModelSpec` (name and size options).
        source: a `DataSource`.
        recipe: a `Recipe` (see `get_recipe`).
        output: the run folder (created if needed).
        seed: seed of initialization, shuffling and augmentation.
        precision: `"float32"`, `"bfloat16"` or `"float16"` (mixed).
        distribute_mode: one of `options.DISTRIBUTE_MODES`.
        devices: split the CPU into this many devices first (tests on one
            machine); must run before TensorFlow/JAX start computing.
        steps_per_epoch: optimizer steps per epoch; default one pass over
            the training images.
        jit_compile: `"auto"`, `"on"` or `"off"` (XLA). The saved models
            record this request, not what it resolved to on this backend, so
            a model trained under JAX loads under PyTorch without
            `torch.compile`.
        verbose: Keras verbosity (`"auto"`: a progress bar on a terminal,
            one line per epoch otherwise; 0, 1 or 2).
        cache: `"auto"`, `"memory"` or `"none"` (decoded images in memory).
        plot: write `history.png` at the end (needs matplotlib).
        overwrite: start afresh in a folder that holds a run (finished, or
            of another configuration): its files are removed first.
        log: where progress messages go (`print`).
        process_group: a `multiprocess.ProcessGroup` to train with several
            processes (`distribute_mode='data-parallel'` on JAX, `'ddp'` on
            PyTorch); default: resolved from the environment
            (`KERAS_BA_NUM_PROCESSES`..., torchrun, SLURM). Only process 0
            writes to `output`; the others read its backup to resume.
        sync_batch_norm: `'ddp'`: BatchNorm statistics over the global batch
            (False: per process, as plain DDP).
        data_format: layout the model computes in: `"auto"` (channels_first
            for BA-ResNets under PyTorch, where it is faster, channels_last
            otherwise; see `training.layout`),
            `"channels_last"` or `"channels_first"` (a GPU under
            TensorFlow). The saved models are channels_last whatever it is
            (`training.layout`); a run resumes in any layout.
        device: None, or `"auto"`, `"cpu"` or `"gpu"`: log the device(s) that
            train (`training.devices`; `"gpu"` without one raises). The GPUs
            are hidden for `"cpu"` by `devices.hide_gpus_if_asked` before
            the backend starts (the command line does it).

    Returns:
        A `TrainResult`.

    Raises:
        WorkflowError: bad data, paths, options, a folder holding another
            run, or a NaN loss.

    Example:
        train(ModelSpec("ba_resnet18"), DataSource("digits"),
              get_recipe("small", epochs=3), "runs/digits")
    """
    start = time.time()
    mode = _check_options(model_spec, distribute_mode, jit_compile)
    try:
        data_format = layout.resolve_data_format(data_format, model_spec.name)
    except ValueError as error:
        raise WorkflowError(str(error)) from None
    group = process_group or multiprocess.resolve_process_group(mode)
    multiprocess.check_mode(mode, group, devices=devices)
    multiprocess.check_batch(recipe.batch_size, group)
    if group.is_multi:
        multiprocess.initialize(group)  # before JAX computes anything, before any file
    if devices:
        distribute.configure_devices(devices)
    if device is not None:  # after the devices are set up: asking JAX for them fixes them
        log(device_lib.describe_devices(device, keras.backend.backend()))
    verbose = resolve_verbosity(verbose) if group.is_chief else 0
    if not group.is_chief:
        log(f"Training as {group.describe()}; process 0 reports the progress and writes.")
        log = _silent
    paths = _run_folder(output, mode)
    lock = run_guard.run_lock(paths, group)  # another process training here: fail at once
    requested = _requested_config(
        model_spec, source, recipe, seed, precision, mode, steps_per_epoch
    )
    requested = dataclasses.replace(requested, data_format=data_format)
    existing = _existing_run(paths, overwrite)
    if existing is not None:
        _check_same_run(existing, requested, paths, check_classes=False)
        if existing.finished:
            return _already_finished(paths, existing, start, log, writes=group.is_chief)
    # Strategies first: MultiWorkerMirroredStrategy must exist before any TF op.
    setup = distribute.setup_distribution(mode, processes=group.num_processes, log=log)
    created, fresh = not os.path.isdir(paths.root), False
    try:
        try:
            keras.utils.set_random_seed(seed)
            splits = data.load_splits(source, recipe.load_size())
            distribute.check_batch(recipe.batch_size, setup)
            steps = steps_per_epoch or data.steps_per_epoch(splits.train_size, recipe.batch_size)
            requested = dataclasses.replace(
                requested, class_names=list(splits.class_names), steps=steps
            )
            if existing is not None:
                _check_same_run(existing, requested, paths)
            build = _builder(
                model_spec, len(splits.class_names), recipe.image_size, precision, setup
            )
            model = _compile(build(data_format), recipe, steps, setup, jit_compile)
            saved = _saved_model(build, data_format, jit_compile)
            # Data, model and options are checked: from here on the folder is
            # written, under its lock (by process 0 only; the others wait, then
            # read the same backup).
            if group.is_chief:
                existing = run_guard.lock_run(
                    lock, paths, existing, requested, overwrite, _existing_run, _check_same_run
                )
                fresh = existing is None
                if overwrite:
                    paths.clear()
                paths.remove_temporaries()
            multiprocess.barrier(group, "cleared")
            with setup.scope():
                initial_epoch = run_folder.restore_training_state(
                    model, paths.backup, clean=group.is_chief
                )
            multiprocess.check_same_start(model, initial_epoch, group)
            if group.is_chief:
                if initial_epoch == 0:
                    _clear_progress(paths)
                requested.save(paths.config)
            _print_plan(
                model, recipe, splits, steps, setup, precision, paths, initial_epoch, log, group
            )
            if initial_epoch < recipe.epochs:
                _fit(
                    model,
                    recipe,
                    splits,
                    steps,
                    seed,
                    cache,
                    paths,
                    verbose,
                    source,
                    setup,
                    initial_epoch,
                    group,
                    sync_batch_norm,
                    saved,
                )
            multiprocess.barrier(group, "trained")  # process 0's last epoch is written
        finally:
            setup.close()
        history = (
            run_folder.read_history(paths.history_csv) if os.path.exists(paths.history_csv) else {}
        )
        _check_finite(history)
        model = saved(model)
        if group.is_chief:
            _finish(model, paths, requested, plot, log)
            log(f"Saved {paths.model} ({time.time() - start:.0f} s).")
    except (run_guard.DataReadError, OSError):
        if fresh:  # failed before its first epoch: leave the folder as it was
            run_guard.undo_fresh_run(paths, created, lock)
        raise
    finally:
        lock.release()
    multiprocess.shutdown(group)
    return TrainResult(paths.model, paths, history, time.time() - start, initial_epoch, model=model)


def _silent(message):
    """The log of processes other than 0: process 0 reports."""


def _check_options(model_spec, distribute_mode, jit_compile):
    """Cheap checks before any work; returns the resolved distribution mode."""
    mode = modes.resolve_mode(distribute_mode)
    modes.check_backend(mode, keras.backend.backend())
    modes.check_multi_worker(mode)
    if jit_compile not in JIT_CHOICES:
        raise WorkflowError(
            f"`jit_compile` must be one of {tuple(JIT_CHOICES)}. "
            f"Received: `jit_compile={jit_compile!r}`."
        )
    models.check_model_name(model_spec.name)
    return mode


def _run_folder(output, mode):
    """Worker 0 writes to `output`; other multi-worker workers to a sub-folder."""
    index = distribute.worker_index() if mode == "multi-worker" else 0
    return run_folder.RunPaths(output if index == 0 else os.path.join(output, f".worker{index}"))


def _requested_config(model_spec, source, recipe, seed, precision, mode, steps_per_epoch):
    if source.kind == "folder":
        source = dataclasses.replace(source, data=os.path.abspath(source.data))
    if model_spec.weights:
        model_spec = dataclasses.replace(model_spec, weights=os.path.abspath(model_spec.weights))
    return run_folder.RunConfig(
        model=model_spec.name,
        model_spec=dataclasses.asdict(model_spec),
        data=dataclasses.asdict(source),
        recipe=dataclasses.asdict(recipe),
        seed=seed,
        precision=precision,
        distribute=mode,
        steps_per_epoch=steps_per_epoch,
        backend=keras.backend.backend(),
        image_size=recipe.image_size,
        eval_crop_pct=recipe.eval_crop_pct,
        keras_ba_version=__version__,
    )


def _existing_run(paths, overwrite):
    """The run already in the folder (None when there is none, or with `overwrite`)."""
    if overwrite:
        return None
    existing = run_folder.read_run_config(paths.root, run_folder.TRAIN_CONFIG_RECOVERY)
    run_folder.read_history_rows(paths.history_csv)  # a damaged history stops here, untouched
    if existing is None and os.path.isdir(paths.backup) and os.listdir(paths.backup):
        raise WorkflowError(
            f"{paths.root!r} holds training state (backup/) but no run.json, so its "
            "configuration is unknown: pass `overwrite=True` to start afresh there, or "
            "choose another `output`."
        )
    return existing


def _check_same_run(existing, requested, paths, check_classes=True):
    differences = existing.differences(requested)
    if check_classes and list(existing.class_names or []) != list(requested.class_names or []):
        differences.append("class_names")
    if not differences:
        return
    state = "a finished" if existing.finished else "an unfinished"
    fields = ", ".join(f"`{name}`" for name in differences)
    raise WorkflowError(
        f"{paths.root!r} holds {state} run of another configuration (it differs in "
        f"{fields}); nothing was changed. Rerun with that run's settings, pass "
        "`overwrite=True` to start afresh there, or choose another `output`."
    )


def _already_finished(paths, existing, start, log, writes=True):
    if not os.path.isfile(paths.model):
        raise WorkflowError(
            f"{paths.root!r} holds a finished run but its model.keras is missing: pass "
            "`overwrite=True` to train it again."
        )
    history = (
        run_folder.read_history(paths.history_csv) if os.path.exists(paths.history_csv) else {}
    )
    epochs = len(history.get("epoch", []))
    log(
        f"Nothing to do: {paths.root} holds this run, finished ({epochs} epochs, "
        f"{paths.model}). Pass `overwrite=True` to train it again."
    )
    if writes and os.path.isdir(paths.backup):  # left by a kill after the run finished
        shutil.rmtree(paths.backup, ignore_errors=True)
    return TrainResult(
        paths.model, paths, history, time.time() - start, epochs, already_finished=True
    )


def _clear_progress(paths):
    """A run that starts at epoch 0: nothing of an earlier attempt is valid."""
    for path in (paths.model, paths.history_csv, paths.history_png):
        if os.path.exists(path):
            os.remove(path)
    for folder in (os.path.dirname(paths.checkpoint), paths.backup, paths.logs):
        shutil.rmtree(folder, ignore_errors=True)


def _builder(model_spec, num_classes, image_size, precision, setup):
    """`build(data_format)`: the run's model in that layout (in the run's
    precision and distribution scope)."""

    def build(data_format):
        with dtype_policy(precision), setup.scope():
            try:
                return model_spec.build(num_classes, image_size, data_format=data_format)
            except WorkflowError:
                raise
            except (ValueError, TypeError) as error:
                if not model_spec.weights:
                    raise
                detail = (str(error).strip().splitlines() or [type(error).__name__])[0]
                raise WorkflowError(
                    f"Cannot start from `weights={model_spec.weights!r}`: {detail}"
                ) from None

    return build


def _compile(model, recipe, steps, setup, jit_compile):
    with setup.scope():
        model.compile(
            optimizer=recipes.make_optimizer(recipe, steps, model),
            loss=recipes.make_loss(recipe),
            metrics=recipes.make_metrics(model.output_shape[-1]),
            jit_compile=JIT_CHOICES[jit_compile],
        )
        model.optimizer.build(model.trainable_variables)
    record_jit_request(model, JIT_CHOICES[jit_compile])
    return model


def _saved_model(build, data_format, jit_compile):
    """`saved(model)`: what the run writes for `model` (channels_last, with the
    `jit_compile` request recorded as `_compile` records it)."""
    if data_format == "channels_last":
        return lambda trained: trained

    def saved(trained):
        copy = layout.channels_last_copy(trained, build)
        record_jit_request(copy, JIT_CHOICES[jit_compile])
        return copy

    return saved


def record_jit_request(model, jit_compile):
    """Makes the saved compile config hold `jit_compile` as requested.

    `Model.compile` stores what `jit_compile="auto"` resolved to on the
    current backend (True under JAX), and `load_model` compiles with it: a
    model trained under JAX then runs `torch.compile` when loaded under
    PyTorch (a flood of `recompile_limit` warnings). Recording the request
    lets each backend resolve its own default.

    Example:
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> model.compile(loss="mse", jit_compile="auto")
    >>> record_jit_request(model, "auto"); model.get_compile_config()["jit_compile"]
    'auto'
    """
    _keras_compat.set_compile_argument(model, "jit_compile", jit_compile)


def _print_plan(model, recipe, splits, steps, setup, precision, paths, initial_epoch, log, group):
    log(
        f"Training {model.name} ({model.count_params():,} parameters) on "
        f"{splits.train_size} images of {len(splits.class_names)} classes "
        f"({splits.validation_size} for validation), {recipe.image_size}x{recipe.image_size} px.\n"
        f"  {recipe.epochs} epochs x {steps} steps, batch {recipe.batch_size}, {recipe.optimizer} "
        f"peak lr {recipe.peak_lr():g}, precision {precision}, backend "
        f"{keras.backend.backend()}, {setup.mode} ({setup.replicas} replica(s)), "
        f"{group.describe()}.\n"
        f"  Run folder: {paths.root} (rerun the same command to resume)."
    )
    if initial_epoch:
        log(f"  Resuming after epoch {initial_epoch} (restored from {paths.backup}).")


def _fit(
    model,
    recipe,
    splits,
    steps,
    seed,
    cache,
    paths,
    verbose,
    source,
    setup,
    initial_epoch,
    group,
    sync_batch_norm,
    saved,
):
    tf = data.tf
    num_classes = len(splits.class_names)
    shards = multiprocess.shard_arguments(group)
    train_ds = data.train_dataset(splits, recipe, seed, cache, **shards)
    # JAX DataParallel needs every batch to split over the devices: the
    # validation during training skips the last partial batch there.
    drop = setup.mode == "data-parallel"
    if drop and splits.validation_size < recipe.batch_size:
        raise WorkflowError(
            f"`distribute_mode='data-parallel'` validates in full batches, but the "
            f"{splits.validation_size} validation images are fewer than "
            f"`batch_size={recipe.batch_size}`."
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
    run_callbacks = multiprocess.process_callbacks(
        callbacks.make_callbacks(paths, saved=saved), group
    )
    run_callbacks.append(progress)
    try:
        with multiprocess.peer_loss_guard(group, progress):
            if setup.mode == "ddp":
                return ddp_loop.fit(
                    model,
                    train_ds,
                    val_ds,
                    recipe.epochs,
                    steps,
                    run_callbacks,
                    group,
                    initial_epoch=initial_epoch,
                    verbose=verbose,
                    sync_batch_norm=sync_batch_norm,
                )
            history = model.fit(
                train_ds,
                epochs=recipe.epochs,
                initial_epoch=initial_epoch,
                steps_per_epoch=steps,
                validation_data=val_ds,
                callbacks=run_callbacks,
                verbose=verbose,
                shuffle=False,
            )
    except tf.errors.InvalidArgumentError as error:
        raise run_guard.DataReadError(_data_error_message(error, source)) from None
    return history.history


MAX_FILES_TO_CHECK = 20_000  # decoding them all after a failure takes about a minute


def _data_error_message(error, source):
    message = data.clean_tf_message(error).rstrip(".")
    if source.kind != "folder":
        return f"The input pipeline failed: {message}."
    bad = data.find_unreadable_images(source.data, max_files=MAX_FILES_TO_CHECK)
    if bad is None:
        where = (
            "find it with keras_ba.data.pipeline.find_unreadable_images"
            f"({source.data!r}) (it decodes every file)"
        )
    else:
        where = f"unreadable: {bad[:5]}" if bad else "no single file fails to decode on its own"
    return f"Reading the images of {source.data!r} failed: {message}; {where}."


def _check_finite(history):
    losses = history.get("loss", [])
    if losses and not all(v == v and abs(v) != float("inf") for v in losses):
        raise WorkflowError(
            "Training stopped: the loss became NaN or infinite (TerminateOnNaN); the model "
            "was not saved. Lower `lr`, use `precision='float32'` or check the data."
        )


def _finish(model, paths, config, plot, log):
    """Model, plot, `status: finished`, then the backup goes: each step atomic.

    A kill before `run.json` says finished leaves the backup of the last
    epoch: the rerun restores it, has no epoch left to train and comes
    here again.
    """
    run_folder.atomic_save(model, paths.model)
    if plot:
        _plot(paths, model.name, log)
    dataclasses.replace(config, status=run_folder.FINISHED).save(paths.config)
    shutil.rmtree(paths.backup, ignore_errors=True)


def _plot(paths, title, log):
    from keras_ba.extras import MissingExtraError
    from keras_ba.runs import plots

    try:
        plots.plot_history(paths.history_csv, paths.history_png, title=title)
    except (WorkflowError, MissingExtraError) as error:
        log(f"No history plot: {error}")
