"""Parameter (and FLOP) table: the authors' official models vs keras_ba.

For every model in `reference/official_keys/*.json` (state dicts of the
authors' PyTorch code with 1000 classes), prints the authors' parameter
total (PyTorch `parameters()`, the papers' tables) beside the trainable
parameter count of the keras_ba model that loads it. With `--flops`, also
the multiply-accumulates per 224x224 image.

FLOP convention: like the papers (and the usual thop/ptflops tables), one
multiply-accumulate (MAC) counts as one "FLOP". Counted analytically from
the Keras layers (no profiler, any backend):
- `GMACs`: every conv (grouped and depthwise included) and every fully
  connected layer, the attention projections included.
- `+BN/ReLU`: the same plus ptflops-style extras: BatchNorm 2 per value,
  ReLU 1 per value, pooling (the attention's global pooling included) 1 per
  input value. This convention gives 4.12 G for a plain ResNet-50 (ptflops'
  published figure) and 4.13 G for the SE/BA ResNet-50s, the papers' number.
Swish, sigmoid, additions and the attention's products are not counted.

Usage:
    python benchmarks/param_table.py [--flops] [--reference DIR] [--only NAME ...]
"""

import argparse
import json
import math
import os
import pathlib
import time

import keras
from keras import layers

from keras_ba import applications
from keras_ba.layers import BridgeAttention, SqueezeExcite

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_REFERENCE = REPO_ROOT / "tests" / "fixtures"  # the copied reference data
PAPER_PARAMS = {  # values printed in the papers' tables (millions)
    "bav1_resnet50": 28.71,
    "se_resnet50": 28.07,
    "bav1_efficientnet_b0": 8.42,
    "bav1_resnext50": 28.85,
    "bav1_mobilenetv3_small": 2.79,  # the released code has fewer (README)
    "bav1_mobilenetv3_large": 6.03,
}
PAPER_GFLOPS = {"bav1_resnet50": 4.13, "bav2_resnet50": 4.13, "se_resnet50": 4.13}


def build(name, input_shape):
    """The keras_ba model that loads the official checkpoint `name`."""
    if name.startswith(("bav1_resnet", "bav2_resnet", "se_resnet")):
        attention, depth = name.split("_resnet")
        builder = getattr(applications, f"BAResNet{depth}")
        return builder(attention=attention, input_shape=input_shape)
    if name == "bav1_efficientnet_b0" and hasattr(applications, "BAEfficientNetB0"):
        return applications.BAEfficientNetB0(classes=1000, input_shape=input_shape)
    if name == "bav1_efficientnet_small":  # the parity fixture's reduced model
        return applications.BAEfficientNet(0.5, 0.5, 64, classes=10, input_shape=input_shape)
    others = {
        "bav1_resnext50": "BAResNeXt50_32x4d",
        "bav1_resnext101": "BAResNeXt101_32x4d",
        "bav1_mobilenetv3_small": "BAMobileNetV3Small",
        "bav1_mobilenetv3_large": "BAMobileNetV3Large",
    }
    if name in others and hasattr(applications, others[name]):
        return getattr(applications, others[name])(input_shape=input_shape)
    return None


def unused_params(state_dict):
    """Parameters of layers the authors create but never call: BA-ResNeXt's
    `gate{1..4}` (each block's `Gate` entry is the same shared tensor, which
    PyTorch's `parameters()` counts once)."""
    return sum(math.prod(shape) for key, shape in state_dict if key.startswith("gate"))


def trainable_params(model):
    return sum(math.prod(w.shape) for w in model.trainable_weights)


# === Multiply-accumulates ===


def layer_macs(layer):
    """Multiply-accumulates of one layer for one image (0 if not counted)."""
    if isinstance(layer, BridgeAttention):
        macs = sum(math.prod(d.kernel.shape) for d in layer.squeeze_layers)
        if layer.version == "v2":
            macs += math.prod(layer.selection.kernel.shape) * layer.squeeze_layers[0].units
        return macs + math.prod(layer.excitation.kernel.shape)
    if isinstance(layer, SqueezeExcite):
        return math.prod(layer.squeeze.kernel.shape) + math.prod(layer.excitation.kernel.shape)
    if isinstance(layer, (layers.Conv2D, layers.DepthwiseConv2D, layers.Dense)):
        # kernel volume (one output value) x number of output positions
        kernel = layer.kernel.shape
        per_output = (
            math.prod(kernel[:-1])
            if not isinstance(layer, layers.DepthwiseConv2D)
            else math.prod(kernel[:2])
        )
        return per_output * math.prod(layer.output.shape[1:])
    return 0


def extra_ops(layer):
    """ptflops-style extras: BatchNorm (2 per value), ReLU, pooling inputs."""
    if isinstance(layer, layers.BatchNormalization):
        return 2 * math.prod(layer.output.shape[1:])
    if isinstance(layer, layers.ReLU):
        return math.prod(layer.output.shape[1:])
    if isinstance(layer, (layers.MaxPooling2D, layers.GlobalAveragePooling2D)):
        return math.prod(layer.input.shape[1:])
    if isinstance(layer, (BridgeAttention, SqueezeExcite)):
        inputs = layer.input if isinstance(layer.input, list) else [layer.input]
        if isinstance(layer, SqueezeExcite):
            inputs = inputs[-1:]
        pooled = sum(math.prod(x.shape[1:]) for x in inputs)
        width = layer.excitation.kernel.shape[0]
        norms = 0
        if isinstance(layer, BridgeAttention):
            norms = len(layer.squeeze_norms) if layer.version == "v1" else 1
        return pooled + 2 * width * norms + width  # GAP, BatchNorm1d, ReLU
    return 0


def model_macs(model, extended=False):
    total = sum(layer_macs(layer) for layer in model.layers)
    if extended:
        total += sum(extra_ops(layer) for layer in model.layers)
    return total


# === Table ===


def rows(reference_dir, names, flops):
    for name in names:
        with open(reference_dir / "official_keys" / f"{name}.json") as file:
            reference = json.load(file)
        official = reference["total_params"]
        unused = unused_params(reference["state_dict"])
        start = time.perf_counter()
        # Shapes are all that is counted: skip the random initialisation.
        with keras.StatelessScope(initialize_variables=False):
            model = build(name, (224, 224, 3) if flops else None)
        ours = trainable_params(model) if model is not None else None
        gmacs = None
        if model is not None and flops:
            gmacs = (model_macs(model) / 1e9, model_macs(model, extended=True) / 1e9)
        yield name, official, ours, unused, gmacs, time.perf_counter() - start
        keras.backend.clear_session()


def _equal(official, ours, unused):
    if ours is None:
        return "-"
    if ours == official:
        return "yes"
    if unused and ours + unused == official:
        return "yes+gates"  # equal once the authors' unused gate layers are added
    return f"{ours - official:+,}"


def format_row(name, official, ours, unused, gmacs, flops):
    paper = PAPER_PARAMS.get(name)
    cells = [
        f"{name:<23}",
        f"{official:>13,}",
        f"{'-' if paper is None else f'{paper:.2f}M':>7}",
        f"{'n/a' if ours is None else f'{ours:,}':>12}",
        f"{_equal(official, ours, unused):>9}",
    ]
    if flops:
        paper_flops = PAPER_GFLOPS.get(name)
        cells.append(f"{'n/a' if gmacs is None else f'{gmacs[0]:.3f}':>8}")
        cells.append(f"{'n/a' if gmacs is None else f'{gmacs[1]:.3f}':>9}")
        cells.append(f"{'-' if paper_flops is None else f'{paper_flops:.2f}':>6}")
    return " | ".join(cells)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flops", action="store_true", help="also count MACs at 224x224")
    parser.add_argument("--reference", type=pathlib.Path, default=DEFAULT_REFERENCE)
    parser.add_argument("--only", nargs="+", help="official model names to include")
    args = parser.parse_args(argv)
    names = sorted(p.stem for p in (args.reference / "official_keys").glob("*.json"))
    if args.only:
        names = [n for n in names if n in args.only]
    header = ["model", "authors' code", "paper", "keras_ba", "equal"]
    if args.flops:
        header += ["GMACs", "+BN/ReLU", "paper"]
    print(
        f"keras {keras.__version__}, backend {keras.backend.backend()}; "
        "params = trainable weights (PyTorch parameters()), 1000 classes "
        "(bav1_efficientnet_small: 10)"
    )
    widths = [23, 13, 7, 12, 9, 8, 9, 6]
    print(
        " | ".join(
            f"{h:<{w}}" if i == 0 else f"{h:>{w}}"
            for i, (h, w) in enumerate(zip(header, widths[: len(header)], strict=True))
        )
    )
    print("-+-".join("-" * w for w in widths[: len(header)]))
    for name, official, ours, unused, gmacs, _ in rows(args.reference, names, args.flops):
        print(format_row(name, official, ours, unused, gmacs, args.flops), flush=True)
    print(
        "yes+gates: keras_ba's count plus the gate layers the authors' BA_resnext.py "
        "creates but never calls (skipped by the converter) equals their total."
    )
    if args.flops:
        print(
            "GMACs: multiply-accumulates per 224x224 image of convs and dense layers "
            "(attention included); the papers call MACs FLOPs.\n+BN/ReLU: the same "
            "plus ptflops-style extras (BatchNorm 2 per value, ReLU 1, pooling 1 per "
            "input value), the convention that gives 4.12 G for a plain ResNet-50 "
            "(ptflops' figure) and the papers' 4.13 G here."
        )


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    main()
