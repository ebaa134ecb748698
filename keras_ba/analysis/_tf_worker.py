"""Subprocess entry point: saliency maps under TensorFlow for another backend.

Run by `explain_file` as
`KERAS_BACKEND=tensorflow python -m keras_ba.analysis._tf_worker MODEL REQUEST ANSWER`;
reads images and options from `REQUEST` (.npz), writes one array per method
to `ANSWER` (.npz). A problem is printed as one line on stderr (exit 1).

Example:
    python -m keras_ba.analysis._tf_worker model.keras request.npz answer.npz
"""

import json
import os
import sys


def main(argv):
    """Computes the maps requested in `argv[1]` for the model `argv[0]`."""
    model_path, request, answer = argv
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import numpy as np

    from keras_ba.analysis.saliency import explain_file

    with np.load(request) as data:
        images = data["images"]
        classes = data["classes"] if bool(data["has_classes"]) else None
        options = json.loads(str(data["options"]))
    methods = options.pop("methods")
    cams = explain_file(model_path, images, methods, classes=classes, **options)
    partial = answer + ".partial.npz"
    np.savez(partial, **cams)
    os.replace(partial, answer)


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except Exception as error:  # noqa: BLE001 (one line for the parent process)
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"{type(error).__name__}: {message}", file=sys.stderr)
        sys.exit(1)
