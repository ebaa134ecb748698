"""Training augmentation from Keras core layers (keras-cv where core lacks one).

Each layer runs in its own `tf.data` `map` on `{"images", "labels"}`
batches (a `keras.Sequential` of them fails in tf.data under JAX and
PyTorch: keras-team/keras#18396); Keras' preprocessing layers compute with
TensorFlow inside tf.data, so the pipeline feeds all three backends.

Order, as timm's `create_transform` + `Mixup` in the BAv2 code:

1. on RGB pixels in [0, 255]: crop (keras-cv `RandomCropAndResize`, or
   pad + keras-cv `RandomCrop`: Keras core has no random resized crop, and
   its `RandomCrop` takes one window per batch), `keras.layers.RandomFlip`,
   keras-cv `RandAugment` (timm's `rand-m9-mstd0.5`: each of the 2 ops
   applied with probability 0.5 at a magnitude drawn around m; Keras core's
   `RandAugment` applies the same ops to the whole batch, always, at a
   uniform magnitude);
2. `normalize` (ImageNet mean/std, what `preprocess_input` computes);
3. on normalized images: `random_erasing` (timm's "pixel" mode, in
   TensorFlow ops here: Keras core's `RandomErasing` clips its noise to its
   `value_range`, and keras-cv's Gaussian-noise `RandomCutout` does nothing
   under Keras 3), then `keras.layers.MixUp` or `keras.layers.CutMix`, one
   of the two per batch with probability 0.5 (timm's switch; `one_of`).

Example:
>>> import tensorflow as tf
>>> from keras_ba.training.recipes import get_recipe
>>> stages = train_augmenters(get_recipe("small", image_size=16), seed=0)
>>> [name for name, _ in stages]
['pad', 'random_crop', 'random_flip', 'normalize']
"""

import keras
import numpy as np

from keras_ba.data.transforms import center_crop_fn, normalize, tf
from keras_ba.extras import require

ERASED_AREA = (0.02, 1 / 3)  # timm's random erasing: fraction of the image
ERASE_ASPECT = (0.3, 1 / 0.3)  # timm's random erasing: height / width
SWITCH_PROBABILITY = 0.5  # timm's Mixup: CutMix instead of MixUp for a batch


def _kcv():
    """`keras_cv.layers`, imported when a stage needs it (it loads many modules)."""
    return require("keras_cv", "train", "Training augmentation (keras-cv)").layers


def layer_seed(seed, offset):
    """The seed of the `offset`-th random layer of a run seeded with `seed`.

    Never 0: keras-cv layers treat a falsy seed as "unseeded" and draw from
    TensorFlow's global generator, which is not reproducible. Distinct for
    each `(seed, offset)` with `offset < 100`.

    Example:
    >>> layer_seed(0, 0), layer_seed(0, 1), layer_seed(1, 0)
    (1, 2, 101)
    """
    return 1 + (seed * 100 + offset) % (2**31 - 2)


def _pad_fn(size):
    pad = max(size // 8, 1)

    def pad_images(batch):
        images = tf.pad(batch["images"], [[0, 0], [pad, pad], [pad, pad], [0, 0]])
        return {**batch, "images": images}

    return pad_images


def _on_batch(layer):
    def apply(batch):
        return layer(batch, training=True)

    return apply


def one_of(first, second, probability, seed):
    """`second(batch)` with `probability`, else `first(batch)`, one draw per batch.

    Keras core has no `RandomChoice`; this is timm's MixUp/CutMix switch.
    The draw comes from a seeded `tf.random.Generator`: the same seed gives
    the same choices.

    Example:
    >>> pick = one_of(lambda b: b + 1, lambda b: b - 1, probability=0.0, seed=1)
    >>> int(pick(tf.constant(5)))
    6
    """
    generator = tf.random.Generator.from_seed(seed)

    def apply(batch):
        return tf.cond(
            generator.uniform([]) < probability, lambda: second(batch), lambda: first(batch)
        )

    return apply


def _crop_stages(recipe, seed):
    size = recipe.image_size
    if recipe.crop == "random-resized":
        layer = _kcv().RandomCropAndResize(
            (size, size),
            crop_area_factor=(0.08, 1.0),
            aspect_ratio_factor=(3 / 4, 4 / 3),
            seed=layer_seed(seed, 0),
        )
        return [("random_resized_crop", _on_batch(layer))]
    if recipe.crop == "pad":
        stages = [] if recipe.load_size() == size else [("center_crop", center_crop_fn(size))]
        layer = _kcv().RandomCrop(size, size, seed=layer_seed(seed, 0))
        return stages + [("pad", _pad_fn(size)), ("random_crop", _on_batch(layer))]
    return [("center_crop", center_crop_fn(size))]


def _pixel_stages(recipe, seed):
    stages = _crop_stages(recipe, seed)
    if recipe.flip:
        flip = keras.layers.RandomFlip("horizontal", seed=layer_seed(seed, 1))
        stages.append(("random_flip", _on_batch(flip)))
    if recipe.randaugment:
        layer = _kcv().RandAugment(
            value_range=(0, 255),
            augmentations_per_image=recipe.randaugment_ops,
            magnitude=recipe.randaugment,
            magnitude_stddev=recipe.randaugment_std,
            rate=0.5,
            seed=layer_seed(seed, 2),
        )
        stages.append(("randaugment", _on_batch(layer)))
    return stages


def random_erasing(rate, seed, area=ERASED_AREA, aspect=ERASE_ASPECT):
    """timm's `RandomErasing(mode="pixel")` on a `{"images", ...}` batch.

    Each image, with probability `rate`, gets one rectangle of
    `area` (fraction of the image) and `aspect` (height / width, drawn
    log-uniformly) filled with N(0, 1) noise: the rectangle is clipped to
    the image where timm would retry. Neither library does this: Keras
    core's `RandomErasing` clips its noise to `value_range`, and keras-cv
    0.9's `RandomCutout(fill_mode="gaussian_noise")` leaves images unchanged
    under Keras 3.

    Example:
    >>> batch = {"images": tf.zeros((4, 8, 8, 3))}
    >>> erased = random_erasing(1.0, seed=1)(batch)["images"]
    >>> bool(tf.reduce_all(tf.reduce_any(erased != 0, axis=[1, 2, 3])))
    True
    """
    generator = tf.random.Generator.from_seed(seed)
    low, high = float(np.log(aspect[0])), float(np.log(aspect[1]))

    def apply(batch):
        images = batch["images"]
        shape = tf.shape(images)
        count, height, width = (
            shape[0],
            tf.cast(shape[1], tf.float32),
            tf.cast(shape[2], tf.float32),
        )
        fraction = generator.uniform([count], area[0], area[1])
        ratio = tf.exp(generator.uniform([count], low, high))
        box_h = tf.minimum(tf.round(tf.sqrt(fraction * ratio) * height), height)
        box_w = tf.minimum(tf.round(tf.sqrt(fraction / ratio) * width), width)
        top = tf.floor(generator.uniform([count]) * (height - box_h + 1))
        left = tf.floor(generator.uniform([count]) * (width - box_w + 1))
        rows = tf.range(height)[None, :]
        cols = tf.range(width)[None, :]
        inside_rows = (rows >= top[:, None]) & (rows < (top + box_h)[:, None])
        inside_cols = (cols >= left[:, None]) & (cols < (left + box_w)[:, None])
        applied = generator.uniform([count]) < rate
        mask = inside_rows[:, :, None] & inside_cols[:, None, :] & applied[:, None, None]
        noise = generator.normal(shape, dtype=images.dtype)
        return {**batch, "images": tf.where(mask[..., None], noise, images)}

    return apply


def _normalized_stages(recipe, seed):
    stages = []
    if recipe.random_erasing:
        stages.append(
            ("random_erasing", random_erasing(recipe.random_erasing, layer_seed(seed, 3)))
        )
    mixers = []
    if recipe.mixup:
        mixers.append(keras.layers.MixUp(alpha=recipe.mixup, seed=layer_seed(seed, 5)))
    if recipe.cutmix:
        mixers.append(keras.layers.CutMix(factor=(recipe.cutmix,) * 2, seed=layer_seed(seed, 6)))
    if len(mixers) == 2:
        first, second = (_on_batch(layer) for layer in mixers)
        switch = one_of(first, second, SWITCH_PROBABILITY, layer_seed(seed, 7))
        stages.append(("mixup_or_cutmix", switch))
    elif mixers:
        stages.append((mixers[0].name, _on_batch(mixers[0])))
    return stages


def _normalize_batch(batch):
    return {**batch, "images": normalize(batch["images"])}


def train_augmenters(recipe, seed):
    """The recipe's training transforms, as `(name, fn)` stages on batches.

    Every `fn` maps a `{"images", "labels"}` batch (images float32, labels
    one-hot) to a batch; apply them one by one with `Dataset.map`. The
    output images are normalized and `recipe.image_size` square.

    Args:
        recipe: a `keras_ba.training.recipes.Recipe`.
        seed: integer seed; each layer gets its own seed derived from it.

    Returns:
        A list of `(name, function)` pairs, in order.

    Example:
    >>> from keras_ba.training.recipes import get_recipe
    >>> [n for n, _ in train_augmenters(get_recipe("bav2"), seed=1)][-3:]
    ['normalize', 'random_erasing', 'mixup_or_cutmix']
    """
    return (
        _pixel_stages(recipe, seed)
        + [("normalize", _normalize_batch)]
        + _normalized_stages(recipe, seed)
    )
