"""Train a BA model on a folder of images (`<folder>/<class>/<image>.jpg`).

Without a folder argument it first makes a tiny one from real photos:
random 96x96 crops of scikit-learn's two sample images (`china.jpg`,
`flower.jpg`), one class per photo, written as JPEG files. Then the same
calls as `keras-ba train / evaluate / predict`, from Python:

    python examples/train_image_folder.py [FOLDER] [--output runs/folder] [--epochs 8]

The equivalent command line:

    keras-ba train --data FOLDER --model ba_resnet18 --recipe small --epochs 8 --batch-size 16 --lr 0.1 --output runs/folder
    keras-ba evaluate runs/folder/model.keras
    keras-ba predict runs/folder/model.keras FOLDER/<class>/<image>.jpg
"""

import argparse
import os

import numpy as np


def make_sample_folder(root, per_class=60, size=96, seed=0):
    """Random crops of scikit-learn's sample photos, one class per photo."""
    import keras
    from sklearn.datasets import load_sample_images

    samples = load_sample_images()
    rng = np.random.RandomState(seed)
    for name, image in zip(("china", "flower"), samples.images, strict=True):
        os.makedirs(os.path.join(root, name), exist_ok=True)
        height, width = image.shape[:2]
        for i in range(per_class):
            top, left = rng.randint(0, height - size), rng.randint(0, width - size)
            crop = image[top : top + size, left : left + size]
            keras.utils.save_img(os.path.join(root, name, f"{name}_{i:03d}.jpg"), crop, scale=False)
    return root


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", help="image folder (default: make one)")
    parser.add_argument("--output", default="runs/folder")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=32)
    args = parser.parse_args()

    from keras_ba.training import DataSource, ModelSpec, evaluate, get_recipe, predict, train

    folder = args.folder or make_sample_folder(os.path.join(args.output + "_data"))
    # 48 steps in all: enough for the BatchNorm statistics to settle.
    recipe = get_recipe(
        "small", epochs=args.epochs, batch_size=16, lr=0.1, image_size=args.image_size
    )
    result = train(ModelSpec("ba_resnet18"), DataSource(folder), recipe, args.output, verbose=2)
    metrics = evaluate(result.model_path, verbose=0)
    print(
        f"Validation accuracy {metrics['accuracy']:.3f} on {metrics['images']} images "
        f"(chance {metrics['chance']:.2f})"
    )
    some = sorted(
        os.path.join(folder, c, os.listdir(os.path.join(folder, c))[0])
        for c in sorted(os.listdir(folder))
        if os.path.isdir(os.path.join(folder, c))
    )
    for item in predict(result.model_path, some, top_k=2):
        if "error" in item:  # an unreadable file: reported, the others still classified
            print(item["path"], "->", item["error"])
        else:
            print(item["path"], "->", ", ".join(f"{n} {p:.3f}" for n, p in item["top"]))


if __name__ == "__main__":
    main()
