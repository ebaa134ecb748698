"""Data sources: the images and labels a run trains on, and image files to predict.

Three sources, chosen by one string:

- `"digits"`: scikit-learn's 8x8 handwritten digits (1,797 images, 10
  classes, shipped inside scikit-learn: no download), upscaled to RGB, with
  a fixed stratified train/validation split;
- a folder path: `<folder>/<class>/<image>` (or `<folder>/train/<class>/...`
  plus `<folder>/val/<class>/...`), read with
  `keras.utils.image_dataset_from_directory`;
- `"tfds:<name>"`: a TensorFlow Datasets dataset already prepared on this
  machine (never downloaded).

`load_splits` returns unbatched `(uint8 image, int label)` datasets at the
load size (`keras_ba.data.pipeline` batches and augments them).

Example:
>>> splits = load_splits(DataSource("digits"), load_size=16)
>>> splits.train_size, splits.validation_size, splits.class_names[:3]
(1437, 360, ('0', '1', '2'))
"""

import dataclasses
import os
import re

import numpy as np

from keras_ba.data.transforms import square_resize, tf
from keras_ba.errors import WorkflowError
from keras_ba.extras import require
from keras_ba.options import DIGITS, TFDS_PREFIX

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
IMAGE_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"BM", b"GIF87a", b"GIF89a")
AUTO_CACHE_BYTES = 2 * 1024**3


@dataclasses.dataclass(frozen=True)
class DataSource:
    """Where images come from and how they are split.

    Attributes:
        data: `"digits"`, a folder path, or `"tfds:<name>"`.
        validation_split: fraction held out for validation (digits and
            folders without a `train/` + `val/` layout).
        split_seed: seed of that split; keep the default so that
            `evaluate` finds the same validation images as `train`.
        limit: keep at most this many images per split (quick runs).
        tfds_data_dir: TFDS data folder (default: TFDS' own default).

    Example:
    >>> DataSource("tfds:cifar10").kind
    'tfds'
    """

    data: str = DIGITS
    validation_split: float = 0.2
    split_seed: int = 1337
    limit: int | None = None
    tfds_data_dir: str | None = None

    @property
    def kind(self):
        if self.data == DIGITS:
            return "digits"
        if self.data.startswith(TFDS_PREFIX):
            return "tfds"
        return "folder"


@dataclasses.dataclass(frozen=True)
class Splits:
    """Unbatched `(uint8 [S, S, 3] image, int32 label)` datasets and facts.

    Example:
    >>> splits = load_splits(DataSource("digits", limit=20), load_size=8)
    >>> splits.train_size
    20
    """

    train: tf.data.Dataset
    validation: tf.data.Dataset
    class_names: tuple
    train_size: int
    validation_size: int


def load_splits(source, load_size):
    """Loads the train and validation images of `source` at `load_size`.

    Args:
        source: a `DataSource`.
        load_size: side of the square images (images are center-cropped to
            a square, then resized with bilinear interpolation).

    Returns:
        A `Splits`.

    Raises:
        WorkflowError: missing or empty folder, fewer than two classes, a
            class or a split without images, a file that is not an image,
            a TFDS dataset not prepared locally, an invalid split.

    Example:
    >>> load_splits(DataSource("digits"), 32).train.element_spec[0].shape
    TensorShape([32, 32, 3])
    """
    if source.limit is not None and source.limit < 1:
        raise WorkflowError(
            f"`limit` must be a positive integer. Received: `limit={source.limit}`."
        )
    if source.kind == "digits":
        splits = _digits_splits(load_size, source.validation_split, source.split_seed)
    elif source.kind == "tfds":
        splits = _tfds_splits(source.data[len(TFDS_PREFIX) :], load_size, source.tfds_data_dir)
    else:
        splits = _folder_splits(source.data, load_size, source.validation_split, source.split_seed)
    return _limit(splits, source.limit)


def _limit(splits, limit):
    if limit is None:
        return splits
    return dataclasses.replace(
        splits,
        train=splits.train.take(limit),
        validation=splits.validation.take(limit),
        train_size=min(limit, splits.train_size),
        validation_size=min(limit, splits.validation_size),
    )


def _check_split(validation_split):
    if not 0 < validation_split < 1:
        raise WorkflowError(
            "`validation_split` must be in (0, 1) (a folder with train/ and val/ sub-folders "
            f"needs no split). Received: `validation_split={validation_split}`."
        )


def check_classes(class_names, where):
    """Classification needs at least two classes.

    Example:
    >>> check_classes(["cat"], "'photos'")
    Traceback (most recent call last):
    ...
    keras_ba.errors.WorkflowError: 'photos' has 1 class (['cat']): a classifier needs ...
    """
    if len(class_names) < 2:
        count = f"{len(class_names)} class" + ("" if len(class_names) == 1 else "es")
        raise WorkflowError(
            f"{where} has {count} ({list(class_names)}): a classifier needs at least two "
            "classes, one sub-folder each."
        )


# === Embedded digits ===


def _digits_splits(load_size, validation_split, split_seed):
    sklearn_datasets = require("sklearn.datasets", "train", "The embedded digits data set")
    from sklearn.model_selection import train_test_split

    _check_split(validation_split)
    load_digits = sklearn_datasets.load_digits
    digits = load_digits()
    x_train, x_val, y_train, y_val = train_test_split(
        digits.images,
        digits.target,
        test_size=validation_split,
        stratify=digits.target,
        random_state=split_seed,
    )
    names = tuple(str(name) for name in digits.target_names)

    def dataset(x, y):
        images = _upscale_digits(x, load_size)
        return tf.data.Dataset.from_tensor_slices((images, y.astype("int32")))

    return Splits(dataset(x_train, y_train), dataset(x_val, y_val), names, len(y_train), len(y_val))


def _upscale_digits(images, size):
    """8x8 values in [0, 16] -> uint8 RGB `size` x `size` (bilinear)."""
    pixels = tf.convert_to_tensor(images[..., None] * (255.0 / 16.0), tf.float32)
    pixels = tf.image.grayscale_to_rgb(tf.image.resize(pixels, (size, size)))
    return np.asarray(tf.round(tf.clip_by_value(pixels, 0, 255)), dtype="uint8")


# === Image folders ===


def scan_image_folder(path, min_classes=2):
    """Checks a `<path>/<class>/<image>` folder; returns its class names.

    Every class sub-folder must hold at least one image, and every file with
    an image extension must start like a JPEG, PNG, BMP or GIF (a cheap
    header check: a damaged file with a valid header fails later, during
    decoding).

    Args:
        path: the folder.
        min_classes: the fewest class folders accepted.

    Returns:
        The sorted class names.

    Raises:
        WorkflowError: naming the missing folder, fewer than two class
            folders, the empty class folders or the files that are not
            images.

    Example:
    >>> scan_image_folder("does/not/exist")
    Traceback (most recent call last):
    ...
    keras_ba.errors.WorkflowError: The data folder 'does/not/exist' does not exist ...
    """
    if not os.path.exists(path):
        raise WorkflowError(
            f"The data folder {path!r} does not exist (expected <folder>/<class>/<image>.jpg, "
            f"'{DIGITS}' or '{TFDS_PREFIX}<name>')."
        )
    if not os.path.isdir(path):
        raise WorkflowError(f"The data path {path!r} is a file, not a folder of class folders.")
    classes = sorted(e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise WorkflowError(
            f"The data folder {path!r} has no class sub-folders: expected "
            f"{os.path.join(path, '<class>', '<image>.jpg')}."
        )
    if len(classes) < min_classes:
        check_classes(classes, f"The data folder {path!r}")
    empty, bad = [], []
    for name in classes:
        files = _image_files(os.path.join(path, name))
        if not files:
            empty.append(name)
        bad.extend(f for f in files if not _looks_like_image(f))
    if empty:
        raise WorkflowError(
            f"No images ({', '.join(IMAGE_EXTENSIONS)}) in the class folders {empty} of {path!r}."
        )
    if bad:
        raise WorkflowError(
            f"{len(bad)} files in {path!r} are not readable images (corrupt or wrong "
            f"extension), e.g. {bad[:5]}. Remove or replace them."
        )
    return classes


def _image_files(folder):
    files = []
    for root, _, names in os.walk(folder):
        files.extend(os.path.join(root, n) for n in names if n.lower().endswith(IMAGE_EXTENSIONS))
    return sorted(files)


def _looks_like_image(path):
    try:
        with open(path, "rb") as file:
            head = file.read(8)
    except OSError:
        return False
    return any(head.startswith(signature) for signature in IMAGE_SIGNATURES)


def find_unreadable_images(path, max_files=None):
    """Decodes every image under `path`; returns the files that fail.

    The header check of `scan_image_folder` misses files whose data is
    damaged after a valid header; this finds them (slow for big folders:
    it decodes everything).

    Args:
        path: a folder, searched recursively.
        max_files: give up (return None) above this many files.

    Returns:
        The unreadable files (sorted), or None when there are too many files.

    Example:
    >>> find_unreadable_images("no/such/folder")
    []
    """
    files = _image_files(path) if os.path.isdir(path) else []
    if max_files is not None and len(files) > max_files:
        return None
    bad = []
    for file in files:
        try:
            read_image(file)
        except WorkflowError:
            bad.append(file)
    return bad


def _train_val_layout(path):
    """`(train_dir, val_dir)` for a `train/` + `val/` layout, else None."""
    train_dir = os.path.join(path, "train")
    for name in ("val", "validation"):
        val_dir = os.path.join(path, name)
        if os.path.isdir(train_dir) and os.path.isdir(val_dir):
            return train_dir, val_dir
    return None


def _folder_splits(path, load_size, validation_split, split_seed):
    import keras

    options = dict(
        labels="inferred",
        label_mode="int",
        color_mode="rgb",
        batch_size=None,
        image_size=(load_size, load_size),
        interpolation="bilinear",
        crop_to_aspect_ratio=True,
        seed=split_seed,
        verbose=False,
    )
    layout = _train_val_layout(path) if os.path.isdir(path) else None
    if layout:
        classes = scan_image_folder(layout[0])
        val_classes = scan_image_folder(layout[1], min_classes=1)
        if val_classes != classes:
            raise WorkflowError(
                f"{layout[0]!r} and {layout[1]!r} hold different class folders: only in the "
                f"first {sorted(set(classes) - set(val_classes))}, only in the second "
                f"{sorted(set(val_classes) - set(classes))}."
            )
        options["class_names"] = classes
        train = keras.utils.image_dataset_from_directory(layout[0], shuffle=True, **options)
        val = keras.utils.image_dataset_from_directory(layout[1], shuffle=False, **options)
    else:
        classes = scan_image_folder(path)
        _check_split(validation_split)
        # Keras' own split: int(split * images) for validation, the rest for training.
        count = sum(len(_image_files(os.path.join(path, name))) for name in classes)
        _check_split_sizes(
            path, count - int(validation_split * count), int(validation_split * count)
        )
        options["class_names"] = classes
        train, val = keras.utils.image_dataset_from_directory(
            path, shuffle=True, validation_split=validation_split, subset="both", **options
        )
    sizes = [int(ds.cardinality()) for ds in (train, val)]
    _check_split_sizes(path, *sizes)
    train, val = (ds.map(_to_uint8, num_parallel_calls=tf.data.AUTOTUNE) for ds in (train, val))
    return Splits(train, val, tuple(classes), *sizes)


def _check_split_sizes(path, train_size, validation_size):
    if min(train_size, validation_size) < 1:
        raise WorkflowError(
            f"The split of {path!r} leaves {train_size} training and {validation_size} "
            "validation images: add images or change `validation_split`."
        )


def _to_uint8(image, label):
    image = tf.cast(tf.round(tf.clip_by_value(image, 0, 255)), tf.uint8)
    return image, tf.cast(label, tf.int32)


# === TensorFlow Datasets ===


def _tfds_splits(name, load_size, data_dir):
    builder = _tfds_builder(name, data_dir)
    available = builder.info.splits
    val_split = next((s for s in ("validation", "test") if s in available), None)
    if "train" not in available or val_split is None:
        raise WorkflowError(
            f"TFDS dataset {name!r} needs a 'train' and a 'validation' or 'test' split; "
            f"it has {sorted(available)}."
        )
    features = builder.info.features
    label = features["label"] if "label" in features.keys() else None
    if label is None or not hasattr(label, "names"):
        raise WorkflowError(f"TFDS dataset {name!r} has no 'label' class feature.")
    check_classes(label.names, f"TFDS dataset {name!r}")

    def dataset(split):
        ds = builder.as_dataset(split=split, as_supervised=True, shuffle_files=False)
        return ds.map(lambda x, y: _square(x, y, load_size), num_parallel_calls=tf.data.AUTOTUNE)

    sizes = (available["train"].num_examples, available[val_split].num_examples)
    if min(sizes) < 1:
        raise WorkflowError(
            f"TFDS dataset {name!r} has {sizes[0]} training and {sizes[1]} {val_split} images."
        )
    return Splits(dataset("train"), dataset(val_split), tuple(label.names), *sizes)


def _tfds_builder(name, data_dir):
    tfds = require("tensorflow_datasets", "tfds", "Reading TFDS datasets")

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as error:  # DatasetNotFoundError and friends
        first_line = str(error).strip().splitlines()[0]
        raise WorkflowError(f"Unknown TFDS dataset {name!r}: {first_line}") from None
    if not builder.is_prepared():
        raise WorkflowError(
            f"TFDS dataset {name!r} is not prepared in {builder.data_dir!r} and keras-ba "
            "never downloads. On a machine with internet run `tfds build "
            f"{name} --data_dir DIR`, copy DIR here and pass --tfds-data-dir DIR."
        )
    return builder


def _square(image, label, size):
    if image.shape.rank == 3 and image.shape[-1] == 1:
        image = tf.image.grayscale_to_rgb(image)
    return _to_uint8(square_resize(image[None], size)[0], label)


# === Files for prediction ===


def find_image_files(paths):
    """Image files named by `paths`, and the paths that name nothing.

    Files are kept whatever their extension (reading them tells whether
    they are images); folders are searched recursively for image
    extensions.

    Returns:
        `(files, missing)`: lists of paths, in the order given.

    Example:
    >>> find_image_files(["missing.png"])
    ([], ['missing.png'])
    """
    files, missing = [], []
    for path in map(os.fspath, paths):
        if os.path.isdir(path):
            files.extend(_image_files(path))
        elif os.path.isfile(path):
            files.append(path)
        else:
            missing.append(path)
    return files, missing


def list_image_files(paths):
    """Image files named by `paths` (files, or folders searched recursively).

    Raises:
        WorkflowError: a path that names nothing, or no image at all.

    Example:
    >>> list_image_files(["missing.png"])
    Traceback (most recent call last):
    ...
    keras_ba.errors.WorkflowError: No such image file or folder: 'missing.png'.
    """
    files, missing = find_image_files(paths)
    if missing:
        raise WorkflowError(f"No such image file or folder: {', '.join(map(repr, missing))}.")
    if not files:
        raise WorkflowError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) found in {list(paths)}.")
    return files


def read_image(path):
    """Decodes one image file to a uint8 RGB array `[H, W, 3]`.

    Example:
    >>> read_image("missing.png")
    Traceback (most recent call last):
    ...
    keras_ba.errors.WorkflowError: Cannot read the image 'missing.png': ...
    """
    try:
        data = tf.io.read_file(path)
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
    except (tf.errors.OpError, ValueError) as error:
        raise WorkflowError(f"Cannot read the image {path!r}: {clean_tf_message(error)}") from None
    return image.numpy()


def clean_tf_message(error):
    """The cause in a TensorFlow error, without graph, op and iterator decorations.

    Example:
    >>> clean_tf_message(ValueError("Graph execution error:\\n\\nDetected at node d\\n"
    ...     "Error in user-defined function passed to Map transformation with iterator: "
    ...     "Iterator::Root::Map: Invalid PNG.\\n\\t [[{{node d}}]] [Op:F]"))
    'Invalid PNG.'
    """
    message = getattr(error, "message", None) or str(error)
    skip = ("Graph execution error", "Detected at node", "<stack traces", "[[")
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(skip)] or lines[:1]
    line = re.sub(r"\{\{[^}]*\}\}|\[Op:[^]]*\]|\[\[.*?\]\]", "", useful[-1] if useful else "")
    line = re.sub(r"^.*transformation with iterator: \S+: ", "", line.strip())
    return re.sub(r"\s+name:\s*$", "", line).strip()
