"""tf.data pipelines for training and evaluation, from `sources`' splits.

`train_dataset` and `eval_dataset` batch, augment, normalize
(`preprocess_input`'s ImageNet mean/std) and prefetch the unbatched
`(uint8 image, int label)` splits of `keras_ba.data.sources.load_splits`.
Every pipeline is plain `tf.data`, so it feeds the TensorFlow, JAX and
PyTorch backends. The sources' names are re-exported here (their home
before 0.3).

Example:
>>> splits = load_splits(DataSource("digits"), load_size=16)
>>> steps_per_epoch(splits.train_size, 64)  # 1,437 images: 22 full batches
22
"""

from keras_ba.data import augment
from keras_ba.data.sources import (  # noqa: F401 (re-exported)
    AUTO_CACHE_BYTES,
    IMAGE_EXTENSIONS,
    IMAGE_SIGNATURES,
    DataSource,
    Splits,
    check_classes,
    clean_tf_message,
    find_image_files,
    find_unreadable_images,
    list_image_files,
    load_splits,
    read_image,
    scan_image_folder,
)
from keras_ba.data.transforms import eval_transform, tf
from keras_ba.errors import WorkflowError
from keras_ba.options import CACHE_MODES

# === Pipelines ===


def _cached(ds, size, load_size, cache):
    if cache not in CACHE_MODES:
        raise WorkflowError(f"`cache` must be one of {CACHE_MODES}. Received: `cache={cache!r}`.")
    fits = size * load_size * load_size * 3 <= AUTO_CACHE_BYTES
    if cache == "memory" or (cache == "auto" and fits):
        return ds.cache()
    return ds


def _deterministic(ds):
    options = tf.data.Options()
    options.deterministic = True
    return ds.with_options(options)


def steps_per_epoch(train_size, batch_size):
    """Full batches per epoch (the last partial batch is dropped).

    Example:
    >>> steps_per_epoch(1437, 128)
    11
    """
    steps = train_size // batch_size
    if steps < 1:
        raise WorkflowError(
            f"The batch size {batch_size} is larger than the {train_size} training images: "
            "pass a smaller `batch_size`."
        )
    return steps


def train_dataset(splits, recipe, seed, cache="auto", num_shards=1, shard_index=0):
    """The endless, shuffled, augmented training pipeline.

    Shuffle (seeded, reshuffled every pass; the same stream from every
    iterator) -> repeat -> batch (full batches only) -> one-hot labels ->
    the recipe's augmentation stages, each its own sequential `map`
    (deterministic for a given seed) -> `(images, labels)` -> prefetch. Run
    `steps_per_epoch(...)` steps per epoch.

    With `num_shards` N > 1 (one shard per training process), the shard
    keeps every N-th image of the same shuffled stream, in batches of
    `batch_size / N`: the N shards' batches of a step hold exactly the
    images of the one-process batch. Augmentation is seeded per shard.

    Args:
        splits: `Splits` from `load_splits`, loaded at `recipe.load_size()`.
        recipe: a `Recipe` (batch size, image size, augmentation).
        seed: integer seed of the shuffle and the augmentation.
        cache: `"auto"` (in memory when the images take at most 2 GiB),
            `"memory"` or `"none"`.
        num_shards: number of training processes (divides the batch size).
        shard_index: this process's shard, in `[0, num_shards)`.

    Returns:
        A `tf.data.Dataset` of `(float32 [B, S, S, 3], float32 [B, C])`,
        `B = batch_size / num_shards`.

    Example:
    >>> from keras_ba.training.recipes import get_recipe
    >>> splits = load_splits(DataSource("digits", limit=64), load_size=16)
    >>> ds = train_dataset(splits, get_recipe("small", image_size=16, batch_size=8), seed=0)
    >>> [tuple(t.shape) for t in next(iter(ds))]
    [(8, 16, 16, 3), (8, 10)]
    """
    num_classes = len(splits.class_names)
    images = _cached(splits.train, splits.train_size, recipe.load_size(), cache)

    def stream(_):
        shuffled = images.shuffle(
            min(splits.train_size, 10_000), seed=seed, reshuffle_each_iteration=True
        )
        return shuffled.repeat()

    # The shuffle is created per iterator (inside flat_map): every iterator
    # yields the same stream, however many iterators a trainer made before
    # (Keras' fit makes a few), so every trainer and process sees the same
    # batches for a seed.
    ds = tf.data.Dataset.from_tensors(0).flat_map(stream)
    if num_shards > 1:
        ds = ds.shard(num_shards, shard_index)
        seed = seed + 1000 * shard_index  # multiprocess.AUGMENT_SEED_STRIDE
    ds = ds.batch(recipe.batch_size // num_shards, drop_remainder=True)
    ds = ds.map(
        lambda x, y: {"images": tf.cast(x, tf.float32), "labels": tf.one_hot(y, num_classes)},
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    for _, stage in augment.train_augmenters(recipe, seed):
        ds = ds.map(stage)
    ds = ds.map(lambda batch: (batch["images"], batch["labels"]))
    return _deterministic(ds.prefetch(tf.data.AUTOTUNE))


def eval_dataset(
    images,
    num_classes,
    image_size,
    crop_pct,
    batch_size,
    size=0,
    cache="auto",
    drop_remainder=False,
    num_shards=1,
    shard_index=0,
):
    """The evaluation pipeline: center crop, normalize, one-hot, in order.

    Args:
        images: unbatched `(uint8 image, int label)` dataset (a split of
            `load_splits`).
        num_classes: number of classes (one-hot depth).
        image_size: side of the model input.
        crop_pct: the recipe's `eval_crop_pct`.
        batch_size: batch size (the last batch may be smaller).
        size: number of images (for the `"auto"` cache decision).
        cache: as in `train_dataset`.
        drop_remainder: drop the last partial batch (JAX `DataParallel`
            needs batches that split evenly over the devices).
        num_shards: number of processes; this one keeps every
            `num_shards`-th image, in batches of `batch_size / num_shards`
            (with `drop_remainder`, of the images of the full global
            batches only, so every shard has as many batches).
        shard_index: this process's shard.

    Returns:
        A finite `tf.data.Dataset` of `(float32 images, float32 one-hot)`.

    Example:
    >>> splits = load_splits(DataSource("digits", limit=10), load_size=16)
    >>> ds = eval_dataset(splits.validation, 10, 16, 1.0, batch_size=4)
    >>> [int(x.shape[0]) for x, _ in ds]
    [4, 4, 2]
    """
    load_size = int(round(image_size / crop_pct))
    ds = _cached(images, size, load_size, cache)
    if num_shards > 1:
        if drop_remainder:
            ds = ds.take(size // batch_size * batch_size)
        ds = ds.shard(num_shards, shard_index)
        batch_size //= num_shards
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    ds = ds.map(
        lambda x, y: (
            eval_transform(x, image_size, crop_pct),
            tf.one_hot(y, num_classes),
        ),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    return _deterministic(ds.prefetch(tf.data.AUTOTUNE))
