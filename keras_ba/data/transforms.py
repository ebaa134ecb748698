"""Image transforms in TensorFlow ops: normalization, center crop, evaluation.

The same pixels reach the model in every place that feeds it: the
evaluation pipeline, `predict`, and the exported SavedModel's signature all
call `eval_transform`; training normalizes with `normalize`. Both compute
`keras_ba.applications.preprocess_input` (its constants come from
`keras_ba.applications.preprocessing`) in TensorFlow ops, which run inside
`tf.data` whatever the Keras backend.

Example:
>>> import tensorflow as tf
>>> eval_transform(tf.zeros([1, 48, 64, 3]), 32, 0.875).shape
TensorShape([1, 32, 32, 3])
"""

from keras_ba.applications.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from keras_ba.extras import require

tf = require("tensorflow", "train", "The keras_ba input pipeline")

# preprocess_input's constants on the [0, 255] scale (Python floats: a tf
# constant at import time would start TensorFlow before `devices=` can
# split the CPU).
MEAN = tuple(m * 255.0 for m in IMAGENET_MEAN)
STD = tuple(s * 255.0 for s in IMAGENET_STD)


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


def center_crop_fn(size):
    """A batch stage (`{"images", ...}` -> same) that crops the central square.

    Example:
    >>> crop = center_crop_fn(2)
    >>> crop({"images": tf.zeros([1, 4, 4, 3])})["images"].shape
    TensorShape([1, 2, 2, 3])
    """

    def crop(batch):
        return {**batch, "images": center_crop(batch["images"], size)}

    return crop


def square_resize(images, size):
    """Central square crop, then a bilinear resize to `size` x `size`.

    Images already `size` x `size` are not resampled.

    Example:
    >>> square_resize(tf.zeros([1, 48, 64, 3]), 16).shape
    TensorShape([1, 16, 16, 3])
    """
    images = tf.cast(images, tf.float32)
    shape = tf.shape(images)
    side = tf.minimum(shape[1], shape[2])
    images = center_crop(images, side)
    return tf.cond(
        tf.equal(side, size),
        lambda: images,
        lambda: tf.image.resize(images, (size, size)),
    )


def eval_transform(images, image_size, crop_pct):
    """Evaluation preprocessing of RGB [0, 255] batches of any size.

    Central square crop, resize (bilinear) to `image_size / crop_pct`, then
    a central `image_size` crop and `normalize`: torchvision's
    `Resize(256) + CenterCrop(224)` for square outputs. Shared by the eval
    pipeline, `predict` and the exported serving signature, so all three see
    the same pixels. Images already at the resize size are not resampled.

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
    load_size = int(round(image_size / crop_pct))
    return normalize(center_crop(square_resize(images, load_size), image_size))
