"""Segment digits with a BA backbone: keras-cv DeepLabV3+, trained end to end.

Trains DeepLabV3+ on a small BA-ResNet with Bridge Attention,
squeeze-and-excitation and no attention (same seed, same data, same steps)
on the generated digits task (`keras_ba.cv.make_digit_canvases`: one class
per digit plus background), tracks the validation mean IoU
(`keras.metrics.MeanIoU`) against the all-background baseline, and writes to
`--output`: the curves (`miou_curve.png`), predicted masks of the first
attention's model (`predictions.png`), the numbers (`results.json`) and that
model (`segmenter_<attention>.keras`).

    KERAS_BACKEND=tensorflow python examples/segmentation.py
    python examples/segmentation.py --attention bav1 --steps 100
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


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--attention", nargs="+", default=["bav1", "se", "none"])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--digits", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    parser.add_argument("--train-images", type=int, default=2000)
    parser.add_argument("--val-images", type=int, default=200)
    parser.add_argument("--widths", type=int, nargs=4, default=[16, 32, 64, 128])
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="runs/segmentation")
    return parser.parse_args(argv)


def build(args, attention, num_classes):
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
    model = cv.build_deeplab_v3_plus(trunk, num_classes, dilation_rates=(1, 2, 3))
    model.compile(
        optimizer=keras.optimizers.Adam(args.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=[keras.metrics.MeanIoU(num_classes, sparse_y_pred=False, name="mean_iou")],
    )
    return model


def train_one(args, attention, train, val_images, val_masks, num_classes):
    model = build(args, attention, num_classes)
    ds = cv.segmentation_dataset(
        train["images"],
        train["masks"],
        batch_size=args.batch_size,
        flip=True,
        shuffle=True,
        seed=args.seed,
    )
    curve = [(0, cv.evaluate_mean_iou(model, val_images, val_masks, num_classes))]
    start = time.time()

    class TrackIoU(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            curve.append(
                (
                    (epoch + 1) * args.eval_every,
                    cv.evaluate_mean_iou(model, val_images, val_masks, num_classes),
                )
            )
            print(
                f"[{attention}] step {curve[-1][0]}: mean IoU {curve[-1][1]:.3f} ({time.time() - start:.0f} s)",
                flush=True,
            )

    model.fit(
        ds.repeat(),
        steps_per_epoch=args.eval_every,
        epochs=args.steps // args.eval_every,
        callbacks=[TrackIoU()],
        verbose=0,
    )
    return model, curve


def plot_curves(curves, baseline, path):
    from matplotlib import pyplot

    figure, axis = pyplot.subplots(figsize=(5, 3.4))
    for attention, curve in curves.items():
        steps, values = zip(*curve, strict=True)
        axis.plot(steps, values, marker="o", label=attention)
    axis.axhline(baseline, color="grey", linestyle="--", label="all background")
    axis.set_xlabel("training step")
    axis.set_ylabel("mean IoU (validation)")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    _save(figure, path)


def plot_masks(images, truth, predicted, num_classes, path, count=4):
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(3, count, figsize=(2.2 * count, 6.6))
    for index in range(count):
        for row, (picture, title) in enumerate(
            (
                (images[index].astype("uint8"), "image"),
                (truth[index], "true"),
                (predicted[index], "predicted"),
            )
        ):
            axis = axes[row, index]
            axis.imshow(
                picture, cmap=None if row == 0 else "tab20", vmin=0, vmax=max(num_classes - 1, 1)
            )
            axis.set_title(title, fontsize=8)
            axis.axis("off")
    figure.tight_layout()
    _save(figure, path)


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
    kwargs = dict(image_size=args.image_size, digits=tuple(args.digits))
    train = cv.make_digit_canvases(args.train_images, seed=args.seed, **kwargs)
    val = cv.make_digit_canvases(args.val_images, seed=args.seed + 1, **kwargs)
    num_classes = len(args.digits) + 1
    val_images = preprocess_input(val["images"])
    baseline = cv.background_mean_iou(val["masks"], num_classes)
    print(f"All-background baseline mean IoU: {baseline:.3f}")

    curves, models = {}, {}
    for attention in args.attention:
        models[attention], curves[attention] = train_one(
            args, attention, train, val_images, val["masks"], num_classes
        )
    results = {
        "backend": keras.backend.backend(),
        "steps": args.steps,
        "baseline_mean_iou": baseline,
        "mean_iou": {a: {"start": c[0][1], "end": c[-1][1], "curve": c} for a, c in curves.items()},
    }
    with open(os.path.join(args.output, "results.json"), "w") as file:
        json.dump(results, file, indent=2)
    plot_curves(curves, baseline, os.path.join(args.output, "miou_curve.png"))

    first = args.attention[0]
    model = models[first]
    scores = model.predict(val_images[:4], verbose=0)
    plot_masks(
        val["images"],
        val["masks"],
        np.argmax(scores, -1),
        num_classes,
        os.path.join(args.output, "predictions.png"),
    )
    path = os.path.join(args.output, f"segmenter_{first}.keras")
    model.save(path)
    reloaded = keras_ba.load_model(path, safe_mode=True)  # what a fresh process would do
    same = np.array_equal(scores, reloaded.predict(val_images[:4], verbose=0))
    print(f"Reloaded {path}: identical predictions: {same}")
    for attention, curve in curves.items():
        print(
            f"{attention:>5}: mean IoU {curve[0][1]:.3f} -> {curve[-1][1]:.3f} (baseline {baseline:.3f})"
        )


if __name__ == "__main__":
    main()
