"""Detect digits with a BA backbone: keras-cv RetinaNet / YOLOv8, trained end to end.

Trains the same small detector with Bridge Attention, squeeze-and-excitation
and no attention in the backbone (same seed, same data, same steps) on the
generated digits task (`keras_ba.cv.make_digit_canvases`), tracks mAP@0.5
on held-out images with keras-cv's `BoxCOCOMetrics`, and writes to
`--output`: the metric curves (`map_curve.png`), predicted boxes on
validation images (`predictions.png`), the numbers (`results.json`), the BA
detector (`detector_bav1.keras`) and, with `--export`, its TF Serving
SavedModel.

    KERAS_BACKEND=tensorflow python examples/detection.py            # ~10 min on 2 CPU cores
    python examples/detection.py --detector retinanet --attention bav1 --steps 100
"""

import argparse
import json
import os
import time

import keras
import numpy as np

import keras_ba
from keras_ba import cv
from keras_ba.applications import BAResNet, preprocess_input
from keras_ba.runs.folder import atomic_path

SCORE_FLOOR = 0.05  # detections kept for mAP (COCO practice)
SCORE_SHOWN = 0.2  # the figure shows these (keras-cv YOLOv8's default threshold)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--detector", choices=cv.detection.DETECTORS, default="yolo_v8")
    parser.add_argument("--attention", nargs="+", default=["bav1", "se", "none"])
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--digits", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    parser.add_argument("--train-images", type=int, default=2000)
    parser.add_argument("--val-images", type=int, default=200)
    parser.add_argument("--bounding-box-format", default="xywh", choices=cv.BOX_FORMATS)
    parser.add_argument("--widths", type=int, nargs=4, default=[16, 32, 64, 128])
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--head-conv-layers", type=int, default=2, help="RetinaNet heads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="runs/detection")
    parser.add_argument("--export", action="store_true", help="also write a SavedModel")
    return parser.parse_args(argv)


def build(args, attention):
    """The same seed for every attention: identical data order and heads."""
    keras.utils.set_random_seed(args.seed)
    trunk = BAResNet(
        [1, 1, 1, 1],
        args.widths,
        block_type="basic",
        include_top=False,
        attention=None if attention == "none" else attention,
        reduction=4,
        input_shape=(args.image_size, args.image_size, 3),
        name=f"ba_resnet_{attention}",
    )
    num_classes = len(args.digits)
    fmt = args.bounding_box_format
    if args.detector == "retinanet":
        # KerasHub's RetinaNet: anchors of 2 strides, P3 anchors 1/4 of a 64 px image
        model = cv.build_retinanet(
            trunk, num_classes, fmt, anchor_size=2,
            head_conv_layers=args.head_conv_layers, confidence_threshold=SCORE_FLOOR,
        )  # fmt: skip
        model.compile(  # its losses: focal and smooth L1 (KerasHub's defaults)
            optimizer=keras.optimizers.Adam(args.learning_rate, global_clipnorm=10.0)
        )
    else:
        model = cv.build_yolo_v8(
            trunk, num_classes, fmt, fpn_depth=1, confidence_threshold=SCORE_FLOOR
        )
        model.compile(
            optimizer=keras.optimizers.Adam(args.learning_rate, global_clipnorm=10.0),
            box_loss="ciou",
            classification_loss="binary_crossentropy",
        )
    return model


def train_one(args, attention, train, val_images, val_boxes):
    model = build(args, attention)
    fmt = args.bounding_box_format
    train_ds = cv.detection_dataset(
        train["images"], cv.to_bounding_boxes(train, fmt), fmt,
        batch_size=args.batch_size, augment=True, shuffle=True, seed=args.seed,
        class_key="labels" if args.detector == "retinanet" else "classes",
    )  # fmt: skip
    curve = [(0, cv.evaluate_map(model, val_images, val_boxes)[cv.MAP50])]
    print(f"[{attention}] step 0: mAP@0.5 {curve[-1][1]:.3f}", flush=True)
    start = time.time()

    class TrackMap(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            curve.append(
                (
                    (epoch + 1) * args.eval_every,
                    cv.evaluate_map(model, val_images, val_boxes)[cv.MAP50],
                )
            )
            print(
                f"[{attention}] step {curve[-1][0]}: mAP@0.5 {curve[-1][1]:.3f}, loss "
                f"{logs['loss']:.3f} ({time.time() - start:.0f} s)",
                flush=True,
            )

    model.fit(
        train_ds.repeat(),
        steps_per_epoch=args.eval_every,
        epochs=args.steps // args.eval_every,
        callbacks=[TrackMap()],
        verbose=0,
    )
    return model, curve


def plot_curves(curves, path):
    from matplotlib import pyplot

    figure, axis = pyplot.subplots(figsize=(5, 3.4))
    for attention, curve in curves.items():
        steps, values = zip(*curve, strict=True)
        axis.plot(steps, values, marker="o", label=attention)
    axis.set_xlabel("training step")
    axis.set_ylabel("mAP@0.5 (validation)")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    _save(figure, path)


def plot_predictions(images, detections, truth, class_names, fmt, path, count=8):
    """Validation images with true (white, dashed) and predicted boxes."""
    import keras_cv
    from matplotlib import patches, pyplot

    size = images.shape[1:3]
    as_xyxy = lambda boxes: keras.ops.convert_to_numpy(  # noqa: E731
        keras_cv.bounding_box.convert_format(
            boxes, source=fmt, target="xyxy", image_shape=(*size, 3)
        )
    )
    pred_boxes, true_boxes = as_xyxy(detections["boxes"][:count]), as_xyxy(truth["boxes"][:count])
    columns = 4
    figure, axes = pyplot.subplots(
        count // columns, columns, figsize=(2.2 * columns, 2.3 * (count // columns))
    )
    for index, axis in enumerate(axes.flat):
        axis.imshow(images[index].astype("uint8"))
        axis.axis("off")
        for box, label in zip(true_boxes[index], truth["classes"][index], strict=True):
            if label >= 0:
                axis.add_patch(_rectangle(patches, box, "white", "--"))
        for k in range(int(detections["num_detections"][index])):
            if detections["confidence"][index, k] < SCORE_SHOWN:
                continue
            box, label = pred_boxes[index, k], int(detections["classes"][index, k])
            axis.add_patch(_rectangle(patches, box, "yellow", "-"))
            axis.text(
                box[0], box[1] - 1, f"{class_names[label]} {detections['confidence'][index, k]:.2f}",
                color="black", fontsize=7, backgroundcolor="yellow",
            )  # fmt: skip
    figure.tight_layout()
    _save(figure, path)


def _rectangle(patches, box, colour, style):
    return patches.Rectangle(
        (box[0], box[1]), box[2] - box[0], box[3] - box[1],
        fill=False, edgecolor=colour, linestyle=style, linewidth=1.5,
    )  # fmt: skip


def _save(figure, path):
    from matplotlib import pyplot

    with atomic_path(path) as temporary:  # no half-written figure on a kill
        figure.savefig(temporary, dpi=100, format="png")
    pyplot.close(figure)


def main(argv=None):
    args = parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    os.makedirs(args.output, exist_ok=True)
    fmt = args.bounding_box_format
    kwargs = dict(image_size=args.image_size, digits=tuple(args.digits))
    train = cv.make_digit_canvases(args.train_images, seed=args.seed, **kwargs)
    val = cv.make_digit_canvases(args.val_images, seed=args.seed + 1, **kwargs)
    val_images, val_boxes = preprocess_input(val["images"]), cv.to_bounding_boxes(val, fmt)

    curves, models = {}, {}
    for attention in args.attention:
        models[attention], curves[attention] = train_one(
            args, attention, train, val_images, val_boxes
        )
    results = {
        "detector": args.detector,
        "backend": keras.backend.backend(),
        "steps": args.steps,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "map50": {a: {"start": c[0][1], "end": c[-1][1], "curve": c} for a, c in curves.items()},
    }
    with open(os.path.join(args.output, "results.json"), "w") as file:
        json.dump(results, file, indent=2)
    plot_curves(curves, os.path.join(args.output, "map_curve.png"))

    first = args.attention[0]
    model = models[first]
    detections = cv.predict_boxes(model, val_images[:8])
    names = [str(d) for d in args.digits]
    plot_predictions(
        val["images"],
        detections,
        val_boxes,
        names,
        fmt,
        os.path.join(args.output, "predictions.png"),
    )
    path = os.path.join(args.output, f"detector_{first}.keras")
    model.save(path)
    reloaded = keras_ba.load_model(path, safe_mode=True)  # what a fresh process would do
    same = all(
        np.array_equal(value, cv.predict_boxes(reloaded, val_images[:8])[key])
        for key, value in detections.items()
    )
    print(f"Reloaded {path}: identical decoded boxes: {same}")
    if args.export:
        target = os.path.join(args.output, "serving", str(int(time.time())))
        cv.export_detector(path, target)
        print(f"Exported {target} (signature serving_default: images -> boxes, classes, scores)")
    for attention, curve in curves.items():
        print(f"{attention:>5}: mAP@0.5 {curve[0][1]:.3f} -> {curve[-1][1]:.3f}")


if __name__ == "__main__":
    main()
