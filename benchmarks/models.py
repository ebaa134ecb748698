"""The models the speed benchmark compares: families, variants, builders.

A *family* is a backbone (`resnet50`, `efficientnetb0`, tiny ones for smoke
tests); a *variant* is one model of it:

| variant | model |
|---|---|
| `keras` | `keras.applications` plain model (ResNet50, EfficientNetB0) |
| `none`, `se`, `bav1`, `bav2` | keras_ba with that `attention` (`none`: no attention) |
| `torch-bav1`, `torch-se`, `torch-none` | the plain-PyTorch yardstick (`benchmarks.torch_reference`; ResNet families) |

A suffix picks the layout of the activations: `bav1:cf` is keras_ba built
with `data_format="channels_first"` (inputs transposed once, before timing),
`torch-bav1:cl` is the PyTorch network in `torch.channels_last` memory format.
Without a suffix Keras models are channels_last and PyTorch ones NCHW
(channels_first), each framework's default.

Every Keras model returns logits (`classifier_activation=None`) and is
trained with SGD (momentum 0.9) on `SparseCategoricalCrossentropy(from_logits=True)`,
the loss the PyTorch yardstick uses too.

Example:
>>> spec = parse_variant("bav1:cf")
>>> spec.name, spec.attention, spec.data_format, spec.framework
('bav1:cf', 'bav1', 'channels_first', 'keras_ba')
"""

import dataclasses

import numpy as np

LEARNING_RATE = 1e-3
KERAS_VARIANTS = ("keras", "none", "se", "bav1", "bav2")
TORCH_VARIANTS = ("torch-none", "torch-se", "torch-bav1")
SUFFIXES = {"cf": "channels_first", "cl": "channels_last"}


@dataclasses.dataclass(frozen=True)
class Family:
    """A backbone and how to build each of its variants.

    Attributes:
        name: the family name used on the command line.
        title: a human-readable name for tables.
        keras_app: name of the `keras.applications` builder, or None.
        keras_ba: name of the `keras_ba.applications` builder.
        keras_ba_kwargs: fixed extra arguments of that builder (tiny trunks).
        torch_kwargs: `TorchBAResNet` arguments of the same trunk, or None
            when there is no PyTorch yardstick for the family.
        min_size: smallest input side the models accept.
    """

    name: str
    title: str
    keras_app: str | None
    keras_ba: str
    keras_ba_kwargs: dict = dataclasses.field(default_factory=dict)
    torch_kwargs: dict | None = None
    min_size: int = 32


_TINY_RESNET = dict(depths=(1, 1), widths=(8, 16), stem_filters=8)

FAMILIES = {
    "resnet50": Family(
        "resnet50",
        "ResNet-50",
        "ResNet50",
        "BAResNet50",
        torch_kwargs=dict(depths=(3, 4, 6, 3), widths=(64, 128, 256, 512)),
    ),
    "efficientnetb0": Family(
        "efficientnetb0", "EfficientNet-B0", "EfficientNetB0", "BAEfficientNetB0"
    ),
    # Smoke-test sized: two stages of one bottleneck (widths 8, 16), small graphs to compile.
    "resnet-tiny": Family(
        "resnet-tiny",
        "tiny BA-ResNet (2 stages of 1 bottleneck, widths 8 and 16)",
        None,
        "BAResNet",
        keras_ba_kwargs=dict(
            stackwise_num_blocks=list(_TINY_RESNET["depths"]),
            stackwise_num_filters=list(_TINY_RESNET["widths"]),
            stem_filters=_TINY_RESNET["stem_filters"],
        ),
        torch_kwargs=_TINY_RESNET,
    ),
    # BA-RegNetY (benchmarks/regnet_speed.py): timm's RegNet-Y trunk, no keras.applications twin.
    "regnety040": Family("regnety040", "RegNetY-4.0GF", None, "BARegNetY040"),
    "regnety-tiny": Family(
        "regnety-tiny",
        "tiny BA-RegNetY (2 stages of 1 Y block, widths 16 and 24)",
        None,
        "BARegNetY",
        keras_ba_kwargs=dict(
            stackwise_num_blocks=[1, 1],
            stackwise_num_filters=[16, 24],
            stackwise_group_width=[8, 8],
            stem_filters=8,
        ),
        min_size=8,
    ),
    # BA-Swin (benchmarks/swin_speed.py): the official Swin-T trunk, fixed 224 px input.
    "swin-t": Family("swin-t", "Swin-T", None, "BASwinTransformerTiny", min_size=224),
    "swin-tiny": Family(
        "swin-tiny",
        "tiny BA-Swin (2 stages of 1 block, widths 16 and 32, window 2)",
        None,
        "BASwinTransformerClassifier",
        keras_ba_kwargs=dict(embed_dim=16, depths=[1, 1], num_heads=[2, 2], window_size=2),
    ),
}


@dataclasses.dataclass(frozen=True)
class VariantSpec:
    """A parsed variant name (see the module docstring).

    Attributes:
        name: the name as given, e.g. `"bav1:cf"`.
        framework: `"keras"` (keras.applications), `"keras_ba"` or `"torch"`.
        attention: `"bav1"`, `"bav2"`, `"se"` or None.
        data_format: layout of the activations, `"channels_last"` or
            `"channels_first"`.
    """

    name: str
    framework: str
    attention: str | None
    data_format: str


def parse_variant(name):
    """Parses `"bav1"`, `"keras:cf"`, `"torch-bav1:cl"`... into a `VariantSpec`.

    Raises:
        ValueError: for an unknown variant or suffix.

    Example:
    >>> parse_variant("torch-bav1")
    VariantSpec(name='torch-bav1', framework='torch', attention='bav1', data_format='channels_first')
    """
    base, _, suffix = name.partition(":")
    if base not in KERAS_VARIANTS + TORCH_VARIANTS:
        raise ValueError(
            f"unknown variant {name!r}: expected one of {', '.join(KERAS_VARIANTS + TORCH_VARIANTS)}, "
            "optionally with the suffix :cf (channels_first) or :cl (channels_last)"
        )
    if suffix and suffix not in SUFFIXES:
        raise ValueError(f"unknown suffix in variant {name!r}: expected :cf or :cl")
    framework = (
        "torch" if base.startswith("torch-") else ("keras" if base == "keras" else "keras_ba")
    )
    attention = base.removeprefix("torch-")
    attention = None if attention in ("none", "keras") else attention
    default = "channels_first" if framework == "torch" else "channels_last"
    return VariantSpec(name, framework, attention, SUFFIXES.get(suffix, default))


def check_variant(family, spec):
    """Raises ValueError when `family` has no model for `spec`."""
    if spec.framework == "keras" and family.keras_app is None:
        raise ValueError(
            f"family {family.name!r} has no keras.applications model (variant {spec.name!r})"
        )
    if spec.framework == "torch" and family.torch_kwargs is None:
        raise ValueError(
            f"family {family.name!r} has no plain-PyTorch yardstick (variant {spec.name!r})"
        )


def input_shape(spec, size):
    """The model's input shape for a square `size` image."""
    return (size, size, 3) if spec.data_format == "channels_last" else (3, size, size)


def make_batch(batch, size, classes, seed=0):
    """A fixed random NHWC float32 batch and integer labels."""
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(batch, size, size, 3)).astype("float32")
    labels = rng.integers(0, classes, size=(batch,)).astype("int32")
    return images, labels


def build_keras(family, spec, size, classes):
    """Builds the Keras model of `spec` (uncompiled) under the current dtype policy.

    `keras.applications` models read the global image data format, so it is
    set for the duration of the build and restored.
    """
    import keras

    check_variant(family, spec)
    shape = input_shape(spec, size)
    if spec.framework == "keras":
        previous = keras.config.image_data_format()
        keras.config.set_image_data_format(spec.data_format)
        try:
            builder = getattr(keras.applications, family.keras_app)
            return builder(
                weights=None, classes=classes, input_shape=shape, classifier_activation=None
            )
        finally:
            keras.config.set_image_data_format(previous)
    from keras_ba import applications

    builder = getattr(applications, family.keras_ba)
    return builder(
        attention=spec.attention,
        weights=None,
        classes=classes,
        input_shape=shape,
        classifier_activation=None,
        data_format=spec.data_format,
        **family.keras_ba_kwargs,
    )


def compile_keras(model, jit_compile):
    """Compiles with the benchmark's optimizer and loss; returns the resolved `jit_compile`."""
    import keras

    model.compile(
        optimizer=keras.optimizers.SGD(LEARNING_RATE, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit_compile,
    )
    return model.jit_compile


def build_torch(family, spec, classes):
    """Builds the plain-PyTorch yardstick of `spec` (random initialisation)."""
    from benchmarks.torch_reference import TorchBAResNet

    check_variant(family, spec)
    return TorchBAResNet(classes=classes, attention=spec.attention, **family.torch_kwargs)


def keras_inputs(spec, images, labels):
    """Backend tensors of the batch in the model's layout (transposed once)."""
    import keras

    if spec.data_format == "channels_first":
        images = np.ascontiguousarray(images.transpose(0, 3, 1, 2))
    return keras.ops.convert_to_tensor(images), keras.ops.convert_to_tensor(labels)


def count_params(model):
    """Trainable parameters (PyTorch's `parameters()` convention) of a Keras or torch model."""
    if hasattr(model, "trainable_weights"):
        return int(sum(np.prod(w.shape) for w in model.trainable_weights))
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))
