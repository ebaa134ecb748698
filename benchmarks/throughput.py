"""Training and inference throughput of BA vs SE vs plain ResNets.

The BAv1 paper (Table 3, ResNet-50 on a GPU) reports BA at 0.93x SE's training
speed and 0.97x its inference speed. This script measures the same ratios on
the current backend and device and prints a table.

Usage:
    KERAS_BACKEND=jax python benchmarks/throughput.py --depth 50 --size 128 --batch 16
"""

import argparse
import time

import keras
import numpy as np

from keras_ba.applications import get_model_builder


def measure(model, images, labels, steps, train):
    """Images per second over `steps` batches, after one warm-up batch."""
    if train:
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
        model.train_on_batch(images, labels)
        start = time.perf_counter()
        for _ in range(steps):
            model.train_on_batch(images, labels)
    else:
        model.predict_on_batch(images)
        start = time.perf_counter()
        for _ in range(steps):
            model.predict_on_batch(images)
    return steps * len(images) / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=50, choices=[18, 34, 50, 101, 152])
    parser.add_argument("--size", type=int, default=128, help="image side in pixels")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--attention", nargs="+", default=["se", "bav1", "bav2", "none"])
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    images = rng.normal(size=(args.batch, args.size, args.size, 3)).astype("float32")
    labels = rng.integers(0, 1000, size=(args.batch,))
    builder = get_model_builder(f"ba_resnet{args.depth}")
    rows = []
    for name in args.attention:
        keras.backend.clear_session()
        attention = None if name == "none" else name
        model = builder(attention=attention, input_shape=(args.size, args.size, 3))
        train = measure(model, images, labels, args.steps, train=True)
        infer = measure(model, images, labels, args.steps, train=False)
        rows.append((name, model.count_params(), train, infer))
        print(f"  measured {name}", flush=True)

    base = {name: (train, infer) for name, _, train, infer in rows}.get("se")
    print(
        f"\nResNet-{args.depth}, {args.size}x{args.size}, batch {args.batch}, "
        f"backend {keras.backend.backend()}, {args.steps} steps"
    )
    print(f"{'attention':<10}{'params':>14}{'train img/s':>14}{'infer img/s':>14}"
          f"{'train vs SE':>13}{'infer vs SE':>13}")
    for name, params, train, infer in rows:
        ratio_train = f"{train / base[0]:.2f}x" if base else "-"
        ratio_infer = f"{infer / base[1]:.2f}x" if base else "-"
        print(f"{name:<10}{params:>14,}{train:>14.1f}{infer:>14.1f}{ratio_train:>13}{ratio_infer:>13}")
    print("paper (BAv1 vs SE, ResNet-50, GPU): train 0.93x, inference 0.97x")


if __name__ == "__main__":
    main()
