"""Where a BA-ResNet train step spends its time under the PyTorch backend.

Profiles (`torch.profiler`, CPU) train steps of keras_ba's BAv1 ResNet in
both layouts and of the plain-PyTorch yardstick with the same weights
(`benchmarks/torch_reference.py`), and prints per operator group the CPU
time of the operators themselves (self time) beside the step's wall time:
what keras_ba adds over plain PyTorch, and whether it is arithmetic,
layout copies or the Python between operators ("outside operators": wall
time minus the operators' self time, profiler overhead included).

Usage (from a clone):
    KERAS_BACKEND=torch python -m benchmarks.torch_profile --size 224 --steps 3

Example (a tiny trunk, seconds):
    KERAS_BACKEND=torch python -m benchmarks.torch_profile --family resnet-tiny --size 32
"""

import argparse
import collections
import os
import time

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import models  # noqa: E402

GROUPS = (
    ("convolution", ("conv", "mkldnn")),
    ("batch norm", ("batch_norm",)),
    ("layout copies", ("permute", "copy_", "contiguous", "transpose", "clone")),
    ("pooling, mean, sum", ("pool", "mean", "sum")),
    ("optimizer", ("_foreach", "sgd", "addcmul", "lerp")),
    ("elementwise", ("add", "mul", "sub", "div", "sqrt", "relu", "sigmoid", "square", "neg")),
)


def group_of(name):
    """The operator group of an aten operator name.

    Example:
    >>> group_of("aten::convolution_backward"), group_of("aten::fill_")
    ('convolution', 'other operators')
    """
    for group, parts in GROUPS:
        if any(part in name for part in parts):
            return group
    return "other operators"


def profile(step, steps):
    """Median wall ms of `step()` and the operators' self CPU ms per group (per step)."""
    import torch

    step()  # warm-up
    walls = []
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            start = time.perf_counter()
            step()
            walls.append(1000 * (time.perf_counter() - start))
    groups = collections.Counter()
    for event in prof.key_averages():
        if event.key.startswith("aten::"):
            groups[group_of(event.key)] += event.self_cpu_time_total / 1000 / steps
    return float(np.median(walls)), groups


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", default="resnet50", choices=["resnet50", "resnet-tiny"])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args(argv)
    if keras.backend.backend() != "torch":
        parser.error("run with KERAS_BACKEND=torch")
    import torch

    from benchmarks.torch_reference import TorchRunner, calibrate_batchnorm, numpy_state_dict
    from keras_ba.convert import load_torch_weights

    family = models.FAMILIES[args.family]
    images, labels = models.make_batch(args.batch, args.size, 1000)
    net = models.build_torch(family, models.parse_variant("torch-bav1"), 1000)
    calibrate_batchnorm(net, torch.from_numpy(images.transpose(0, 3, 1, 2).copy()))
    runner = TorchRunner(net, images, labels, device="cpu")
    rows = {"plain PyTorch": profile(runner.train_step, args.steps)}
    for variant in ("bav1:cf", "bav1"):
        spec = models.parse_variant(variant)
        model = models.build_keras(family, spec, args.size, 1000)
        load_torch_weights(model, numpy_state_dict(net))
        models.compile_keras(model, "auto")
        x, y = models.keras_inputs(spec, images, labels)
        name = f"keras_ba {spec.data_format}"
        rows[name] = profile(lambda m=model, x=x, y=y: m.train_on_batch(x, y), args.steps)
    group_names = [g for g, _ in GROUPS] + ["other operators"]
    print(
        f"{args.family}, {args.size} px, batch {args.batch}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; ms per train step (operators: self CPU time)\n"
    )
    print("| | wall | " + " | ".join(group_names) + " | all operators | outside operators |")
    print("|---" * (len(group_names) + 4) + "|")
    for name, (wall, groups) in rows.items():
        cells = [f"{groups.get(g, 0.0):.0f}" for g in group_names]
        inside = sum(groups.values())
        print(
            f"| {name} | {wall:.0f} | "
            + " | ".join(cells)
            + f" | {inside:.0f} | {wall - inside:.0f} |"
        )


if __name__ == "__main__":
    main()
