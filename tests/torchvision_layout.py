"""torchvision's ResNet/ResNeXt state-dict layout, written for the tests.

torchvision is not installable here; `torchvision_resnet` lists the keys and
shapes of `torchvision.models.resnet.ResNet(...).state_dict()` from that
class's definition (timm's ResNets use the same keys) and fills them with
random values. `expected_keras_value` says where each key must land in a
keras_ba ResNet, by name and transpose, independently of `keras_ba.convert`.
"""

import numpy as np


def torchvision_resnet(depths, block, widths=(64, 128, 256, 512), stem=64, groups=1,
                       width_per_group=64, classes=1000, seed=0):  # fmt: skip
    """`torchvision.models.resnet.ResNet(...).state_dict()` with random values."""
    shapes = {}

    def conv(name, out, inp, k):
        shapes[f"{name}.weight"] = (out, inp, k, k)

    def bn(name, c):
        for part in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{name}.{part}"] = (c,)
        shapes[f"{name}.num_batches_tracked"] = ()

    conv("conv1", stem, 3, 7)
    bn("bn1", stem)
    inplanes, expansion = stem, 4 if block == "bottleneck" else 1
    for stage, (blocks, planes) in enumerate(zip(depths, widths, strict=True), start=1):
        for index in range(blocks):
            prefix = f"layer{stage}.{index}"
            if block == "bottleneck":
                width = int(planes * width_per_group / 64) * groups
                convs = [(width, inplanes, 1), (width, width // groups, 3), (planes * 4, width, 1)]
            else:
                convs = [(planes, inplanes, 3), (planes, planes, 3)]
            for k, (out, inp, size) in enumerate(convs, start=1):
                conv(f"{prefix}.conv{k}", out, inp, size)
                bn(f"{prefix}.bn{k}", out)
            stride = 2 if index == 0 and stage > 1 else 1
            if index == 0 and (stride != 1 or inplanes != planes * expansion):
                conv(f"{prefix}.downsample.0", planes * expansion, inplanes, 1)
                bn(f"{prefix}.downsample.1", planes * expansion)
            inplanes = planes * expansion
    shapes["fc.weight"] = (classes, inplanes)
    shapes["fc.bias"] = (classes,)
    rng = np.random.default_rng(seed)
    state = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            state[key] = np.array(10, dtype="int64")
        elif key.endswith("running_var"):
            state[key] = rng.uniform(0.5, 1.5, shape).astype("float32")
        else:
            state[key] = rng.standard_normal(shape).astype("float32")
    return state


_BN = {
    "weight": "gamma",
    "bias": "beta",
    "running_mean": "moving_mean",
    "running_var": "moving_variance",
}


def expected_keras_value(key, value):
    """`(keras layer name, attribute, array)` for a torchvision ResNet key."""
    module, part = key.rsplit(".", 1)
    parts = module.split(".")
    if module in ("conv1", "bn1"):
        layer = "conv1_conv" if module == "conv1" else "conv1_bn"
    elif module == "fc":
        return "predictions", "kernel" if part == "weight" else "bias", value.T
    else:
        stage, index = int(parts[0][len("layer") :]) + 1, int(parts[1]) + 1
        name = parts[2]
        if name == "downsample":
            name = "0_conv" if parts[3] == "0" else "0_bn"
        else:
            name = f"{name[-1]}_{name[:-1]}"  # conv2 -> 2_conv, bn2 -> 2_bn
        layer = f"conv{stage}_block{index}_{name}"
    if layer.endswith("conv"):
        return layer, "kernel", value.transpose(2, 3, 1, 0)
    return layer, _BN[part], value
