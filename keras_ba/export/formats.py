"""`keras-ba export --format onnx|litert`: output checks, packages, the TensorFlow subprocess.

The conversion itself (`onnx_export`, `litert_export`) runs under the
TensorFlow backend: in this process under TensorFlow, in a subprocess
(`python -m keras_ba.export.formats`) under JAX or PyTorch, like the
SavedModel export. Everything that can be checked without TensorFlow
(format, flags, output, packages) is checked first, in the calling process.

Output:

- a folder (default `<model name>-<format>`, e.g. `ba_resnet18-litert-int8`)
  that does not exist or is empty; it receives `model.onnx` or
  `model.tflite`, `labels.txt` (one class name per line, in class-id order)
  and `export.json` (the input/output contract, the crop the app applies
  for LiteRT, the quantization and the self-check numbers);
- or a path ending in `.onnx` / `.tflite`, which must not exist: that file
  alone.

Everything is written to a temporary folder next to the target, checked by
the format's own runtime (ONNX Runtime, the LiteRT interpreter) and renamed
into place only then: a failed export leaves nothing behind.

Example:
>>> default_output("ba_resnet18", "litert", "int8")
'ba_resnet18-litert-int8'
"""

import argparse
import importlib.util
import json
import os
import shutil
import sys
import tempfile

import keras

from keras_ba.errors import WorkflowError
from keras_ba.options import QUANTIZE_MODES
from keras_ba.runs import folder as run_folder
from keras_ba.utils.tf_process import run_under_tensorflow

SUFFIXES = {"onnx": ".onnx", "litert": ".tflite"}
MODEL_FILES = {"onnx": "model.onnx", "litert": "model.tflite"}
PACKAGES = {"onnx": ("tf2onnx", "onnx", "onnxruntime"), "litert": ("ai_edge_litert",)}
PIP_NAMES = {"ai_edge_litert": "ai-edge-litert"}
RUNTIMES = {"onnx": "ONNX Runtime", "litert": "the LiteRT interpreter"}


def default_output(name, format, quantize="none"):
    """The default output folder: `<name>-<format>[-<quantize>]`.

    Example:
    >>> default_output("ba_resnet18", "onnx")
    'ba_resnet18-onnx'
    """
    suffix = "" if quantize in (None, "none") else f"-{quantize}"
    return f"{name}-{format}{suffix}"


def check_options(format, quantize="none", representative_data=None, representative_count=None):
    """One-line errors for flags that do not fit together.

    Example:
    >>> check_options("onnx", "int8")
    Traceback (most recent call last):
    ...
    keras_ba.errors.WorkflowError: --quantize applies to --format litert only, received --format onnx.
    """
    if format not in SUFFIXES:
        raise WorkflowError(
            f"No file export for --format {format!r}: use one of {tuple(SUFFIXES)}."
        )
    quantize = quantize or "none"
    if quantize not in QUANTIZE_MODES:
        raise WorkflowError(f"--quantize must be one of {QUANTIZE_MODES}, received {quantize!r}.")
    if format != "litert" and quantize != "none":
        raise WorkflowError(
            f"--quantize applies to --format litert only, received --format {format}."
        )
    if quantize != "int8" and (representative_data or representative_count):
        raise WorkflowError(
            "--representative-data and --representative-count apply to --quantize int8 only."
        )
    if representative_count is not None and (
        not isinstance(representative_count, int) or representative_count < 1
    ):
        raise WorkflowError(
            f"--representative-count must be a positive integer, received {representative_count!r}."
        )


def check_packages(format):
    """Names the missing packages of the format, with the pip command.

    Example:
    >>> check_packages("saved_model")
    """
    missing = [p for p in PACKAGES.get(format, ()) if importlib.util.find_spec(p) is None]
    if missing:
        names = " ".join(PIP_NAMES.get(p, p) for p in missing)
        raise WorkflowError(
            f"The {format} export needs {names}, which is not installed: "
            f'pip install "keras-ba[export]" (or pip install {names}).'
        )


def check_target(target, format):
    """A file path with the format's suffix that does not exist, or a new or empty folder.

    Example:
    >>> check_target("model.tflite", "onnx")
    Traceback (most recent call last):
    ...
    keras_ba.errors.WorkflowError: --output 'model.tflite' names a .tflite file, but --format onnx writes .onnx files (or a folder).
    """
    suffix = os.path.splitext(target)[1].lower()
    if suffix in SUFFIXES.values() and suffix != SUFFIXES[format]:
        raise WorkflowError(
            f"--output {target!r} names a {suffix} file, but --format {format} writes "
            f"{SUFFIXES[format]} files (or a folder)."
        )
    if suffix == SUFFIXES[format]:
        if os.path.exists(target):
            raise WorkflowError(f"The output file {target!r} already exists: choose another name.")
    elif os.path.isdir(target):
        if os.listdir(target):
            raise WorkflowError(
                f"The output folder {target!r} exists and is not empty: choose a new folder."
            )
    elif os.path.exists(target):
        raise WorkflowError(f"The output {target!r} exists and is not a folder.")


def export_file(
    model_path,
    output=None,
    format="onnx",
    name=None,
    image_size=None,
    crop_pct=None,
    quantize="none",
    representative_data=None,
    representative_count=None,
):
    """Exports `model_path` as ONNX or LiteRT, checked by the format's runtime.

    Args:
        model_path: a `.keras` classifier (from `keras-ba train` or any
            keras_ba model).
        output: a folder, or a `.onnx` / `.tflite` file; default
            `default_output(name, format, quantize)`.
        format: `"onnx"` or `"litert"`.
        name: model name for the default folder; default the run's model.
        image_size: input side; default from `run.json` or the model.
        crop_pct: evaluation crop; default from `run.json`, else 1.0.
        quantize: LiteRT only: `"none"`, `"dynamic"` or `"int8"`.
        representative_data: `--quantize int8` calibration images: `"digits"`,
            `"tfds:<name>"` or a folder; default the run's training data.
        representative_count: how many calibration images (default 100).

    Returns:
        The path written.

    Raises:
        WorkflowError: bad flags, an existing output, missing packages, an
            op the format cannot express, a failed runtime check.

    Example:
        export_file("runs/digits/model.keras", format="litert", quantize="int8")
        # the command line: keras-ba export runs/digits --format litert --quantize int8
    """
    quantize = quantize or "none"
    check_options(format, quantize, representative_data, representative_count)
    check_packages(format)
    model_path = run_folder.model_path(model_path)
    info = run_folder.model_info(model_path, image_size, crop_pct)
    if quantize == "int8" and representative_data is None and _run_data(model_path) is None:
        raise WorkflowError(
            "--quantize int8 needs calibration images: pass --representative-data "
            "digits|tfds:<name>|<folder> (there is no run.json with the training data)."
        )
    target = output or default_output(name or info["name"] or "model", format, quantize)
    check_target(target, format)
    run_folder.prepare_output_dir(os.path.dirname(os.path.abspath(target)))
    args = [model_path, target, format, info["image_size"], info["crop_pct"], quantize]
    args += [representative_data, representative_count]
    if keras.backend.backend() == "tensorflow":
        write(*args)
    else:
        _write_in_tensorflow_process(*args)
    return target


def _run_data(model_path):
    """The `DataSource` of the run that trained `model_path`, or None."""
    from keras_ba.data import pipeline as data

    run = run_folder.read_json(run_folder.RunPaths(os.path.dirname(model_path)).config) or {}
    return data.DataSource(**run["data"]) if run.get("data") else None


def write(
    model_path,
    target,
    format,
    image_size=None,
    crop_pct=1.0,
    quantize="none",
    representative_data=None,
    representative_count=None,
):
    """The conversion, under the TensorFlow backend (see `export_file`).

    Returns:
        The runtime check: `dict(max_abs_diff=..., top1_agreement=..., images=...)`.

    Example:
        write("runs/digits/model.keras", "digits-onnx", "onnx")
    """
    from keras_ba.export import litert as litert_export
    from keras_ba.export import onnx as onnx_export

    check_target(target, format)
    model = run_folder.load_trained_model(model_path)
    info = run_folder.model_info(model_path)
    image_size = image_size or model.input_shape[1]
    if not image_size:
        raise WorkflowError("The model takes images of any size: pass --image-size.")
    classes = int(model.output_shape[-1])
    class_names = list(info["class_names"] or [str(i) for i in range(classes)])
    crop_pct = crop_pct or 1.0
    temporary = tempfile.mkdtemp(prefix=".tmp-", dir=os.path.dirname(os.path.abspath(target)))
    try:
        path = os.path.join(temporary, MODEL_FILES[format])
        if format == "onnx":
            report = onnx_export.write_onnx(model, path, image_size, crop_pct, class_names)
        else:
            representative = None
            if quantize == "int8":
                representative = litert_export.representative_images(
                    representative_data or _run_data(model_path),
                    image_size,
                    crop_pct,
                    representative_count or litert_export.DEFAULT_REPRESENTATIVE_COUNT,
                )
            report = litert_export.write_litert(
                model, path, image_size, quantize, representative, check_images=representative
            )
        report["size_bytes"] = os.path.getsize(path)
        if target.lower().endswith(SUFFIXES[format]):
            os.replace(path, target)
        else:
            contract = _contract(format, model, image_size, crop_pct, quantize)
            _write_companions(temporary, class_names, {**contract, "check": report})
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(temporary, 0o777 & ~umask)  # mkdtemp's folder is private
            if os.path.isdir(target):
                os.rmdir(target)  # empty: checked above
            os.replace(temporary, target)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    _print_summary(target, format, quantize, report)
    return report


def _contract(format, model, image_size, crop_pct, quantize):
    """What an app needs to call the exported file (written as `export.json`)."""
    size = None if format == "onnx" else int(image_size)
    load_size = int(round(image_size / crop_pct))
    return {
        "format": format,
        "file": MODEL_FILES[format],
        "model": model.name,
        "quantize": quantize,
        "input": {
            "name": "images",
            "dtype": "float32",
            "shape": ["batch", size or "height", size or "width", 3],
            "values": "RGB in [0, 255]",
        },
        "outputs": {
            "probabilities": {"dtype": "float32", "shape": ["batch", int(model.output_shape[-1])]},
            "class_ids": {"dtype": "int32", "shape": ["batch"]},
        },
        "image_size": int(image_size),
        "crop_pct": float(crop_pct),
        "preprocessing_inside": (
            f"central square crop, bilinear resize to {load_size}, central {image_size} crop, "
            "ImageNet mean/std"
            if format == "onnx"
            else "ImageNet mean/std only"
        ),
        "preprocessing_by_the_caller": (
            "none"
            if format == "onnx"
            else f"resize the shorter side to {load_size}, take the central "
            f"{image_size}x{image_size} square"
        ),
    }


def _write_companions(folder, class_names, contract):
    with open(os.path.join(folder, "labels.txt"), "w") as file:
        file.write("\n".join(class_names) + "\n")
    with open(os.path.join(folder, "export.json"), "w") as file:
        json.dump(contract, file, indent=2)


def _print_summary(target, format, quantize, report):
    kind = format if quantize == "none" else f"{format} ({quantize})"
    noise = report.get("tensorflow_eager_vs_graph")
    amplifies = (
        f" (this model amplifies float32 rounding: TensorFlow's eager and graph runs "
        f"differ by {noise:.2g})"
        if noise is not None
        else ""
    )
    print(
        f"Wrote {target} ({kind}, {report['size_bytes']:,} bytes). Checked with "
        f"{RUNTIMES[format]} against TensorFlow on {report['images']} images: max "
        f"|probability difference| {report['max_abs_diff']:.2g}{amplifies}, top-1 "
        f"agreement {report['top1_agreement']:.1%}."
    )


def _write_in_tensorflow_process(
    model_path, target, format, image_size, crop_pct, quantize, data, count
):
    args = [model_path, target, "--format", format, "--crop-pct", crop_pct, "--quantize", quantize]
    if image_size:
        args += ["--image-size", image_size]
    if data:
        args += ["--representative-data", data]
    if count:
        args += ["--representative-count", count]
    print(f"Exporting under the TensorFlow backend (current: {keras.backend.backend()}).")
    run_under_tensorflow("keras_ba.export.formats", args, "The export", WorkflowError)


def main(argv=None):
    """Entry point of the TensorFlow-backend export subprocess."""
    parser = argparse.ArgumentParser(prog="python -m keras_ba.export.formats")
    parser.add_argument("model_path")
    parser.add_argument("target")
    parser.add_argument("--format", required=True, choices=tuple(SUFFIXES))
    parser.add_argument("--image-size", type=int)
    parser.add_argument("--crop-pct", type=float, default=1.0)
    parser.add_argument("--quantize", default="none", choices=QUANTIZE_MODES)
    parser.add_argument("--representative-data")
    parser.add_argument("--representative-count", type=int)
    args = parser.parse_args(argv)
    if keras.backend.backend() != "tensorflow":
        print("error: set KERAS_BACKEND=tensorflow for this module.", file=sys.stderr)
        return 2
    try:
        write(
            args.model_path,
            args.target,
            args.format,
            args.image_size,
            args.crop_pct,
            args.quantize,
            args.representative_data,
            args.representative_count,
        )
    except WorkflowError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
