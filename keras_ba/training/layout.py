"""The activation layout a training run computes in, and its portable copy.

Keras stores a convolution's kernel the same way in both layouts, so a model
can train in one layout and be saved in the other with the same weights.
Under PyTorch every channels_last convolution transposes its input to
PyTorch's NCHW and back. Measured at 224 px, batch 8, on a 2-core CPU
(`python -m benchmarks.speed --torch-reference`, README "Speed"): a BAv1
ResNet-50 train step took 0.93x the time in channels_first (inference
0.83x), a BAv1 EfficientNet-B0 train step 1.08x. `keras-ba train
--data-format auto` therefore computes BA-ResNets in channels_first under
PyTorch, with the images transposed once at the model's input, and
everything else in channels_last. The saved models are channels_last,
which every backend runs (TensorFlow has no channels_first convolution on
CPU).
"""

import keras

from keras_ba.applications import registry
from keras_ba.options import DATA_FORMATS

TRANSPOSE_NAME = "to_channels_first"


def resolve_data_format(setting="auto", model_name="", backend=None, has_gpu=None):
    """The layout `setting` means for the model `model_name` on `backend`.

    Args:
        setting: `"auto"` (channels_first under PyTorch for the models whose
            row in the table of named models says `channels_first`, i.e.
            measured faster; channels_last otherwise), `"channels_last"` or `"channels_first"`.
        model_name: the model's registered name, e.g. `"ba_resnet50"`.
        backend: a Keras backend name (default: the current one).
        has_gpu: whether TensorFlow sees a GPU (asked when needed).

    Raises:
        ValueError: an unknown setting, or channels_first under TensorFlow
            without a GPU (TensorFlow has no channels_first convolution on
            CPU).

    Example:
    >>> resolve_data_format("auto", "ba_resnet50", backend="torch")
    'channels_first'
    >>> resolve_data_format("auto", "ba_efficientnet_b0", backend="torch")
    'channels_last'
    >>> resolve_data_format("auto", "ba_resnet50", backend="jax")
    'channels_last'
    """
    if setting not in DATA_FORMATS:
        raise ValueError(f"`data_format` must be one of {DATA_FORMATS}. Received: {setting!r}.")
    backend = backend or keras.backend.backend()
    if setting == "auto":
        entry = registry.MODELS.get(model_name)
        faster = backend == "torch" and entry is not None and entry.channels_first
        return "channels_first" if faster else "channels_last"
    if setting == "channels_first" and backend == "tensorflow":
        if has_gpu is None:
            import tensorflow as tf

            has_gpu = bool(tf.config.list_physical_devices("GPU"))
        if not has_gpu:
            raise ValueError(
                "`data_format='channels_first'` needs a GPU under TensorFlow (its CPU "
                "convolutions are channels_last only): use 'channels_last' or 'auto'."
            )
    return setting


def channels_first_input(image_size, name="images"):
    """An NHWC image input and the NCHW tensor the network starts from.

    Returns:
        `(images, transposed)`: the `keras.Input` of shape
        `(image_size, image_size, 3)` and its transpose `(3, size, size)`.

    Example:
    >>> images, transposed = channels_first_input(32)
    >>> tuple(images.shape), tuple(transposed.shape)
    ((None, 32, 32, 3), (None, 3, 32, 32))
    """
    images = keras.Input((image_size, image_size, 3), name=name)
    transposed = keras.layers.Permute((3, 1, 2), name=TRANSPOSE_NAME)(images)
    return images, transposed


def channels_last_copy(model, build):
    """`model`'s network in channels_last, with its weights and optimizer state.

    Args:
        model: a model built by `build("channels_first")` (compiled or not).
        build: `build(data_format)` returns the same network in that layout
            (same layer names and weights, without the input transpose).

    Returns:
        The channels_last model; compiled as `model` is, its optimizer
        holding the same state, so that `save` writes what `model.save`
        would, in the layout every backend runs.

    Example:
        copy = channels_last_copy(model, lambda fmt: spec.build(10, 32, data_format=fmt))
        copy.save("model.keras")
    """
    copy = build("channels_last")
    for layer in model.layers:
        if layer.weights and layer.name != TRANSPOSE_NAME:
            copy.get_layer(layer.name).set_weights(layer.get_weights())
    if not model.compiled or model.optimizer is None or not model.optimizer.built:
        return copy
    copy.compile_from_config(model.get_compile_config())
    optimizer = copy.optimizer
    optimizer.build(copy.trainable_variables)
    sources = model.optimizer.variables
    if len(sources) != len(optimizer.variables):
        raise ValueError(
            f"The optimizer of {model.name!r} holds {len(sources)} variables, its "
            f"channels_last copy {len(optimizer.variables)}."
        )
    for target, source in zip(optimizer.variables, sources, strict=True):
        target.assign(source)
    return copy
