"""Training augmentation from keras-cv layers, for every backend.

Each layer runs in its own `tf.data` `map` on `{"images", "labels"}`
batches (a `keras.Sequential` of them fails in tf.data under JAX and
PyTorch: keras-team/keras#18396), so the pipeline feeds all three backends.

Order, as timm's `create_transform` + `Mixup` in the BAv2 code:

1. on RGB pixels in [0, 255]: crop (`RandomCropAndResize`, or pad +
   `RandomCrop`), `RandomFlip`, `RandAugment`;
2. `normalize` (ImageNet mean/std, what `preprocess_input` computes);
3. on normalized images: random erasing (keras-cv `RandomCutout` with
   Gaussian noise, which is timm's "pixel" mode, wrapped in `RandomApply`
   for the per-image probability), then MixUp or CutMix, one of the two
   per batch (`RandomChoice(batchwise=True)`, timm's switch probability
   0.5).

Example:
>>> import tensorflow as tf
>>> from keras_ba.training.recipes import get_recipe
>>> stages = train_augmenters(get_recipe("small", image_size=16), seed=0)
>>> [name for name, _ in stages]
['pad', 'random_crop', 'random_flip', 'normalize']
"""

from keras_ba.data.transforms import center_crop_fn, normalize, tf
from keras_ba.extras import require


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
        stages.append(
            ("random_flip", _on_batch(_kcv().RandomFlip("horizontal", seed=layer_seed(seed, 1))))
        )
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


def _normalized_stages(recipe, seed):
    if not (recipe.random_erasing or recipe.mixup or recipe.cutmix):
        return []
    kcv = _kcv()
    stages = []
    if recipe.random_erasing:
        # Erased area 2-33% of the image (timm: 0.02-1/3), sides sampled apart.
        side = (0.02**0.5, (1 / 3) ** 0.5)
        cutout = kcv.RandomCutout(side, side, fill_mode="gaussian_noise", seed=layer_seed(seed, 3))
        layer = kcv.RandomApply(cutout, rate=recipe.random_erasing, seed=layer_seed(seed, 4))
        stages.append(("random_erasing", _on_batch(layer)))
    mixers = []
    if recipe.mixup:
        mixers.append(kcv.MixUp(alpha=recipe.mixup, seed=layer_seed(seed, 5)))
    if recipe.cutmix:
        mixers.append(kcv.CutMix(alpha=recipe.cutmix, seed=layer_seed(seed, 6)))
    if len(mixers) == 2:
        layer = kcv.RandomChoice(mixers, batchwise=True, seed=layer_seed(seed, 7))
        stages.append(("mixup_or_cutmix", _on_batch(layer)))
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
