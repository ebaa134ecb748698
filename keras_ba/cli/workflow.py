"""`keras-ba train | evaluate | predict | export`: the training workflow.

Example:
    keras-ba train --model ba_resnet18 --data digits --recipe small --epochs 3 --output runs/digits
    keras-ba evaluate runs/digits/model.keras
    keras-ba predict runs/digits/model.keras some_digit.png --top-k 3
    keras-ba export runs/digits/model.keras --output serving
    keras-ba export runs/digits --format litert --quantize int8
"""

import argparse
import dataclasses
import os
import re
import sys

from keras_ba.errors import WorkflowError

# Light imports only: the parser is built before Keras or TensorFlow start.
from keras_ba.extras import MissingExtraError
from keras_ba.options import (
    CACHE_MODES,
    DATA_FORMATS,
    DEVICES,
    DIGITS,
    DISTRIBUTE_MODES,
    EXPORT_FORMATS,
    JIT_CHOICES,
    PRECISIONS,
    QUANTIZE_MODES,
    STEMS,
    SUBSETS,
)
from keras_ba.training import recipes


def register(subparsers):
    """Adds the `train`, `evaluate`, `predict` and `export` commands.

    Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser()
    >>> register(parser.add_subparsers(dest="command"))
    >>> parser.parse_args(["evaluate", "m.keras"]).subset
    'validation'
    """
    _add_train(subparsers)
    _add_evaluate(subparsers)
    _add_predict(subparsers)
    _add_export(subparsers)


# Library parameters whose flag is not `--` + the name with dashes.
FLAG_OF = {
    "distribute_mode": "distribute",
    "model_spec.name": "model",
    "data.data": "data",
    "source": "data",
    "top_k": "top-k",
}


def flag_text(message, parser):
    """A library message in command-line terms: `name=value` -> `--name value`.

    The library names its Python parameters in backquotes (`` `batch_size` ``,
    `` `batch_size=6` ``, `` `recipe.epochs` ``); those that are flags of
    `parser` become the flag (a dotted field: its last part), the others
    lose their backquotes.

    Example:
    >>> parser = argparse.ArgumentParser()
    >>> _ = parser.add_argument("--batch-size"); _ = parser.add_argument("--overwrite")
    >>> flag_text("Use `batch_size=6`, `recipe.batch_size` or `overwrite=True`.", parser)
    'Use --batch-size 6, --batch-size or --overwrite.'
    """
    flags = {option for action in parser._actions for option in action.option_strings}

    def replace(match):
        name, value = match.group(1), match.group(2)
        flag = "--" + FLAG_OF.get(name, name.split(".")[-1]).replace("_", "-")
        if flag not in flags:
            return match.group(0)[1:-1]
        if value is None or value == "True":
            return flag
        return f"{flag} {value.strip(chr(39))}"

    return re.sub(r"`([A-Za-z_][\w.]*)(?:=([^`]*))?`", replace, message)


def _handler(function):
    """Runs a command: user errors become one message and exit status 1."""

    def run(args):
        try:
            return function(args) or 0
        except (WorkflowError, MissingExtraError) as error:
            if args.traceback:
                raise
            message = flag_text(str(error), args.command_parser)
            print(f"keras-ba {args.command}: error: {message}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print(f"\nkeras-ba {args.command}: interrupted.", file=sys.stderr)
            return 130
        except OSError as error:
            if args.traceback:
                raise
            print(f"keras-ba {args.command}: error: {os_error_message(error)}", file=sys.stderr)
            from keras_ba.utils import weights_files

            weights_files.exit_if_stuck(1)  # a weights file left open would crash the exit
            return 1

    return run


def os_error_message(error):
    """One line for an operating-system error (full disk, permissions...).

    Example:
    >>> import errno
    >>> os_error_message(OSError(errno.ENOSPC, "No space left on device", "run/model.keras"))[:63]
    "No space left on device: 'run/model.keras' (errno 28). Free som"
    """
    what = os.strerror(error.errno) if error.errno else str(error) or type(error).__name__
    where = f": {error.filename!r}" if error.filename else ""
    number = f" (errno {error.errno})" if error.errno else ""
    return (
        f"{what}{where}{number}. Free some space or fix the permissions, then rerun the same "
        "command (an interrupted run resumes at its last finished epoch)."
    )


def _set_command(parser, function, check=None):
    parser.set_defaults(
        func=_handler(function),
        check=_handler(check) if check else None,
        command_parser=parser,
        needs_tensorflow=True,
    )


def _common(parser):
    parser.add_argument(
        "--traceback", action="store_true", help="show the full traceback of an error"
    )
    parser.add_argument(
        "--verbose",
        default="auto",
        choices=("auto", "0", "1", "2"),
        help="Keras progress output: 1 progress bar, 2 one line per epoch, 0 silent; auto: "
        "1 on a terminal, 2 when the output goes to a file or a pipe",
    )


def _verbosity(value):
    return value if value == "auto" else int(value)


# === train ===


def _add_train(subparsers):
    parser = subparsers.add_parser(
        "train",
        help="train a BA model (resumes an unfinished run in --output)",
        description="Train a BA model on the embedded digits, an image folder or a local "
        "TFDS dataset with one of the papers' recipes. Rerunning the same command after an "
        "interruption (even a kill) resumes at the next epoch; rerunning a finished run does "
        "nothing (--overwrite trains it again); another configuration in the same --output "
        "is refused.",
    )
    data = parser.add_argument_group("data")
    data.add_argument(
        "--data",
        default=DIGITS,
        help=f"'{DIGITS}' (embedded, no download), a folder <dir>/<class>/<image> (or "
        "<dir>/train + <dir>/val), or tfds:<name> prepared locally (default: digits)",
    )
    data.add_argument(
        "--validation-split",
        type=float,
        default=0.2,
        help="fraction held out for validation (default: 0.2)",
    )
    data.add_argument(
        "--split-seed",
        type=int,
        default=1337,
        help="seed of the train/validation split (default: 1337)",
    )
    data.add_argument("--limit", type=int, help="use at most N images per split (quick runs)")
    data.add_argument("--tfds-data-dir", help="TFDS data folder (default: TFDS' own)")
    data.add_argument(
        "--cache",
        default="auto",
        choices=CACHE_MODES,
        help="keep decoded images in memory (auto: when they fit in 2 GiB)",
    )
    _add_model_flags(parser)
    _add_recipe_flags(parser)
    run = parser.add_argument_group("run")
    run.add_argument("--output", help="run folder (default: runs/<model>)")
    run.add_argument("--seed", type=int, default=0, help="seed of weights, shuffle, augmentation")
    run.add_argument(
        "--steps-per-epoch",
        type=int,
        help="optimizer steps per epoch (default: one pass over the images)",
    )
    run.add_argument(
        "--precision",
        default="float32",
        choices=tuple(PRECISIONS),
        help="float32, or mixed precision with bfloat16 / float16 compute",
    )
    run.add_argument(
        "--distribute",
        default="none",
        choices=tuple(DISTRIBUTE_MODES),
        help="; ".join(f"{k}: {v}" for k, v in DISTRIBUTE_MODES.items()),
    )
    run.add_argument(
        "--device",
        default="auto",
        choices=DEVICES,
        help="which device trains: gpu (an error without one), cpu (GPUs hidden), or "
        "auto (what the backend finds); the banner names it",
    )
    run.add_argument(
        "--devices",
        type=int,
        help="split the CPU into N devices (to try --distribute on one machine)",
    )
    _add_multiprocess_flags(parser)
    run.add_argument(
        "--jit-compile",
        default="auto",
        choices=tuple(JIT_CHOICES),
        help="XLA compilation of the train step (default: Keras' choice)",
    )
    run.add_argument(
        "--data-format",
        default="auto",
        choices=DATA_FORMATS,
        help="layout the model computes in (auto: channels_first for BA-ResNets under "
        "PyTorch, where it is faster, channels_last otherwise); the saved models are "
        "channels_last",
    )
    run.add_argument(
        "--compilation-cache",
        default="auto",
        metavar="DIR|auto|off",
        help="JAX: keep compiled programs in DIR so that the next run starts at once "
        "(auto: $KERAS_BA_COMPILATION_CACHE or ~/.cache/keras_ba/jax; off: none)",
    )
    run.add_argument("--no-plot", action="store_true", help="do not write history.png")
    run.add_argument(
        "--overwrite",
        action="store_true",
        help="start afresh in an --output that holds a finished run or one of another "
        "configuration (its run files are removed first)",
    )
    _common(parser)
    _set_command(parser, _train, check=_check_train)


def _add_multiprocess_flags(parser):
    group = parser.add_argument_group(
        "several processes",
        "--distribute data-parallel (JAX) or ddp (PyTorch) on several processes/machines. "
        "Each value may also come from KERAS_BA_NUM_PROCESSES, KERAS_BA_PROCESS_ID, "
        "KERAS_BA_COORDINATOR, KERAS_BA_DISTRIBUTED_TIMEOUT, or from torchrun / SLURM.",
    )
    group.add_argument("--num-processes", type=int, help="processes that train together")
    group.add_argument("--process-id", type=int, help="this process, 0..N-1 (0 writes the files)")
    group.add_argument("--coordinator", metavar="HOST:PORT", help="process 0's address and port")
    group.add_argument(
        "--distributed-timeout",
        type=float,
        metavar="SECONDS",
        help="wait this long for the processes to join or a lost one (default: 300)",
    )
    group.add_argument(
        "--sync-batch-norm",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="ddp: BatchNorm statistics over the global batch (default), or per process",
    )


def _add_model_flags(parser):
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        default="ba_resnet18",
        help="model name, e.g. ba_resnet18, ba_resnet50 (keras_ba.applications."
        "list_models()); default: ba_resnet18",
    )
    group.add_argument(
        "--attention",
        metavar="NAME",
        help="attention in every block: a name registered in keras_ba.layers "
        "(built in: bav1, bav2, se) or none (default: the model's, bav1)",
    )
    group.add_argument(
        "--stem",
        default="auto",
        choices=STEMS,
        help="BA-ResNet stem: cifar (3x3/1) below 128 px when auto",
    )
    group.add_argument(
        "--depths",
        type=int,
        nargs="+",
        metavar="N",
        help="BA-ResNet blocks per stage, e.g. 1 1 1 1 (tiny test models)",
    )
    group.add_argument(
        "--widths",
        type=int,
        nargs="+",
        metavar="N",
        help="BA-ResNet filters per stage, e.g. 8 16 32 64",
    )
    group.add_argument(
        "--reduction",
        type=int,
        help="attention reduction ratio (default 16; smaller for tiny widths)",
    )
    group.add_argument("--weights", help="start from this .keras / .weights.h5 file")


def _add_recipe_flags(parser):
    group = parser.add_argument_group(
        "recipe",
        "Each flag replaces one field of the recipe; values of bav1 / bav2 / small in brackets.",
    )
    group.add_argument(
        "--recipe",
        default=None,
        choices=recipes.list_recipes(),
        help="default: bav2 for the vision transformers (ba_swin_*, ba_pvt_*, ba_cswin_*), "
        "small otherwise; " + "; ".join(f"{k}: {v}" for k, v in recipes.RECIPE_SUMMARIES.items()),
    )
    for field in dataclasses.fields(recipes.Recipe):
        defaults = " / ".join(
            str(getattr(recipes.RECIPES[n], field.name)) for n in ("bav1", "bav2", "small")
        )
        options = {"help": f"{field.metadata['help']} [{defaults}]", "default": None}
        if field.type is bool:
            options["action"] = argparse.BooleanOptionalAction
        else:
            options["type"] = field.type
            options["choices"] = field.metadata["choices"]
        group.add_argument("--" + field.name.replace("_", "-"), **options)


def _check_train(args):
    """Checks of `train` that need no Keras: they answer before TensorFlow starts.

    Example:
    >>> _check_train(argparse.Namespace(model="ba_resnet5", device="auto"))
    Traceback (most recent call last):
    ...
    keras_ba.errors.WorkflowError: Unknown model name 'ba_resnet5' (did you mean 'ba_resnet50'...
    """
    from keras_ba.applications import registry

    if args.model not in registry.MODELS:
        raise WorkflowError(registry.unknown_model_message(args.model))


def _train(args):
    from keras_ba.training import devices

    devices.hide_gpus_if_asked(args.device)  # before the backend starts
    import keras

    from keras_ba.training import compilation_cache, trainer
    from keras_ba.training.distributed import launch as multiprocess

    compilation_cache.enable_compilation_cache(args.compilation_cache)
    from keras_ba.data.pipeline import DataSource
    from keras_ba.training.models import ModelSpec

    group = multiprocess.resolve_process_group(
        args.distribute,
        num_processes=args.num_processes,
        process_id=args.process_id,
        coordinator=args.coordinator,
        distributed_timeout=args.distributed_timeout,
    )

    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(recipes.Recipe)}
    recipe = recipes.get_recipe(args.recipe or recipes.default_recipe(args.model), **overrides)
    spec = ModelSpec(
        name=args.model,
        stem=args.stem,
        attention=args.attention,
        reduction=args.reduction,
        depths=tuple(args.depths) if args.depths else None,
        widths=tuple(args.widths) if args.widths else None,
        weights=args.weights,
    )
    source = DataSource(
        args.data, args.validation_split, args.split_seed, args.limit, args.tfds_data_dir
    )
    print(devices.describe_devices(args.device, keras.backend.backend()), flush=True)
    result = trainer.train(
        spec,
        source,
        recipe,
        args.output or os.path.join("runs", args.model),
        seed=args.seed,
        precision=args.precision,
        distribute_mode=args.distribute,
        devices=args.devices,
        steps_per_epoch=args.steps_per_epoch,
        jit_compile=args.jit_compile,
        verbose=_verbosity(args.verbose),
        cache=args.cache,
        plot=not args.no_plot,
        overwrite=args.overwrite,
        log=lambda message: print(flag_text(message, args.command_parser), flush=True),
        process_group=group,
        sync_batch_norm=args.sync_batch_norm,
        data_format=args.data_format,
    )
    if result.already_finished:
        return 0
    last = {k: v[-1] for k, v in result.history.items() if v}
    shown = ", ".join(
        f"{k} {last[k]:.4f}" for k in ("loss", "accuracy", "val_loss", "val_accuracy") if k in last
    )
    print(f"Last epoch: {shown}")


# === evaluate ===


def _add_evaluate(subparsers):
    parser = subparsers.add_parser(
        "evaluate",
        help="accuracy of a saved model on the validation split",
        description="Accuracy and loss of a .keras model. By default on the validation "
        "split of the data it was trained on (read from run.json next to the model).",
    )
    parser.add_argument("model", help="a .keras file or a run folder")
    parser.add_argument("--data", help="data to evaluate on (default: the run's data)")
    parser.add_argument(
        "--validation-split",
        type=float,
        default=0.2,
        help="with --data: fraction held out (default: 0.2)",
    )
    parser.add_argument(
        "--split-seed",
        type=int,
        default=1337,
        help="with --data: seed of the split (default: 1337)",
    )
    parser.add_argument("--tfds-data-dir", help="TFDS data folder")
    parser.add_argument("--subset", default="validation", choices=SUBSETS)
    parser.add_argument("--limit", type=int, help="evaluate at most N images")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--cache", default="auto", choices=CACHE_MODES)
    parser.add_argument("--json", help="also write the results to this JSON file")
    _add_overwrite_json(parser)
    _common(parser)
    _set_command(parser, _evaluate)


def _evaluate(args):
    from keras_ba.data.pipeline import DataSource
    from keras_ba.training import inference

    _check_json_output(args)

    source = None
    if args.data:
        source = DataSource(
            args.data, args.validation_split, args.split_seed, None, args.tfds_data_dir
        )
    results = inference.evaluate(
        args.model,
        source,
        subset=args.subset,
        batch_size=args.batch_size,
        limit=args.limit,
        cache=args.cache,
        verbose=_verbosity(args.verbose),
    )
    correct = round(results["accuracy"] * results["images"])
    print(
        f"accuracy {results['accuracy']:.4f} ({correct}/{results['images']} {results['subset']} "
        f"images; chance {results['chance']:.4f}), loss {results['loss']:.4f}"
        + (f", top-5 {results['top5_accuracy']:.4f}" if "top5_accuracy" in results else "")
    )
    _write_json(results, args.json)


def _add_overwrite_json(parser):
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --json file")


def _check_json_output(args):
    """Refuses a --json path that names a run's own file, or an existing file
    without --overwrite, before any work."""
    if not args.json:
        return
    from keras_ba.runs import folder as run_folder

    check_output_file(args.json, run_folder.model_path(args.model), args.overwrite)


def check_output_file(path, model_file, overwrite):
    """Refuses to write `path` over a file of the run beside `model_file`, or
    over an existing file unless `overwrite`.

    Example:
    >>> check_output_file("runs/a/run.json", "runs/a/model.keras", overwrite=True)
    Traceback (most recent call last):
    ...
    keras_ba.errors.WorkflowError: --json 'runs/a/run.json' is a file of the run 'runs/a': choose another path.
    """
    from keras_ba.runs.folder import RunPaths

    run = RunPaths(os.path.dirname(os.fspath(model_file)))
    own = {os.path.realpath(p) for p in run.training_state() + (run.checkpoint,)}
    if os.path.realpath(path) in own or os.path.realpath(path) == os.path.realpath(model_file):
        raise WorkflowError(
            f"--json {path!r} is a file of the run {run.root!r}: choose another path."
        )
    if os.path.exists(path) and not overwrite:
        raise WorkflowError(
            f"--json {path!r} already exists: pass --overwrite to replace it, or choose "
            "another path."
        )


def _write_json(results, path):
    if path:
        from keras_ba.runs.folder import write_json

        write_json(results, path)


# === predict ===


def _add_predict(subparsers):
    parser = subparsers.add_parser(
        "predict",
        help="classify image files with a saved model",
        description="Classify images (files or folders) with a .keras model; prints one "
        "line per image: path, class, probability. A file that cannot be read is reported "
        "(on stderr) and the others are still classified; the exit status is 1 if any failed.",
    )
    parser.add_argument("model", help="a .keras file or a run folder")
    parser.add_argument("images", nargs="+", help="image files or folders")
    parser.add_argument("--top-k", type=int, default=1, help="classes per image (default: 1)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--json", help="also write the predictions to this JSON file")
    _add_overwrite_json(parser)
    _common(parser)
    _set_command(parser, _predict)


def _predict(args):
    from keras_ba.training import inference

    _check_json_output(args)

    results = inference.predict(
        args.model, args.images, top_k=args.top_k, batch_size=args.batch_size
    )
    failed = 0
    for item in results:
        if "error" in item:
            failed += 1
            print(f"keras-ba predict: error: {item['path']}: {item['error']}", file=sys.stderr)
            continue
        top = "  ".join(f"{name} {probability:.4f}" for name, probability in item["top"])
        print(f"{item['path']}\t{top}")
    _write_json(results, args.json)
    if failed:
        print(
            f"keras-ba predict: {failed} of {len(results)} files could not be read.",
            file=sys.stderr,
        )
        return 1
    return 0


# === export ===


def _add_export(subparsers):
    parser = subparsers.add_parser(
        "export",
        help="export a saved model for TF Serving, ONNX Runtime or LiteRT",
        description="Write a TF Serving SavedModel <output>/<name>/<version>/ (default), an "
        "ONNX file or a LiteRT file. All take float32 RGB images in [0, 255] (key 'images') "
        "and return 'probabilities' and 'class_ids'; each file is checked by its own runtime.",
    )
    parser.add_argument("model", help="a .keras file or a run folder")
    parser.add_argument(
        "--output",
        help="SavedModel: base folder (default: serving); onnx/litert: a new or empty folder "
        "(default: <name>-<format>) or a .onnx/.tflite file",
    )
    parser.add_argument(
        "--format", default="saved_model", help=f"one of {', '.join(EXPORT_FORMATS)}"
    )
    parser.add_argument("--name", help="model name in the serving layout (default: the run's)")
    parser.add_argument("--version", type=int, help="version folder (default: the next free one)")
    parser.add_argument("--image-size", type=int, help="model input side (default: the run's)")
    parser.add_argument("--crop-pct", type=float, help="evaluation crop (default: the run's)")
    parser.add_argument(
        "--quantize",
        default="none",
        help=f"litert: one of {', '.join(QUANTIZE_MODES)} (dynamic: int8 weights; int8: "
        "weights and activations, calibrated on --representative-data)",
    )
    parser.add_argument(
        "--representative-data",
        help="int8 calibration images: digits, tfds:<name> or a folder (default: the run's data)",
    )
    parser.add_argument(
        "--representative-count", type=int, help="calibration images to use (default: 100)"
    )
    _common(parser)
    _set_command(parser, _export)


def _export(args):
    from keras_ba.export.saved_model import export_model

    path = export_model(
        args.model,
        args.output,
        name=args.name,
        version=args.version,
        format=args.format,
        image_size=args.image_size,
        crop_pct=args.crop_pct,
        quantize=args.quantize,
        representative_data=args.representative_data,
        representative_count=args.representative_count,
    )
    print(f"Exported to {path}")
