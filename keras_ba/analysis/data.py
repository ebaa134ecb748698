"""Images for `keras-ba analyze`, through keras_ba.data.

The one place that touches the data package: `DataSource`,
`load_splits`, the evaluation pipeline `eval_dataset` and its transform
(`keras_ba.data.transforms.eval_transform`), so the analysed images are
preprocessed exactly as `keras-ba evaluate` does. Settings come from the
`run.json` that `keras-ba train` writes next to `model.keras`.

Example:
    images = report_images("runs/digits/model.keras", model)
    result = attention_weights(model, images.dataset)
"""

import dataclasses
import json
import os

import numpy as np

from keras_ba.analysis.errors import AnalysisError

RUN_FILE = "run.json"
MODEL_FILE = "model.keras"


def eval_transform(images, image_size, crop_pct):
    """keras_ba.data's evaluation transform (crop, resize, normalize).

    Example:
    >>> import numpy as np
    >>> tuple(eval_transform(np.zeros((1, 20, 20, 3), "uint8"), 16, 1.0).shape)
    (1, 16, 16, 3)
    """
    from keras_ba.data.transforms import eval_transform as transform

    return transform(images, image_size, crop_pct)


def resolve_model_path(path):
    """A `.keras` file, or `<run folder>/model.keras` for a run folder.

    Example:
    >>> resolve_model_path("no/such/run")
    Traceback (most recent call last):
    ...
    keras_ba.analysis.errors.AnalysisError: No model at 'no/such/run': expected a .keras file or a run folder with model.keras.
    """
    if os.path.isdir(path):
        candidate = os.path.join(path, MODEL_FILE)
        if os.path.isfile(candidate):
            return candidate
    elif os.path.isfile(path):
        return path
    raise AnalysisError(
        f"No model at {path!r}: expected a .keras file or a run folder with {MODEL_FILE}."
    )


def read_run(model_path):
    """The `run.json` next to `model_path` as a dict (empty when absent).

    Example:
    >>> read_run("no/such/model.keras")
    {}
    """
    path = os.path.join(os.path.dirname(os.path.abspath(model_path)), RUN_FILE)
    if not os.path.isfile(path):
        return {}
    try:
        with open(path) as file:
            return json.load(file)
    except (OSError, ValueError) as error:
        raise AnalysisError(f"Cannot read {path!r}: {error}") from None


@dataclasses.dataclass
class ReportImages:
    """What the report analyses.

    Attributes:
        dataset: finite `tf.data.Dataset` of model-ready `(images, one-hot)`
            batches.
        count: number of images in it.
        class_names: tuple of class names.
        image_size: model input side.
        crop_pct: evaluation crop.
        source: the data description (for the report).
        subset: `"validation"` or `"train"`.
        uint8_split: the unbatched `(uint8 image, label)` split, at the
            load size (to pick images for saliency maps).

    Example:
        images.count, images.class_names
    """

    dataset: object
    count: int
    class_names: tuple
    image_size: int
    crop_pct: float
    source: dict
    subset: str
    uint8_split: object


def report_images(
    model_path, model, data=None, subset="validation", limit=None, batch_size=64, image_size=None
):
    """The split of `data` (default: the run's data) prepared for `model`.

    Args:
        model_path: the `.keras` file (its `run.json` gives image size,
            crop, class names and the default data).
        model: the loaded model (input size when there is no `run.json`,
            class count check).
        data: `"digits"`, an image folder or `"tfds:<name>"`, or a dict of
            `DataSource` fields; None: the data the model was trained on.
        subset: `"validation"` or `"train"`.
        limit: analyse at most this many images.
        batch_size: batch size of the pipeline.
        image_size: model input side; default `run.json`'s, else the model's.

    Returns:
        A `ReportImages`.

    Raises:
        AnalysisError: no data given and no `run.json`, data the training
            package cannot load, an empty split, a class count that differs
            from the model's.

    Example:
        images = report_images("runs/digits/model.keras", model, limit=200)
    """
    from keras_ba.data import pipeline
    from keras_ba.data.pipeline import DataSource, load_splits
    from keras_ba.errors import WorkflowError

    if subset not in ("validation", "train"):
        raise AnalysisError(f"subset must be 'validation' or 'train', received {subset!r}.")
    if limit is not None and limit < 1:
        raise AnalysisError(f"limit must be a positive integer, received {limit}.")
    run = read_run(model_path)
    if data is None:
        if "data" not in run:
            raise AnalysisError(
                f"No {RUN_FILE} next to {model_path!r}: pass the data to analyse (--data)."
            )
        source = DataSource(**run["data"])
    elif isinstance(data, dict):
        source = DataSource(**data)
    else:
        source = DataSource(data)
    if limit is not None:
        source = dataclasses.replace(source, limit=limit)
    size = int(image_size or run.get("image_size") or model.input_shape[1] or 0)
    if size < 1:
        raise AnalysisError(
            f"The model {model.name!r} accepts any input size and there is no {RUN_FILE}: "
            "pass the image size (--image-size)."
        )
    crop = float(run.get("eval_crop_pct") or 1.0)
    try:
        splits = load_splits(source, int(round(size / crop)))
    except WorkflowError as error:
        raise AnalysisError(str(error)) from None
    split = splits.validation if subset == "validation" else splits.train
    count = splits.validation_size if subset == "validation" else splits.train_size
    if count == 0:
        raise AnalysisError(f"The {subset} split of {source.data!r} has no images.")
    names = tuple(run.get("class_names") or splits.class_names)
    outputs = model.output_shape[-1]
    if outputs != len(splits.class_names):
        raise AnalysisError(
            f"The model predicts {outputs} classes but the data {source.data!r} has "
            f"{len(splits.class_names)}."
        )
    dataset = pipeline.eval_dataset(split, outputs, size, crop, batch_size, count)
    return ReportImages(
        dataset=dataset,
        count=count,
        class_names=names,
        image_size=size,
        crop_pct=crop,
        source=dataclasses.asdict(source),
        subset=subset,
        uint8_split=split,
    )


def pick_images(images, count, scan=None):
    """`count` images for saliency maps, one per class first, in data order.

    Args:
        images: a `ReportImages`.
        count: how many images.
        scan: look at most at this many images (default `max(200, 20 * count)`).

    Returns:
        `(model_inputs float32 (K, S, S, 3), display uint8 (K, S, S, 3),
        labels int (K,))`.

    Example:
        inputs, display, labels = pick_images(images, 8)
    """
    scan = scan or max(200, 20 * count)
    chosen, seen, rest = [], set(), []
    for index, (image, label) in enumerate(images.uint8_split.as_numpy_iterator()):
        if index >= scan or len(chosen) >= count:
            break
        if int(label) not in seen:
            seen.add(int(label))
            chosen.append((image, int(label)))
        elif len(rest) < count:
            rest.append((image, int(label)))
    chosen = (chosen + rest)[:count]
    if not chosen:
        raise AnalysisError("The data has no images: nothing to explain.")
    raw = np.stack([image for image, _ in chosen])
    labels = np.array([label for _, label in chosen], dtype="int64")
    inputs = np.asarray(eval_transform(raw, images.image_size, images.crop_pct))
    display = _center_crop(raw, images.image_size)
    return inputs.astype("float32"), display.astype("uint8"), labels


def _center_crop(images, size):
    """Central `size` x `size` crop of square images already at the load size."""
    height, width = images.shape[1:3]
    top, left = max(0, (height - size) // 2), max(0, (width - size) // 2)
    return images[:, top : top + size, left : left + size]
