"""Detection and segmentation with BA backbones, on keras-cv's task models.

- `BABackbone`: a keras_ba model as a `keras_cv.models.Backbone` (and a
  keras-hub image encoder), with pyramid levels P1..P5 (stride 2**k).
- `build_retinanet`, `build_yolo_v8`, `build_deeplab_v3_plus`: keras-cv's
  `RetinaNet`, `YOLOV8Detector` and `DeepLabV3Plus` on a BA backbone.
- `make_digit_canvases`: a small generated task (digits on a canvas, with
  boxes and masks); `detection_dataset` / `segmentation_dataset`: tf.data
  pipelines with keras-cv augmentation.
- `evaluate_map` (keras-cv `BoxCOCOMetrics`), `evaluate_mean_iou`
  (`keras.metrics.MeanIoU`), `export_detector` (TF Serving SavedModel).

Needs keras-cv (and pycocotools for `evaluate_map`).

Example:
>>> from keras_ba import cv
>>> cv.make_digit_canvases(2)["images"].shape
(2, 64, 64, 3)
"""

try:
    import keras_cv  # noqa: F401
except ImportError as error:  # pragma: no cover
    raise ImportError(
        "keras_ba.cv needs keras-cv: pip install keras-cv (and pycocotools for mAP)."
    ) from error

from keras_ba.cv.backbone import BABackbone, PyramidLevelError
from keras_ba.cv.datasets import make_digit_canvases
from keras_ba.cv.detection import (
    BOX_FORMATS,
    MAP50,
    build_retinanet,
    build_yolo_v8,
    check_bounding_box_format,
    check_detection_data,
    detection_dataset,
    evaluate_map,
    export_detector,
    predict_boxes,
    to_bounding_boxes,
)
from keras_ba.cv.segmentation import (
    background_mean_iou,
    build_deeplab_v3_plus,
    evaluate_mean_iou,
    segmentation_dataset,
)

__all__ = [
    "BABackbone",
    "BOX_FORMATS",
    "MAP50",
    "PyramidLevelError",
    "background_mean_iou",
    "build_deeplab_v3_plus",
    "build_retinanet",
    "build_yolo_v8",
    "check_bounding_box_format",
    "check_detection_data",
    "detection_dataset",
    "evaluate_map",
    "evaluate_mean_iou",
    "export_detector",
    "make_digit_canvases",
    "predict_boxes",
    "segmentation_dataset",
    "to_bounding_boxes",
]
