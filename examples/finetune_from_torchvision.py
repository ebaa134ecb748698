"""Fine-tune a BA-ResNet-50 from torchvision's ImageNet ResNet-50 trunk.

No ImageNet-trained Bridge Attention weights can be downloaded, but the trunk
of a BA-ResNet (v1.5 ResNet, convs without bias) is torchvision's ResNet, so
its ImageNet weights give every non-attention layer a pretrained start (the
warm start the BA papers describe as a practical alternative to 100 ImageNet
epochs):

1. `BAResNet50(attention="bav1", include_top=False, pooling="avg")` plus a new
   head for the task;
2. `load_torch_weights(backbone, checkpoint, strict="trunk")` loads every
   trunk weight (convs, BatchNorms with their statistics) and leaves the 16
   Bridge Attention layers freshly initialised; the printed report lists what
   was loaded and what was not;
3. phase 1 trains only the new parts (attention layers and head) with the
   pretrained trunk frozen; phase 2 fine-tunes everything at a low rate.

The checkpoint: torchvision's `resnet50-11ad3fa6.pth` (`IMAGENET1K_V2`; or
`resnet50-0676ba61.pth`, `IMAGENET1K_V1`), fetched on a machine with internet,
e.g. `python -c "import torchvision; torchvision.models.resnet50(weights='IMAGENET1K_V2')"`
(it lands in `~/.cache/torch/hub/checkpoints/`), or from
`https://download.pytorch.org/models/resnet50-11ad3fa6.pth`. timm's ResNet-50
files (`model.safetensors`) have the same keys and load the same way. Without
`--checkpoint`, a state dict with torchvision's keys and shapes and random
values is generated, so that the example runs offline as a smoke check (the
accuracy then means nothing). The task is the scikit-learn digits at 32x32,
as in `examples/transfer_learning.py`; a few minutes on a CPU.

    python examples/finetune_from_torchvision.py [--checkpoint resnet50-11ad3fa6.pth] [--epochs 1]
"""

import argparse
import time

import keras
import numpy as np

from keras_ba.applications import BAResNet50, preprocess_input
from keras_ba.convert import build_key_map, load_torch_weights
from keras_ba.layers import BridgeAttention
from keras_ba.training import DataSource, load_splits


def digits(image_size):
    """The digits as preprocessed `(x, one-hot y)` arrays per split."""
    splits = load_splits(DataSource("digits"), load_size=image_size)
    arrays = {}
    for name, dataset in (("train", splits.train), ("validation", splits.validation)):
        images, labels = (np.stack(a) for a in zip(*dataset.as_numpy_iterator(), strict=True))
        arrays[name] = (
            preprocess_input(images.astype("float32")),
            keras.utils.to_categorical(labels, 10),
        )
    return arrays


def offline_state_dict(seed=0):
    """torchvision's ResNet-50 keys and shapes with random, well-scaled values.

    The keys come from the key map of a plain ResNet-50 (`attention=None`),
    which is torchvision's layout; only for running the example offline.
    """
    with keras.StatelessScope(initialize_variables=False):  # shapes only
        plain = BAResNet50(attention=None)
    rng = np.random.default_rng(seed)
    state = {}
    for key, target in build_key_map(plain).targets.items():
        shape = target.transform.torch_shape(tuple(target.variable.shape))
        kind = target.variable.path.rsplit("/", 1)[-1]  # gamma, moving_mean, kernel...
        if kind in ("gamma", "moving_variance"):
            state[key] = np.ones(shape, "float32")
        elif len(shape) == 4:  # conv [out, in, kh, kw]: He initialisation
            fan_in = np.prod(shape[1:])
            state[key] = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape).astype("float32")
        else:
            state[key] = rng.normal(0.0, 0.01, shape).astype("float32")
    return state


def build_model(checkpoint, image_size, classes):
    """BA-ResNet-50 with the torchvision trunk, and a new head."""
    backbone = BAResNet50(
        attention="bav1", include_top=False, pooling="avg", input_shape=(image_size, image_size, 3)
    )
    report = load_torch_weights(backbone, checkpoint, strict="trunk")
    print(report)
    inputs = keras.Input((image_size, image_size, 3), name="images")
    outputs = keras.layers.Dense(classes, activation="softmax", name="predictions")(
        keras.layers.Dropout(0.2)(backbone(inputs))
    )
    return keras.Model(inputs, outputs, name="ba_resnet50_warm"), backbone


def fit(model, data, learning_rate, epochs):
    model.compile(
        keras.optimizers.Adam(learning_rate), "categorical_crossentropy", metrics=["accuracy"]
    )
    model.fit(
        *data["train"], batch_size=64, epochs=epochs, validation_data=data["validation"], verbose=2
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="torchvision/timm ResNet-50 .pth or .safetensors")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=1, help="epochs per phase")
    args = parser.parse_args()
    start = time.time()
    keras.utils.set_random_seed(0)
    if args.checkpoint is None:
        print("No --checkpoint: random values in torchvision's layout (offline smoke check).")
    checkpoint = args.checkpoint or offline_state_dict()

    data = digits(args.image_size)
    model, backbone = build_model(checkpoint, args.image_size, classes=10)

    # Phase 1: the pretrained trunk is frozen; the fresh parts learn.
    for layer in backbone.layers:
        layer.trainable = isinstance(layer, BridgeAttention)
    print(f"1. Attention layers and head only: {len(model.trainable_weights)} trainable tensors")
    fit(model, data, 1e-3, args.epochs)

    # Phase 2: everything, at a low rate.
    for layer in backbone.layers:
        layer.trainable = True
    print(f"2. Everything: {len(model.trainable_weights)} trainable tensors")
    fit(model, data, 1e-4, args.epochs)

    _, accuracy = model.evaluate(*data["validation"], verbose=0)
    print(f"Digits validation accuracy {accuracy:.3f} (chance 0.1), {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
