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

import tensorflow as tf

from keras_ba.applications import resnet
from keras_ba.training.errors import WorkflowError

# preprocess_input's constants, on the [0, 255] scale (Python floats: a tf
# constant at import time would start TensorFlow before --devices can split
# the CPU).
MEAN = tuple(m * 255.0 for m in resnet.IMAGENET_MEAN)
STD = tuple(s * 255.0 for s in resnet.IMAGENET_STD)


def normalize(images):
    """`preprocess_input` in TensorFlow ops: RGB [0, 255] -> ImageNet mean/std.

    `keras_ba.applications.preprocess_input` computes with `keras.ops`,
    which under JAX or PyTorch cannot run inside a `tf.data` graph; this is
    the same arithmetic for the pipeline and the exported signature.

    Example:
    >>> float(normalize(tf.fill([1, 1, 1, 3], 255.0))[0, 0, 0, 0])
    2.248...
    """
    return (tf.cast(images, tf.float32) - tf.constant(MEAN)) / tf.constant(STD)


def _keras_cv():
    try:
        import keras_cv  # imported late: it loads many modules
    except ImportError:
        raise WorkflowError(
            "Training augmentation needs keras-cv: pip install 'keras-ba[cv]' (or keras-cv)."
        ) from None
    return keras_cv


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
    kcv = _keras_cv().layers
    size = recipe.image_size
    if recipe.crop == "random-resized":
        layer = kcv.RandomCropAndResize(
            (size, size),
            crop_area_factor=(0.08, 1.0),
            aspect_ratio_factor=(3 / 4, 4 / 3),
            seed=seed,
        )
        return [("random_resized_crop", _on_batch(layer))]
    if recipe.crop == "pad":
        stages = [] if recipe.load_size() == size else [("center_crop", center_crop_fn(size))]
        layer = kcv.RandomCrop(size, size, seed=seed)
        return stages + [("pad", _pad_fn(size)), ("random_crop", _on_batch(layer))]
    return [("center_crop", center_crop_fn(size))]


def _pixel_stages(recipe, seed):
    kcv = _keras_cv().layers
    stages = _crop_stages(recipe, seed)
    if recipe.flip:
        stages.append(("random_flip", _on_batch(kcv.RandomFlip("horizontal", seed=seed + 1))))
    if recipe.randaugment:
        layer = kcv.RandAugment(
            value_range=(0, 255),
            augmentations_per_image=recipe.randaugment_ops,
            magnitude=recipe.randaugment,
            magnitude_stddev=recipe.randaugment_std,
            rate=0.5,
            seed=seed + 2,
        )
        stages.append(("randaugment", _on_batch(layer)))
    return stages


def _normalized_stages(recipe, seed):
    kcv = _keras_cv().layers
    stages = []
    if recipe.random_erasing:
        # Erased area 2-33% of the image (timm: 0.02-1/3), sides sampled apart.
        side = (0.02**0.5, (1 / 3) ** 0.5)
        cutout = kcv.RandomCutout(side, side, fill_mode="gaussian_noise", seed=seed + 3)
        layer = kcv.RandomApply(cutout, rate=recipe.random_erasing, seed=seed + 4)
        stages.append(("random_erasing", _on_batch(layer)))
    mixers = []
    if recipe.mixup:
        mixers.append(kcv.MixUp(alpha=recipe.mixup, seed=seed + 5))
    if recipe.cutmix:
        mixers.append(kcv.CutMix(alpha=recipe.cutmix, seed=seed + 6))
    if len(mixers) == 2:
        layer = kcv.RandomChoice(mixers, batchwise=True, seed=seed + 7)
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


def center_crop_fn(size):
    """A batch stage that crops the central `size` x `size` square.

    Example:
    >>> crop = center_crop_fn(2)
    >>> crop({"images": tf.zeros([1, 4, 4, 3])})["images"].shape
    TensorShape([1, 2, 2, 3])
    """

    def crop(batch):
        return {**batch, "images": center_crop(batch["images"], size)}

    return crop


def center_crop(images, size):
    """The central `size` x `size` square of an image batch `[B, H, W, C]`.

    Example:
    >>> center_crop(tf.zeros([2, 5, 7, 3]), 4).shape
    TensorShape([2, 4, 4, 3])
    """
    shape = tf.shape(images)
    top = (shape[1] - size) // 2
    left = (shape[2] - size) // 2
    return tf.image.crop_to_bounding_box(images, top, left, size, size)


def eval_transform(images, image_size, crop_pct):
    """Evaluation preprocessing of RGB [0, 255] batches of any size.

    Central square crop, resize (bilinear) to `image_size / crop_pct`, then
    a central `image_size` crop and `normalize`: torchvision's
    `Resize(256) + CenterCrop(224)` for square outputs. Shared by the eval
    pipeline, `keras-ba predict` and the exported serving signature, so all
    three see the same pixels. Images already at the resize size are not
    resampled.

    Args:
        images: float or uint8 tensor `[B, H, W, 3]`, RGB in [0, 255].
        image_size: side of the model input.
        crop_pct: `image_size / resize side` (1.0: no crop).

    Returns:
        Float32 `[B, image_size, image_size, 3]`, normalized.

    Example:
    >>> eval_transform(tf.zeros([1, 48, 64, 3]), 32, 0.875).shape
    TensorShape([1, 32, 32, 3])
    """
    images = tf.cast(images, tf.float32)
    load_size = int(round(image_size / crop_pct))
    shape = tf.shape(images)
    side = tf.minimum(shape[1], shape[2])
    images = center_crop(images, side)
    images = tf.cond(
        tf.equal(side, load_size),
        lambda: images,
        lambda: tf.image.resize(images, (load_size, load_size)),
    )
    return normalize(center_crop(images, image_size))
