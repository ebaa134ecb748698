"""Recipe: Bridge Attention inside your own blocks.

`BridgeAttention` takes a *list* of the feature maps a block computes,
earliest first, and returns the *last* one recalibrated channel by channel:

    y = BridgeAttention(version="v1", reduction=r)([x_1, x_2, ..., x_n])

That is the whole contract. To put it into a block of your own:

1. Keep a handle on the output of every conv of the block (after its
   norm/activation, as you like; the authors bridge the post-activation
   outputs of the inner convs and the post-BN output of the last one).
2. Call `BridgeAttention` on the list where you would have put an SE layer:
   after the last conv, before the residual add.
3. Choose `reduction` so that `C_last // reduction >= 1` (16 in ResNets,
   6 in mobile blocks), `hidden_activation` / `gate_activation` to match the
   block's style ("relu"/"sigmoid", "swish"/"sigmoid", "relu"/"hard_sigmoid").

The features may differ in channels and even in spatial size (a strided conv
in the middle of a block is fine: each one is globally pooled). Rank 3 (1D
convs, token sequences), rank 4 (images) and rank 5 (volumes) all work, and
`data_format="channels_first"` is supported.

This script builds two small models on synthetic data and fits them for a few
steps, so it runs in well under 30 seconds on a CPU with any backend:

    KERAS_BACKEND=jax python examples/custom_block.py

1. A 2D residual block (two 3x3 convs) on 16x16 images.
2. A 1D conv block on sequences (rank-3 features), the same layer unchanged.
3. The other way round: your own attention module inside keras_ba's blocks,
   passed as a class (`attention=MaxGate`) or registered under a name with
   `keras_ba.layers.register_attention`.

It then saves the 1D model as `.keras` and reloads it with `safe_mode=True`
(no Lambda layers, `BridgeAttention` is a registered serializable class),
and reads the attention weights of one block with `return_attention_scores`.
"""

import os
import tempfile
import time

import keras
import numpy as np
from keras import layers

from keras_ba.applications import BAResNet
from keras_ba.layers import BridgeAttention, register_attention

# === 1. Your own 2D residual block ===


def ba_residual_block(x, filters, strides=1, version="v1", reduction=4, name="block"):
    """conv3x3-BN-ReLU -> conv3x3-BN -> Bridge Attention -> + shortcut -> ReLU.

    The two conv outputs are bridged: the attention sees what the first conv
    computed as well as the second, and rescales the second.
    """
    f1 = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False,
                       name=f"{name}_conv1")(x)  # fmt: skip
    f1 = layers.BatchNormalization(name=f"{name}_bn1")(f1)
    f1 = layers.ReLU(name=f"{name}_relu1")(f1)
    f2 = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(f1)
    f2 = layers.BatchNormalization(name=f"{name}_bn2")(f2)

    y = BridgeAttention(version=version, reduction=reduction, name=f"{name}_ba")([f1, f2])

    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=strides, use_bias=False,
                                 name=f"{name}_proj")(x)  # fmt: skip
        shortcut = layers.BatchNormalization(name=f"{name}_proj_bn")(shortcut)
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.ReLU(name=f"{name}_out")(y)


def image_model(classes=3):
    images = keras.Input((16, 16, 3), name="images")
    x = layers.Conv2D(16, 3, padding="same", name="stem")(images)
    x = ba_residual_block(x, 16, name="block1")
    x = ba_residual_block(x, 32, strides=2, version="v2", name="block2")
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.Model(images, layers.Dense(classes, name="predictions")(x), name="ba_cnn")


def image_data(n=64, classes=3, seed=0):
    """Images whose class is which colour channel is brightest."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = rng.normal(0.0, 1.0, (n, 16, 16, 3)).astype("float32")
    x[np.arange(n), :, :, y] += 1.0
    return x, y


# === 2. A 1D conv block on sequences: the same layer on rank-3 features ===


def ba_conv1d_block(x, filters, kernel_size=5, name="seq_block"):
    """Three 1D convs (pointwise expand, wide depthwise-like, pointwise);
    Bridge Attention sees all three and recalibrates the last, MobileNet-style
    (ReLU hidden activation, hard-sigmoid gate)."""
    f1 = layers.Conv1D(2 * filters, 1, activation="relu", name=f"{name}_expand")(x)
    f2 = layers.Conv1D(2 * filters, kernel_size, padding="same", groups=2 * filters,
                       activation="relu", name=f"{name}_depthwise")(f1)  # fmt: skip
    f3 = layers.Conv1D(filters, 1, name=f"{name}_project")(f2)
    f3 = layers.BatchNormalization(name=f"{name}_bn")(f3)
    y = BridgeAttention(reduction=4, gate_activation="hard_sigmoid", name=f"{name}_ba")(
        [f1, f2, f3]
    )
    if x.shape[-1] == filters:
        y = layers.Add(name=f"{name}_add")([x, y])
    return y


def sequence_model(classes=2, steps=64):
    sequences = keras.Input((steps, 1), name="sequences")
    x = layers.Conv1D(8, 3, padding="same", activation="relu", name="stem")(sequences)
    x = ba_conv1d_block(x, 8, name="seq_block1")
    x = ba_conv1d_block(x, 8, name="seq_block2")
    x = layers.GlobalAveragePooling1D(name="avg_pool")(x)
    return keras.Model(sequences, layers.Dense(classes, name="predictions")(x), name="ba_seq")


def sequence_data(n=128, steps=64, seed=1):
    """Noisy sines; the class is whether the frequency is low or high."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    freq = np.where(y == 0, 2.0, 6.0) + rng.uniform(-0.5, 0.5, n)
    t = np.linspace(0.0, 1.0, steps)
    x = np.sin(2 * np.pi * freq[:, None] * t[None, :] + rng.uniform(0, 6.28, (n, 1)))
    x = x + rng.normal(0.0, 0.3, x.shape)
    return x[..., None].astype("float32"), y


# === 3. Your own attention inside keras_ba's blocks ===


@keras.saving.register_keras_serializable(package="examples")
class MaxGate(layers.Layer):
    """Gates the last feature with weights from the max-pooled features.

    A block calls `MaxGate(name=..., reduction=..., hidden_activation=...,
    gate_activation=..., data_format=..., dtype=...)` on the list of its
    conv outputs and uses the result in place of the last one.
    """

    def __init__(self, reduction=16, hidden_activation="relu", gate_activation="sigmoid",
                 data_format=None, **kwargs):  # fmt: skip
        super().__init__(**kwargs)
        self.reduction = reduction
        self.hidden_activation = hidden_activation
        self.gate_activation = gate_activation
        self.data_format = data_format or keras.config.image_data_format()

    def build(self, input_shape):
        channels = input_shape[-1][-1 if self.data_format == "channels_last" else 1]
        width = max(1, channels // self.reduction)
        self.squeeze = layers.Dense(
            width, activation=self.hidden_activation, dtype=self.dtype_policy
        )
        self.squeeze.build((None, sum(s[-1 if self.data_format == "channels_last" else 1]
                                      for s in input_shape)))  # fmt: skip
        self.excite = layers.Dense(channels, activation=self.gate_activation,
                                   dtype=self.dtype_policy)  # fmt: skip
        self.excite.build((None, width))

    def call(self, features):
        axes = (1, 2) if self.data_format == "channels_last" else (2, 3)
        pooled = keras.ops.concatenate([keras.ops.max(f, axis=axes) for f in features], -1)
        weights = keras.ops.cast(self.excite(self.squeeze(pooled)), features[-1].dtype)
        if self.data_format == "channels_last":
            return features[-1] * weights[:, None, None, :]
        return features[-1] * weights[:, :, None, None]

    def get_config(self):
        config = super().get_config()
        config.update(reduction=self.reduction, hidden_activation=self.hidden_activation,
                      gate_activation=self.gate_activation, data_format=self.data_format)  # fmt: skip
        return config


def tiny_ba_resnet(attention):
    return BAResNet([1, 1], [8, 16], block_type="basic", stem="cifar", stem_filters=8,
                    reduction=4, input_shape=(16, 16, 3), classes=3, attention=attention)  # fmt: skip


def fit(model, x, y, epochs):
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    history = model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    loss = history.history["loss"]
    print(f"{model.name}: loss {loss[0]:.3f} -> {loss[-1]:.3f}, "
          f"train accuracy {history.history['accuracy'][-1]:.2f}")  # fmt: skip
    return loss


def main():
    start = time.time()
    keras.utils.set_random_seed(0)
    print(f"backend: {keras.backend.backend()}")

    cnn = image_model()
    fit(cnn, *image_data(), epochs=3)

    seq = sequence_model()
    x, y = sequence_data()
    fit(seq, x, y, epochs=4)

    # The attention weights of one block, for inspection or visualisation.
    block = seq.get_layer("seq_block1_ba")
    features = keras.Model(seq.input, block.input)(x[:2])
    _, weights = block(features, return_attention_scores=True)
    print(f"seq_block1 channel weights, first sequence: "
          f"{np.round(keras.ops.convert_to_numpy(weights)[0], 2)}")  # fmt: skip

    # .keras round trip in safe mode, same predictions.
    path = os.path.join(tempfile.mkdtemp(), "ba_seq.keras")
    seq.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    same = np.allclose(loaded.predict(x[:8], verbose=0), seq.predict(x[:8], verbose=0), atol=1e-6)
    print(f"reloaded from {path} with safe_mode=True: same predictions = {same}")

    # Your own attention in every block of a BA-ResNet: as a class ...
    model = tiny_ba_resnet(MaxGate)
    fit(model, *image_data(), epochs=2)
    print(f"{model.get_layer('conv2_block1_attn').__class__.__name__} in conv2_block1")
    # ... or registered under a name, like "bav1", "bav2" and "se".
    register_attention("max_gate", MaxGate)
    model = tiny_ba_resnet("max_gate")
    print(f"layer {model.get_layer('conv3_block1_max_gate').name} built by name")
    print(f"done in {time.time() - start:.1f} s")


if __name__ == "__main__":
    main()
