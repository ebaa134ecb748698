"""A tiny functional model with attention layers, for docstring examples and tests.

It depends only on `keras_ba.layers`, so examples stay valid whatever the
application builders look like.

Example:
>>> tiny_model("bav1").get_layer("conv3_block1_ba").version
'v1'
"""

import keras
from keras import layers

from keras_ba.layers import BridgeAttention, SqueezeExcite


def tiny_model(attention="bav1", input_shape=(16, 16, 3), classes=3, width=8, seed=0):
    """Two residual-free blocks of two convs each, with attention, and a softmax head.

    Args:
        attention: `"bav1"`, `"bav2"`, `"se"` or `"none"`.
        input_shape: input shape (channels last).
        classes: number of output classes.
        width: channels of the first block (the second has twice as many).
        seed: seed of the initializers.

    Returns:
        A functional `keras.Model` named `tiny_<attention>`; attention
        layers `conv2_block1_<ba|se>` (full resolution) and
        `conv3_block1_<ba|se>` (half resolution).

    Example:
    >>> [layer.name for layer in tiny_model("se").layers if "se" in layer.name]
    ['conv2_block1_se', 'conv3_block1_se']
    """
    init = keras.initializers.HeNormal(seed=seed)
    inputs = keras.Input(input_shape, name="images")
    x = inputs
    for stage, (filters, stride) in enumerate([(width, 1), (2 * width, 2)], start=2):
        prefix = f"conv{stage}_block1"
        first = layers.Conv2D(
            filters,
            3,
            strides=stride,
            padding="same",
            kernel_initializer=init,
            name=f"{prefix}_1_conv",
        )(x)
        first = layers.Activation("relu", name=f"{prefix}_1_relu")(first)
        second = layers.Conv2D(
            filters, 3, padding="same", kernel_initializer=init, name=f"{prefix}_2_conv"
        )(first)
        if attention in ("bav1", "bav2"):
            second = BridgeAttention(version=attention[2:], reduction=2, name=f"{prefix}_ba")(
                [first, second]
            )
        elif attention == "se":
            second = SqueezeExcite(reduction=2, name=f"{prefix}_se")([first, second])
        elif attention != "none":
            raise ValueError(f"Unknown attention {attention!r}.")
        x = layers.Activation("relu", name=f"{prefix}_out")(second)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = layers.Dense(
        classes, activation="softmax", kernel_initializer=init, name="predictions"
    )(x)
    return keras.Model(inputs, outputs, name=f"tiny_{attention}")
