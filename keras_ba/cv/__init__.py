"""Detection and segmentation with BA backbones: KerasHub first, keras-cv where only it has it.

- `build_retinanet`, `build_deeplab_v3_plus`: KerasHub's maintained
  `RetinaNetObjectDetector` and `DeepLabV3ImageSegmenter` with a BA
  backbone as their image encoder (a keras_ba backbone is a
  `keras_hub.models.Backbone`).
- `build_yolo_v8`: keras-cv's `YOLOV8Detector` (frozen, but no maintained
  Keras 3 library has YOLOv8) on a `BABackbone`, a keras_ba model as a
  `keras_cv.models.Backbone` with pyramid levels P1..P5 (stride 2**k).
- `make_digit_canvases`: a small generated task (digits on a canvas, with
  boxes and masks); `detection_dataset` (keras-cv's box-aware
  `JitteredResize`) / `segmentation_dataset` (Keras' `RandomFlip`): tf.data
  pipelines.
- `evaluate_map` (keras-cv `BoxCOCOMetrics`, with pycocotools),
  `evaluate_mean_iou` (`keras.metrics.MeanIoU`), `export_detector` (TF
  Serving SavedModel).

Needs the `cv` extra (keras-hub, keras-cv, pycocotools, TensorFlow).

Example:
>>> from keras_ba import cv
>>> cv.make_digit_canvases(2)["images"].shape
(2, 64, 64, 3)
"""

from keras_ba.extras import require

for _module in ("keras_hub", "keras_cv"):
    require(_module, "cv", "keras_ba.cv")

from keras_ba.cv.backbone import BABackbone, PyramidLevelError  # noqa: E402  (after the extra's check)
from keras_ba.cv.datasets import make_digit_canvases  # noqa: E402  (after the extra's check)
from keras_ba.cv.detection import (  # noqa: E402  (after the extra's check)
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
from keras_ba.cv.segmentation import (  # noqa: E402  (after the extra's check)
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
