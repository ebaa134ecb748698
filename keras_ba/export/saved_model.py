"""Export a trained `.keras` model for TF Serving (SavedModel), ONNX or LiteRT.

ONNX and LiteRT (`--format onnx|litert`) are written by `formats`, from the
same serving function as the SavedModel (see `onnx_export`, `litert_export`).

SavedModel layout (what TF Serving polls): `<base>/<model_name>/<version>/`
with `saved_model.pb`, `variables/` and `assets.extra/labels.txt`. It is
written to a temporary folder and renamed, so TF Serving never sees a
half-written version.

Signature `serving_default`:

- input `images`: float32 `[batch, height, width, 3]`, RGB in [0, 255], any
  size (cast uint8 images to float32); inside, the same evaluation
  preprocessing as `keras-ba evaluate` (central square crop, resize to
  `image_size / crop_pct`, central crop, ImageNet mean/std);
- outputs `probabilities` float32 `[batch, classes]` and `class_ids` int32
  `[batch]`.

The export always runs under the TensorFlow backend (in a subprocess when
the current backend is JAX or PyTorch), so the graph is plain TensorFlow
ops that every TF Serving build runs.

Example:
>>> next_version("no/such/folder")
1
"""

import argparse
import os
import shutil
import sys
import tempfile

import keras

from keras_ba.errors import WorkflowError
from keras_ba.export.serving import serving_function
from keras_ba.options import EXPORT_FORMATS as FORMATS
from keras_ba.runs import folder as run_folder
from keras_ba.runs.folder import load_trained_model
from keras_ba.runs.folder import model_info as export_info
from keras_ba.utils import locking
from keras_ba.utils.tf_process import run_under_tensorflow


def next_version(model_dir):
    """1 + the highest integer version folder in `model_dir` (1 if none).

    Example:
    >>> import tempfile, os
    >>> folder = tempfile.mkdtemp(); os.mkdir(os.path.join(folder, "3"))
    >>> next_version(folder)
    4
    """
    if not os.path.isdir(model_dir):
        return 1
    versions = [int(n) for n in os.listdir(model_dir) if n.isdigit()]
    return max(versions, default=0) + 1


def export_model(
    model_path,
    output=None,
    name=None,
    version=None,
    format="saved_model",
    image_size=None,
    crop_pct=None,
    quantize="none",
    representative_data=None,
    representative_count=None,
):
    """Exports `model_path` as a TF Serving SavedModel, ONNX or LiteRT.

    Args:
        model_path: a `.keras` file from `keras-ba train` (or any keras_ba
            classifier).
        output: SavedModel: base folder (`<output>/<name>/<version>/`,
            default `serving`); ONNX / LiteRT: a new or empty folder, or the
            `.onnx` / `.tflite` file (see `formats.export_file`).
        name: model name in the serving layout; default the run's model name.
        version: integer version; default 1 + the highest existing one.
        format: `"saved_model"`, `"onnx"` or `"litert"`.
        image_size: input side; default from `run.json` or the model.
        crop_pct: evaluation crop; default from `run.json`, else 1.0.
        quantize: LiteRT: `"none"`, `"dynamic"` or `"int8"`.
        representative_data: LiteRT int8 calibration images (`"digits"`,
            `"tfds:<name>"`, a folder); default the run's training data.
        representative_count: how many calibration images (default 100).

    Returns:
        The path written.

    Example:
        export_model("runs/digits/model.keras", "serving")  # serving/ba_resnet18/1
        # the command line: keras-ba export runs/digits/model.keras --output serving
    """
    if format not in FORMATS:
        raise WorkflowError(f"--format must be one of {FORMATS}, received {format!r}.")
    if format != "saved_model":
        from keras_ba.export import formats

        return formats.export_file(
            model_path,
            output,
            format,
            name=name,
            image_size=image_size,
            crop_pct=crop_pct,
            quantize=quantize,
            representative_data=representative_data,
            representative_count=representative_count,
        )
    if quantize not in (None, "none") or representative_data or representative_count:
        raise WorkflowError("--quantize and --representative-* apply to --format litert only.")
    output = output or "serving"
    model_path = run_folder.model_path(model_path)
    info = export_info(model_path, image_size, crop_pct)
    name = name or info["name"] or "model"
    model_dir = os.path.join(output, name)
    run_folder.prepare_output_dir(model_dir)
    # One export at a time per model folder: two would pick the same version.
    lock = locking.FolderLock(
        model_dir, "The export folder", "wait until it ends, or pass another --output"
    )
    try:
        lock.acquire()
    except locking.LockedError as error:
        raise WorkflowError(str(error)) from None
    try:
        version = version or next_version(model_dir)
        target = os.path.join(model_dir, str(version))
        if os.path.exists(target):
            raise WorkflowError(f"{target!r} already exists: pass another --version.")
        args = [model_path, target, format, info["image_size"], info["crop_pct"]]
        if keras.backend.backend() == "tensorflow":
            _export_here(*args)
        else:
            _export_in_tensorflow_process(*args)
    finally:
        lock.release()
    return target


def _export_in_tensorflow_process(model_path, target, format, image_size, crop_pct):
    args = [model_path, target, "--format", format, "--crop-pct", crop_pct]
    if image_size:
        args += ["--image-size", image_size]
    print(f"Exporting under the TensorFlow backend (current: {keras.backend.backend()}).")
    run_under_tensorflow("keras_ba.export.saved_model", args, "The export", WorkflowError)


def _export_here(model_path, target, format, image_size, crop_pct):
    model = load_trained_model(model_path)
    image_size = image_size or model.input_shape[1]
    info = export_info(model_path)
    folder = tempfile.mkdtemp(prefix=".tmp-", dir=os.path.dirname(target))
    try:
        write_saved_model(model, folder, image_size, crop_pct, info["class_names"])
        os.chmod(folder, run_folder.default_mode(is_folder=True))  # mkdtemp made it 0700
        os.replace(folder, target)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(
        f"Wrote the SavedModel {target} (signature serving_default: float32 "
        f"RGB [0, 255] images of any size -> probabilities)."
    )


def write_saved_model(model, folder, image_size, crop_pct, class_names=None):
    """Writes `model` with the `serving_default` signature to `folder`.

    Needs the TensorFlow backend.

    Example:
        write_saved_model(model, "serving/ba_resnet18/1", 32, 1.0, ["cat", "dog"])
    """
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", serving_function(model, image_size, crop_pct))
    archive.write_out(folder, verbose=False)
    if class_names:
        os.makedirs(os.path.join(folder, "assets.extra"), exist_ok=True)
        labels = os.path.join(folder, "assets.extra", "labels.txt")
        run_folder.write_text("\n".join(class_names) + "\n", labels)


def main(argv=None):
    """Entry point of the TensorFlow-backend export subprocess."""
    parser = argparse.ArgumentParser(prog="python -m keras_ba.export.saved_model")
    parser.add_argument("model_path")
    parser.add_argument("target")
    parser.add_argument("--format", default="saved_model", choices=("saved_model",))
    parser.add_argument("--image-size", type=int)
    parser.add_argument("--crop-pct", type=float, default=1.0)
    args = parser.parse_args(argv)
    if keras.backend.backend() != "tensorflow":
        print("Set KERAS_BACKEND=tensorflow for this module.", file=sys.stderr)
        return 2
    try:
        _export_here(args.model_path, args.target, args.format, args.image_size, args.crop_pct)
    except WorkflowError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
