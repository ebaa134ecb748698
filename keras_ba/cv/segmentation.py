"""Semantic segmentation with BA backbones: KerasHub's DeepLabV3+.

`build_deeplab_v3_plus` puts KerasHub's `DeepLabV3ImageSegmenter` (levels
P2 and P5) on a BA backbone; `segmentation_dataset` feeds it from tf.data
(Keras' `RandomFlip` flips masks with images); `evaluate_mean_iou` scores it with
`keras.metrics.MeanIoU`, and `background_mean_iou` gives the score of
predicting background everywhere, the baseline a model must beat.

Example:
>>> background_mean_iou(np.array([[0, 0, 1, 1]]), num_classes=2)
0.25
"""

import keras
import numpy as np


def build_deeplab_v3_plus(
    backbone,
    num_classes,
    projection_filters=48,
    dilation_rates=(6, 12, 18),
):
    """KerasHub's `DeepLabV3ImageSegmenter` (DeepLabV3+) on a BA backbone.

    The BA backbone is KerasHub's image encoder: `DeepLabV3Backbone(
    image_encoder=backbone)` pools P5 with atrous spatial pyramid pooling
    (256 channels), upsamples it to P2's size, joins the projected P2
    features (the "+" decoder) and upsamples to the input size.

    Args:
        backbone: a keras_ba backbone with levels P2 and P5 (image sides
            multiples of 32), or a keras_ba application built with
            `include_top=False`.
        num_classes: classes per pixel, background included.
        projection_filters: filters projecting the P2 features.
        dilation_rates: of the spatial pyramid pooling (KerasHub's default
            `(6, 12, 18)` suits 512 px images; small images want smaller).

    Returns:
        A `keras_hub.models.DeepLabV3ImageSegmenter` whose output is per-pixel
        softmax probabilities `(B, H, W, num_classes)`; compile it with
        `loss="sparse_categorical_crossentropy"`.

    Example:
        trunk = BAResNetBackbone([3, 4, 6, 3], image_shape=(256, 256, 3))
        model = build_deeplab_v3_plus(trunk, num_classes=21)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                      metrics=[keras.metrics.MeanIoU(21, sparse_y_pred=False)])
    """
    import keras_hub

    from keras_ba.cv.detectors import _pyramid_encoder

    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(
            "Received an invalid value for `num_classes`, expected an integer "
            f">= 2 (background included). Received: num_classes={num_classes!r}"
        )
    encoder = _pyramid_encoder(backbone, ("P2", "P5"))
    deeplab = keras_hub.models.DeepLabV3Backbone(
        image_encoder=encoder,
        spatial_pyramid_pooling_key="P5",
        upsampling_size=8,  # P5 (stride 32) to P2 (stride 4)
        dilation_rates=list(dilation_rates),
        low_level_feature_key="P2",
        projection_filters=projection_filters,
        image_shape=tuple(encoder.input_shape[1:]),
    )
    return keras_hub.models.DeepLabV3ImageSegmenter(
        backbone=deeplab, num_classes=num_classes, activation="softmax"
    )


def segmentation_dataset(images, masks, batch_size=16, flip=False, shuffle=False, seed=0):
    """A tf.data pipeline of `(normalized images, masks)`.

    Args:
        images: `(N, H, W, 3)` RGB in [0, 255].
        masks: `(N, H, W)` integer class per pixel.
        batch_size: images per batch.
        flip: random horizontal flips of images and masks together
            (`keras.layers.RandomFlip`, one decision per image).
        shuffle: reshuffle every epoch.
        seed: seed of the shuffle and the flips.

    Returns:
        A `tf.data.Dataset` of `(images, masks)`, masks int32 `(B, H, W)`.

    Example:
    >>> from keras_ba.cv.datasets import make_digit_canvases
    >>> data = make_digit_canvases(4, seed=0)
    >>> ds = segmentation_dataset(data["images"], data["masks"], batch_size=2, flip=True)
    >>> [tuple(t.shape) for t in next(iter(ds))]
    [(2, 64, 64, 3), (2, 64, 64)]
    """
    import tensorflow as tf

    from keras_ba.data.augment import normalize

    images = np.asarray(images, "float32")
    masks = np.asarray(masks)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"`images` must have shape (N, H, W, 3). Received: {images.shape}")
    if masks.shape != images.shape[:3]:
        raise ValueError(
            f"`masks` must have shape (N, H, W) = {images.shape[:3]} to match "
            f"the images. Received: {masks.shape}"
        )
    ds = tf.data.Dataset.from_tensor_slices(
        {"images": images, "segmentation_masks": masks[..., None].astype("int32")}
    )
    if shuffle:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if flip:
        layer = keras.layers.RandomFlip("horizontal", seed=seed)
        ds = ds.map(lambda batch: layer(batch, training=True), num_parallel_calls=tf.data.AUTOTUNE)

    def finish(batch):
        masks = tf.cast(tf.squeeze(batch["segmentation_masks"], -1), tf.int32)
        return normalize(batch["images"]), masks

    return ds.map(finish, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def evaluate_mean_iou(model, images, masks, num_classes, batch_size=32):
    """Mean IoU over classes (`keras.metrics.MeanIoU`) of a segmenter.

    Args:
        model: a segmentation model giving `(B, H, W, num_classes)` scores.
        images: normalised images `(N, H, W, 3)`.
        masks: true classes `(N, H, W)`.
        num_classes: classes, background included.
        batch_size: images per forward pass.

    Returns:
        The mean IoU as a float.

    Example:
        evaluate_mean_iou(model, preprocess_input(images), masks, 4)
    """
    metric = keras.metrics.MeanIoU(num_classes=num_classes, sparse_y_pred=False)
    scores = model.predict(np.asarray(images, "float32"), batch_size=batch_size, verbose=0)
    metric.update_state(np.asarray(masks), scores)
    return float(metric.result())


def background_mean_iou(masks, num_classes):
    """Mean IoU of predicting class 0 everywhere (NumPy, the baseline).

    Background IoU is the background fraction; every other class present in
    `masks` scores 0; classes absent from both are left out, as
    `keras.metrics.MeanIoU` does.

    Example:
    >>> background_mean_iou(np.array([[0, 0, 0, 2]]), num_classes=3)
    0.375
    """
    masks = np.asarray(masks)
    present = np.unique(masks)
    present = present[(present >= 0) & (present < num_classes)]
    background = float(np.mean(masks == 0))
    return background / len(set(present.tolist()) | {0})
