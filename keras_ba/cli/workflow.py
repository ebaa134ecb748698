"""`keras-ba evaluate | predict | export`: using a trained model.

Example:
    keras-ba train --model ba_resnet18 --data digits --recipe small --epochs 3 --output runs/digits
    keras-ba evaluate runs/digits/model.keras
    keras-ba predict runs/digits/model.keras some_digit.png --top-k 3
    keras-ba export runs/digits/model.keras --output serving
    keras-ba export runs/digits --format litert --quantize int8
"""

import os
import sys

from keras_ba.cli._shared import (  # noqa: F401 (their home before 0.3)
    FLAG_OF,
    common_flags,
    flag_text,
    os_error_message,
    set_command,
    verbosity,
)
from keras_ba.errors import WorkflowError

# Light imports only: the parser is built before Keras or TensorFlow start.
from keras_ba.options import (
    CACHE_MODES,
    EXPORT_FORMATS,
    QUANTIZE_MODES,
    SUBSETS,
)


def register(subparsers):
    """Adds the `evaluate`, `predict` and `export` commands (`train`: `cli.train`).

    Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser()
    >>> register(parser.add_subparsers(dest="command"))
    >>> parser.parse_args(["evaluate", "m.keras"]).subset
    'validation'
    """
    _add_evaluate(subparsers)
    _add_predict(subparsers)
    _add_export(subparsers)


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
    common_flags(parser)
    set_command(parser, _evaluate)


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
        verbose=verbosity(args.verbose),
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
    common_flags(parser)
    set_command(parser, _predict)


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
    common_flags(parser)
    set_command(parser, _export)


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
