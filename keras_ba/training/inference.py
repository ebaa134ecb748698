"""`evaluate` and `predict`: the functions behind `keras-ba evaluate | predict`.

Both read the `run.json` beside the model (image size, evaluation crop,
class names, the training data) and feed the model the pixels of
`transforms.eval_transform`, the same as the exported SavedModel.

Example:
    from keras_ba.training import evaluate, predict
    evaluate("runs/digits/model.keras")["accuracy"]
    predict("runs/digits/model.keras", ["digit.png"])[0]["top"][0]
"""

import dataclasses
import os

import keras

from keras_ba.data import pipeline as data
from keras_ba.errors import WorkflowError
from keras_ba.options import SUBSETS, resolve_verbosity
from keras_ba.runs import folder as run_folder
from keras_ba.training import recipes


def _source_of_run(model_file, source, limit):
    if source is None:
        config = run_folder.read_run_config(os.path.dirname(model_file))
        if config is None or not config.data:
            raise WorkflowError(
                f"No run.json beside {model_file!r} to say what it was trained on: pass the "
                "data to evaluate on (`source`)."
            )
        source = data.DataSource(**config.data)
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
        model_path: a `.keras` file or a run folder.
        source: a `DataSource`; default the one the model was trained on
            (from `run.json`), so the validation split is the same.
        subset: `"validation"` or `"train"`.
        batch_size: evaluation batch size.
        limit: evaluate at most this many images.
        image_size: model input side; default `run.json` or the model's.
        crop_pct: evaluation crop; default `run.json`, else 1.0.
        cache: as in `train`.
        verbose: Keras verbosity (`"auto"`: a progress bar on a terminal).

    Returns:
        `dict` with `accuracy`, `loss` (plain cross-entropy), `top5_accuracy`
        (more than 5 classes), `images`, `classes`, `chance`, `subset`.

    Raises:
        WorkflowError: no such model file, no data to evaluate on, a model
            whose classes do not match the data.

    Example:
        evaluate("runs/digits/model.keras")["accuracy"]
    """
    if subset not in SUBSETS:
        raise WorkflowError(f"`subset` must be one of {SUBSETS}. Received: `subset={subset!r}`.")
    model_file = run_folder.model_path(model_path)
    source = _source_of_run(model_file, source, limit)
    model = run_folder.load_trained_model(model_file)
    info = run_folder.model_info(model_file, image_size, crop_pct)
    size = info["image_size"] or model.input_shape[1]
    splits = data.load_splits(source, int(round(size / info["crop_pct"])))
    num_classes = _check_classes(model, splits)
    images = splits.validation if subset == "validation" else splits.train
    count = splits.validation_size if subset == "validation" else splits.train_size
    ds = data.eval_dataset(images, num_classes, size, info["crop_pct"], batch_size, count, cache)
    model.compile(
        loss=keras.losses.CategoricalCrossentropy(), metrics=recipes.make_metrics(num_classes)
    )
    results = model.evaluate(ds, return_dict=True, verbose=resolve_verbosity(verbose))
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
    """Classifies image files with a saved model, one result per file.

    A file that cannot be read (missing, not an image, damaged) gets an
    `error` instead of classes; the others are still classified.

    Args:
        model_path: a `.keras` file or a run folder.
        inputs: image files and/or folders (searched recursively).
        top_k: classes to return per image.
        batch_size: images per forward pass.
        image_size: model input side; default `run.json` or the model's.
        crop_pct: evaluation crop; default `run.json`, else 1.0.

    Returns:
        One dict per image file, in order: `dict(path=..., top=[(class_name,
        probability), ...])`, or `dict(path=..., error="...")`.

    Raises:
        WorkflowError: no such model file, `top_k` < 1, or not one image
            among `inputs`.

    Example:
        predict("runs/digits/model.keras", ["digit.png"])[0]["top"][0]
    """
    import numpy as np

    from keras_ba.data.transforms import eval_transform

    if not isinstance(top_k, int) or top_k < 1:
        raise WorkflowError(f"`top_k` must be a positive integer. Received: `top_k={top_k!r}`.")
    files, missing = data.find_image_files(inputs)
    if not files:
        data.list_image_files(inputs)  # raises, naming what is missing
    model_file = run_folder.model_path(model_path)
    model = run_folder.load_trained_model(model_file)
    info = run_folder.model_info(model_file, image_size, crop_pct)
    size = info["image_size"] or model.input_shape[1]
    names = info["class_names"] or [str(i) for i in range(model.output_shape[-1])]
    results = {path: {"path": path, "error": "No such image file or folder."} for path in missing}
    readable = []
    for path in files:
        try:
            image = data.read_image(path)
        except WorkflowError as error:
            results[path] = {"path": path, "error": str(error)}
            continue
        readable.append((path, eval_transform(image[None], size, info["crop_pct"]).numpy()))
    for begin in range(0, len(readable), batch_size):
        chunk = readable[begin : begin + batch_size]
        batch = np.concatenate([pixels for _, pixels in chunk])
        probabilities = np.asarray(model.predict(batch, verbose=0), dtype="float64")
        for (path, _), row in zip(chunk, probabilities, strict=True):
            best = np.argsort(-row)[:top_k]
            results[path] = {"path": path, "top": [(names[i], float(row[i])) for i in best]}
    order = []  # the order of `inputs`, a folder's files where the folder was named
    for path in inputs:
        found, absent = data.find_image_files([path])
        order.extend(found + absent)
    return [results[path] for path in dict.fromkeys(order)]
