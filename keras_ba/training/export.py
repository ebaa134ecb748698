"""Export a trained `.keras` model for TF Serving (SavedModel) or ONNX.

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
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile

import keras

from keras_ba.training import run_folder
from keras_ba.training.errors import WorkflowError
from keras_ba.training.options import EXPORT_FORMATS as FORMATS
from keras_ba.training.run_folder import load_trained_model
from keras_ba.training.run_folder import model_info as export_info


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
    output,
    name=None,
    version=None,
    format="saved_model",
    image_size=None,
    crop_pct=None,
):
    """Exports `model_path` to `output` as a TF Serving SavedModel or ONNX.

    Args:
        model_path: a `.keras` file from `keras-ba train` (or any keras_ba
            classifier).
        output: base folder (SavedModel: `<output>/<name>/<version>/`) or,
            for ONNX, the `.onnx` file to write.
        name: model name in the serving layout; default the run's model name.
        version: integer version; default 1 + the highest existing one.
        format: `"saved_model"` or `"onnx"`.
        image_size: input side; default from `run.json` or the model.
        crop_pct: evaluation crop; default from `run.json`, else 1.0.

    Returns:
        The path written.

    Example:
        export_model("runs/digits/model.keras", "serving")  # serving/ba_resnet18/1
        # the command line: keras-ba export runs/digits/model.keras --output serving
    """
    if format not in FORMATS:
        raise WorkflowError(f"`format` must be one of {FORMATS}. Received: `format={format!r}`.")
    if format == "onnx":
        _check_onnx_packages()
    model_path = run_folder.model_path(model_path)
    info = export_info(model_path, image_size, crop_pct)
    if format == "saved_model":
        name = name or info["name"] or "model"
        model_dir = os.path.join(output, name)
        version = version or next_version(model_dir)
        target = os.path.join(model_dir, str(version))
        if os.path.exists(target):
            raise WorkflowError(f"{target!r} already exists: pass another `version`.")
    else:
        target = output
    run_folder.prepare_output_dir(os.path.dirname(os.path.abspath(target)))
    args = [model_path, target, format, info["image_size"], info["crop_pct"]]
    if keras.backend.backend() == "tensorflow":
        _export_here(*args)
    else:
        _export_in_tensorflow_process(*args)
    return target


def _check_onnx_packages():
    missing = [p for p in ("tf2onnx", "onnx") if importlib.util.find_spec(p) is None]
    if missing:
        raise WorkflowError(
            f"ONNX export needs the package(s) {', '.join(missing)}, which are not "
            f"installed: pip install {' '.join(missing)}"
        )


def _export_in_tensorflow_process(model_path, target, format, image_size, crop_pct):
    command = [
        sys.executable,
        "-m",
        "keras_ba.training.export",
        model_path,
        target,
        "--format",
        format,
        "--crop-pct",
        str(crop_pct),
    ]
    if image_size:
        command += ["--image-size", str(image_size)]
    env = dict(os.environ, KERAS_BACKEND="tensorflow")
    print(f"Exporting under the TensorFlow backend (current: {keras.backend.backend()}).")
    result = subprocess.run(command, env=env)
    if result.returncode != 0:
        raise WorkflowError(
            f"The export under TensorFlow failed (exit status {result.returncode}); "
            "see the messages above."
        )


def _export_here(model_path, target, format, image_size, crop_pct):
    model = load_trained_model(model_path)
    image_size = image_size or model.input_shape[1]
    if format == "onnx":
        _write_onnx(model, target, image_size)
        return
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


def serving_function(model, image_size, crop_pct):
    """The `serving_default` function: raw RGB images -> probabilities.

    Example:
        fn = serving_function(model, 32, 1.0); fn(tf.zeros([1, 32, 32, 3]))
    """
    import tensorflow as tf

    from keras_ba.training.transforms import eval_transform

    softmax = model.layers[-1].get_config().get("activation") == "linear"

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32, name="images")])
    def serve(images):
        x = eval_transform(images, image_size, crop_pct)
        outputs = tf.cast(model(x, training=False), tf.float32)
        probabilities = tf.nn.softmax(outputs) if softmax else outputs
        class_ids = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        return {"probabilities": probabilities, "class_ids": class_ids}

    return serve


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


def _write_onnx(model, target, image_size):
    """ONNX of normalization + model: float32 RGB [0, 255] at image_size."""
    from keras_ba.applications.preprocessing import IMAGENET_MEAN, IMAGENET_STD

    # preprocess_input as one per-channel affine map (a Normalization layer
    # loses its mean in tf2onnx 1.17: the ONNX graph references a missing tensor).
    std = [s * 255.0 for s in IMAGENET_STD]
    offset = [-m * 255.0 / s for m, s in zip(IMAGENET_MEAN, std, strict=True)]
    inputs = keras.Input((image_size, image_size, 3), name="images")
    scaled = keras.layers.Rescaling(scale=[1.0 / s for s in std], offset=offset)(inputs)
    wrapper = keras.Model(inputs, model(scaled), name=model.name)
    wrapper(keras.ops.zeros((1, image_size, image_size, 3)))  # export wants a called model
    with run_folder.atomic_path(target, ".onnx") as temporary:
        wrapper.export(temporary, format="onnx", verbose=False)
    print(f"Wrote {target} (input: float32 RGB [0, 255], {image_size}x{image_size}).")


def main(argv=None):
    """Entry point of the TensorFlow-backend export subprocess."""
    parser = argparse.ArgumentParser(prog="python -m keras_ba.training.export")
    parser.add_argument("model_path")
    parser.add_argument("target")
    parser.add_argument("--format", default="saved_model", choices=FORMATS)
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
