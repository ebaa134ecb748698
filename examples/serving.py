"""Serve a trained BA model with TF Serving: export, test the signature, REST.

1. export the `.keras` model as a SavedModel in TF Serving's layout
   `<output>/<model_name>/<version>/` (what `keras-ba export` does);
2. load it back with `tf.saved_model.load` and send a request through its
   `serving_default` signature, as TF Serving will;
3. print the `docker run` command that serves the folder and the `curl`
   REST request (a `request.json` with real images is written for it).

    python examples/serving.py [--model runs/digits/model.keras] [--output serving]

Without `--model` (or when the file is missing) it first trains a tiny
BA-ResNet on the digits for a few seconds. The signature takes float32 RGB
images in [0, 255] of any size (key `images`) and returns `probabilities`
and `class_ids`; the resize, crop and ImageNet normalization are inside.
"""

import argparse
import json
import os

import numpy as np


def quick_model(output):
    """A tiny BA-ResNet trained briefly on the digits (when no model is given)."""
    from keras_ba.training import DataSource, ModelSpec, get_recipe, train

    spec = ModelSpec("ba_resnet18", depths=(1, 1, 1, 1), widths=(16, 32, 64, 128))
    recipe = get_recipe("small", epochs=2, batch_size=32, image_size=32)
    return train(
        spec, DataSource("digits"), recipe, output, steps_per_epoch=20, verbose=2
    ).model_path


def sample_requests(count=4):
    """`count` validation digits as uint8 RGB images, with their labels."""
    from keras_ba.training import DataSource, load_splits

    splits = load_splits(DataSource("digits", limit=count), load_size=32)
    images, labels = zip(*splits.validation.as_numpy_iterator(), strict=True)
    return np.stack(images), [int(label) for label in labels]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="runs/digits/model.keras")
    parser.add_argument("--output", default="serving")
    args = parser.parse_args()

    import tensorflow as tf

    from keras_ba.training import export_model

    model_path = args.model if os.path.exists(args.model) else quick_model("runs/serving_demo")
    version_dir = export_model(model_path, args.output)  # next free version number
    model_name = os.path.basename(os.path.dirname(version_dir))
    print(f"1. Exported {model_path} -> {version_dir}")

    images, labels = sample_requests()
    served = tf.saved_model.load(version_dir).signatures["serving_default"]
    outputs = served(images=tf.constant(images, tf.float32))
    names = open(os.path.join(version_dir, "assets.extra", "labels.txt")).read().split()
    predicted = [names[i] for i in outputs["class_ids"].numpy()]
    confidence = outputs["probabilities"].numpy().max(axis=1)
    print(
        "2. Through serving_default:",
        ", ".join(
            f"label {y} -> {p} ({c:.2f})"
            for y, p, c in zip(labels, predicted, confidence, strict=True)
        ),
    )

    request = os.path.join(args.output, "request.json")
    with open(request, "w") as file:
        json.dump({"signature_name": "serving_default", "instances": images[:2].tolist()}, file)
    base = os.path.abspath(os.path.join(args.output, model_name))
    print(f"""3. Serve it with TF Serving (Docker) and send a REST request:

docker run --rm -p 8501:8501 \\
  --mount type=bind,source={base},target=/models/{model_name} \\
  -e MODEL_NAME={model_name} -t tensorflow/serving

curl -s -X POST http://localhost:8501/v1/models/{model_name}:predict -d @{os.path.abspath(request)}
# -> {{"predictions": [{{"probabilities": [...], "class_ids": ...}}, ...]}}
# gRPC: port 8500, the same signature. New versions appear as new numbered folders.""")


if __name__ == "__main__":
    main()
