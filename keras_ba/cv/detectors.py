"""The detectors: KerasHub's RetinaNet and keras-cv's YOLOv8 on BA backbones.

`build_retinanet` puts KerasHub's `RetinaNetObjectDetector` on a keras_ba
backbone (its image encoder); `build_yolo_v8` keras-cv's `YOLOV8Detector`
on a `BABackbone`. `keras_ba.cv.detection` feeds, scores and exports them.

Example:
>>> from keras_ba.applications import BAResNetBackbone
>>> trunk = BAResNetBackbone([1, 1, 1, 1], [8, 8, 16, 16], block_type="basic",
...                          stem_filters=8, reduction=4, image_shape=(64, 64, 3))
>>> type(build_retinanet(trunk, 2, "xyxy", anchor_size=2)).__name__
'RetinaNetObjectDetector'
"""

import keras_cv

from keras_ba.cv.backbone import BABackbone, PyramidLevelError

BOX_FORMATS = (
    "xyxy",
    "rel_xyxy",
    "yxyx",
    "rel_yxyx",
    "xywh",
    "rel_xywh",
    "center_xywh",
    "center_yxhw",
)


def check_bounding_box_format(bounding_box_format):
    """Returns `bounding_box_format` if keras-cv knows it, else a ValueError.

    Example:
    >>> check_bounding_box_format("xyzw")
    Traceback (most recent call last):
    ...
    ValueError: Received an invalid value for `bounding_box_format`, expected one of ('xyxy', 'rel_xyxy', 'yxyx', 'rel_yxyx', 'xywh', 'rel_xywh', 'center_xywh', 'center_yxhw'). Received: bounding_box_format='xyzw'
    """
    if bounding_box_format not in BOX_FORMATS:
        raise ValueError(
            "Received an invalid value for `bounding_box_format`, expected one "
            f"of {BOX_FORMATS}. Received: bounding_box_format={bounding_box_format!r}"
        )
    return bounding_box_format


def _as_backbone(backbone, levels):
    if isinstance(backbone, BABackbone):
        for level in levels:
            backbone.pyramid_level_inputs[level]  # a clear error if missing
        return backbone
    return BABackbone(backbone, levels=levels)


def _pyramid_encoder(backbone, levels):
    """A model with `pyramid_outputs` holding `levels` (KerasHub's image encoder).

    keras_ba backbones are used as they are; other keras_ba models (flat
    applications) are wrapped in a `BABackbone`.
    """
    pyramid = getattr(backbone, "pyramid_outputs", None)
    if not pyramid or isinstance(backbone, BABackbone):
        backbone = _as_backbone(backbone, levels)
        pyramid = backbone.pyramid_outputs
    missing = [level for level in levels if level not in pyramid]
    if missing:
        raise PyramidLevelError(
            f"The backbone {backbone.name!r} has no pyramid level {missing[0]!r}; "
            f"it has {sorted(pyramid)}. Detection heads need P3, P4 and P5, "
            "DeepLabV3 needs P2 and P5: build the backbone with those levels."
        )
    return backbone


def build_retinanet(
    backbone,
    num_classes,
    bounding_box_format,
    anchor_size=4,
    head_conv_layers=4,
    max_level=5,
    iou_threshold=0.5,
    confidence_threshold=0.5,
    max_detections=100,
):
    """KerasHub's `RetinaNetObjectDetector` on a BA backbone.

    The BA backbone is KerasHub's image encoder: `RetinaNetBackbone(
    image_encoder=backbone)` adds the feature pyramid (levels P3 to
    `max_level`) and `RetinaNetObjectDetector` the heads, the anchor
    matching, the focal / smooth-L1 losses and the decoding (non-max
    suppression in Keras ops, on every backend).

    Args:
        backbone: a keras_ba backbone (P3, P4, P5), or a keras_ba
            application built with `include_top=False`.
        num_classes: object classes (background excluded).
        bounding_box_format: the format of the boxes it trains on and
            predicts (`BOX_FORMATS`; KerasHub's default is `"yxyx"`).
        anchor_size: anchor side as a multiple of each level's stride
            (KerasHub's default 4 suits ~512 px images; small images with
            small objects want 1 or 2).
        head_conv_layers: 3x3 convs (256 filters) in each prediction head.
        max_level: the coarsest level: 5 for small images, 7 as in the
            paper for large ones (P6 and P7 are computed from P5).
        iou_threshold, confidence_threshold, max_detections: of the
            non-max-suppression decoder.

    Returns:
        A `keras_hub.models.RetinaNetObjectDetector` taking normalised
        images (`preprocess_input`); compile it with e.g. `optimizer="adam"`
        (the losses are its defaults) and fit it on `(images, {"boxes",
        "labels"})`: `detection_dataset(..., class_key="labels")`.

    Example:
        trunk = BAResNet18Backbone(image_shape=(256, 256, 3))
        model = build_retinanet(trunk, 20, "xyxy", anchor_size=2)
        model.compile(optimizer="adam")
        model.fit(detection_dataset(images, boxes, "xyxy", class_key="labels"), epochs=10)
        model.predict(preprocess_input(images))  # {"boxes", "labels", "confidence", ...}
    """
    import keras_hub

    check_bounding_box_format(bounding_box_format)
    _check_num_classes(num_classes)
    if not (isinstance(anchor_size, (int, float)) and anchor_size > 0):
        raise ValueError(
            "Received an invalid value for `anchor_size`, expected a positive "
            f"number (multiple of the stride). Received: anchor_size={anchor_size!r}"
        )
    if max_level not in (5, 6, 7):
        raise ValueError(f"`max_level` must be 5, 6 or 7. Received: max_level={max_level!r}")
    encoder = _pyramid_encoder(backbone, ("P3", "P4", "P5"))
    retina_backbone = keras_hub.models.RetinaNetBackbone(
        image_encoder=encoder,
        min_level=3,
        max_level=max_level,
        use_p5=False,
        image_shape=tuple(encoder.input_shape[1:]),
    )
    anchors = keras_hub.layers.AnchorGenerator(
        bounding_box_format,
        min_level=3,
        max_level=max_level,
        num_scales=3,
        aspect_ratios=[0.5, 1.0, 2.0],
        anchor_size=anchor_size,
    )
    return keras_hub.models.RetinaNetObjectDetector(
        backbone=retina_backbone,
        num_classes=num_classes,
        bounding_box_format=bounding_box_format,
        anchor_generator=anchors,
        pre_logits_num_conv_layers=head_conv_layers,
        prediction_decoder=keras_hub.layers.NonMaxSuppression(
            bounding_box_format=bounding_box_format,
            from_logits=True,
            iou_threshold=iou_threshold,
            confidence_threshold=confidence_threshold,
            max_detections=max_detections,
        ),
    )


def build_yolo_v8(
    backbone,
    num_classes,
    bounding_box_format,
    fpn_depth=1,
    iou_threshold=0.7,
    confidence_threshold=0.2,
    max_detections=100,
):
    """keras-cv's `YOLOV8Detector` on a BA backbone.

    Args:
        backbone: a `BABackbone`, or a keras_ba model to wrap in one (needs
            levels P3, P4, P5).
        num_classes: object classes.
        bounding_box_format: the format of the boxes (`BOX_FORMATS`).
        fpn_depth: depth of the CSP blocks of the path-aggregation FPN.
        iou_threshold, confidence_threshold, max_detections: of the
            non-max-suppression decoder (keras-cv's YOLOv8 defaults).

    Returns:
        A `keras_cv.models.YOLOV8Detector`; compile it with
        `box_loss="ciou", classification_loss="binary_crossentropy"`.

    Example:
        trunk = BAResNet50(include_top=False, weights="classifier.keras")
        model = build_yolo_v8(trunk, 20, "center_xywh")
        model.compile(optimizer="adam", box_loss="ciou", classification_loss="binary_crossentropy")
    """
    check_bounding_box_format(bounding_box_format)
    _check_num_classes(num_classes)
    return keras_cv.models.YOLOV8Detector(
        backbone=_as_backbone(backbone, ("P3", "P4", "P5")),
        num_classes=num_classes,
        bounding_box_format=bounding_box_format,
        fpn_depth=fpn_depth,
        prediction_decoder=keras_cv.layers.NonMaxSuppression(
            bounding_box_format=bounding_box_format,
            from_logits=False,
            iou_threshold=iou_threshold,
            confidence_threshold=confidence_threshold,
            max_detections=max_detections,
        ),
    )


def _check_num_classes(num_classes):
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(
            "Received an invalid value for `num_classes`, expected a positive "
            f"integer. Received: num_classes={num_classes!r}"
        )
