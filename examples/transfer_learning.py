"""Transfer learning from a trained BA-ResNet-50 with `model.fit`.

The classic Keras recipe on a BA backbone:

1. a source model: BA-ResNet-50 trained briefly on the digits 0-4 (or any
   `.keras` file of the same architecture, `--weights`);
2. `BAResNet50(include_top=False, weights=<that file>, pooling="avg")`,
   frozen, with a new head for a new task (the digits 5-9);
3. fit the head; 4. unfreeze and fine-tune everything at a low rate.

The backbone is called with `training=False`, so its BatchNorm layers keep
their statistics even once unfrozen (the Keras transfer-learning guide's
advice). Runs on a CPU in about a minute with the defaults (32x32 images).

    python examples/transfer_learning.py [--weights source.keras] [--epochs 2]
"""

import argparse
import os
import tempfile
import time

import keras
import numpy as np

from keras_ba.applications import BAResNet50, preprocess_input
from keras_ba.training import DataSource, load_splits


def digits(image_size, classes):
    """Digits `classes` as preprocessed `(x, one-hot y)` arrays per split."""
    splits = load_splits(DataSource("digits"), load_size=image_size)
    arrays = {}
    for name, dataset in (("train", splits.train), ("validation", splits.validation)):
        images, labels = (np.stack(a) for a in zip(*dataset.as_numpy_iterator(), strict=True))
        keep = np.isin(labels, classes)
        x = preprocess_input(images[keep].astype("float32"))
        y = keras.utils.to_categorical(np.searchsorted(classes, labels[keep]), len(classes))
        arrays[name] = (x, y)
    return arrays


def make_source_model(path, image_size, epochs):
    """A BA-ResNet-50 trained on the digits 0-4: the 'pretrained' backbone."""
    data = digits(image_size, classes=[0, 1, 2, 3, 4])
    model = BAResNet50(weights=None, classes=5, input_shape=(image_size, image_size, 3))
    model.compile(keras.optimizers.Adam(1e-3), "categorical_crossentropy", metrics=["accuracy"])
    print(f"1. Source model: BA-ResNet-50 on the digits 0-4 ({len(data['train'][0])} images)")
    model.fit(
        *data["train"], batch_size=64, epochs=epochs, validation_data=data["validation"], verbose=2
    )
    model.save(path)
    return path


def build_transfer_model(weights, image_size, classes):
    """Frozen BA-ResNet-50 features + a new classification head."""
    backbone = BAResNet50(
        include_top=False, weights=weights, pooling="avg", input_shape=(image_size, image_size, 3)
    )
    backbone.trainable = False
    inputs = keras.Input((image_size, image_size, 3), name="images")
    features = backbone(inputs, training=False)  # BatchNorm stays in inference mode
    features = keras.layers.Dropout(0.2)(features)
    outputs = keras.layers.Dense(classes, activation="softmax", name="new_head")(features)
    return keras.Model(inputs, outputs, name="ba_resnet50_transfer"), backbone


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", help="a BA-ResNet-50 .keras file (default: train one briefly)")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=2, help="epochs per phase")
    args = parser.parse_args()
    start = time.time()
    keras.utils.set_random_seed(0)

    weights = args.weights
    if weights is None:
        weights = os.path.join(tempfile.mkdtemp(), "ba_resnet50_digits0-4.keras")
        make_source_model(weights, args.image_size, args.epochs)

    data = digits(args.image_size, classes=[5, 6, 7, 8, 9])
    model, backbone = build_transfer_model(weights, args.image_size, classes=5)
    print(
        f"2. New task: the digits 5-9; frozen backbone, {len(model.trainable_weights)} trainable tensors"
    )
    model.compile(keras.optimizers.Adam(1e-3), "categorical_crossentropy", metrics=["accuracy"])
    model.fit(
        *data["train"],
        batch_size=64,
        epochs=args.epochs,
        validation_data=data["validation"],
        verbose=2,
    )

    print("3. Fine-tune everything at a low learning rate (1e-5)")
    backbone.trainable = True
    model.compile(keras.optimizers.Adam(1e-5), "categorical_crossentropy", metrics=["accuracy"])
    model.fit(
        *data["train"],
        batch_size=64,
        epochs=args.epochs,
        validation_data=data["validation"],
        verbose=2,
    )

    loss, accuracy = model.evaluate(*data["validation"], verbose=0)
    print(
        f"Digits 5-9 validation accuracy {accuracy:.3f} (chance 0.2), {time.time() - start:.0f} s"
    )


if __name__ == "__main__":
    main()
