"""Saliency maps of keras_ba classifiers through tf-keras-vis, and overlays.

`explain` computes Grad-CAM, Grad-CAM++, Score-CAM or SmoothGrad maps with
tf-keras-vis, which runs on the TensorFlow backend only. Under JAX or
PyTorch, `explain_file` loads the `.keras` file (a backend-independent
format) under TensorFlow in a subprocess and returns the maps; `explain`
on an in-memory model refuses with a message that says how to do that.

Example:
    cams = explain(model, images, method="gradcam++")      # TensorFlow
    cams = explain_file("runs/digits/model.keras", images)  # any backend
    png = overlay(display_images[0], cams["gradcam"][0])
"""

import contextlib
import json
import os
import tempfile
import warnings

import numpy as np

from keras_ba.analysis.errors import AnalysisError
from keras_ba.utils.tf_process import run_under_tensorflow

CAM_METHODS = ("gradcam", "gradcam++", "scorecam", "smoothgrad")
METHOD_TITLES = {
    "gradcam": "Grad-CAM",
    "gradcam++": "Grad-CAM++",
    "scorecam": "Score-CAM",
    "smoothgrad": "SmoothGrad",
}
INSTALL_HINT = "pip install 'keras-ba[vis]' (or: pip install tf-keras-vis)"


def check_methods(methods):
    """Validates CAM method names; returns them as a tuple.

    Example:
    >>> check_methods("gradcam")
    ('gradcam',)
    >>> check_methods(["gradcam", "cam"])
    Traceback (most recent call last):
    ...
    keras_ba.analysis.errors.AnalysisError: Unknown CAM method 'cam'; choose from gradcam, gradcam++, scorecam, smoothgrad.
    """
    methods = (methods,) if isinstance(methods, str) else tuple(methods)
    for method in methods:
        if method not in CAM_METHODS:
            raise AnalysisError(
                f"Unknown CAM method {method!r}; choose from {', '.join(CAM_METHODS)}."
            )
    return methods


def _backend():
    import keras

    return keras.backend.backend()


def _tensorflow_only_message(backend):
    return (
        "Saliency maps use tf-keras-vis, which runs on the TensorFlow backend only "
        f"(this process uses {backend!r}). Save the model (model.save('model.keras')) and "
        "call keras_ba.analysis.explain_file('model.keras', images), which runs it in a "
        "TensorFlow subprocess, or run under KERAS_BACKEND=tensorflow."
    )


def find_penultimate_layer(model):
    """Name of the last layer with a spatial output (the CAM layer).

    For keras_ba classifiers that is the last block's output, just before
    global pooling (`conv5_block2_out` in a BA-ResNet-18). Nested models
    are searched from the end.

    Raises:
        AnalysisError: no layer with a spatial output.

    Example:
    >>> from keras_ba.analysis._examples import tiny_model
    >>> find_penultimate_layer(tiny_model())
    'conv3_block1_out'
    """
    import keras

    for layer in reversed(model.layers):
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.Model):
            try:
                return find_penultimate_layer(layer)
            except AnalysisError:
                continue
        output = getattr(layer, "output", None)
        if output is not None and not isinstance(output, (list, tuple, dict)):
            if len(output.shape) == 4:
                return layer.name
    raise AnalysisError(
        f"The model {model.name!r} has no layer with a spatial (4-D) output to compute a CAM on."
    )


def _find_layer(model, name):
    import keras

    for layer in model.layers:
        if layer.name == name:
            return layer
        if isinstance(layer, keras.Model):
            found = _find_layer(layer, name)
            if found is not None:
                return found
    return None


def explain(
    model,
    images,
    method="gradcam",
    classes=None,
    layer=None,
    smooth_samples=20,
    smooth_noise=0.2,
    max_n=64,
    batch_size=32,
    seed=0,
):
    """Saliency maps for `images` with tf-keras-vis (TensorFlow backend).

    Args:
        model: a functional classifier with a softmax (or linear) output.
        images: model-ready images `(N, H, W, C)` (preprocessed as the
            model expects).
        method: `"gradcam"`, `"gradcam++"`, `"scorecam"` or `"smoothgrad"`.
        classes: target class per image (int or list); None: the predicted
            class.
        layer: name of the layer the CAM is computed on; None: the last
            layer with a spatial output (`find_penultimate_layer`).
        smooth_samples, smooth_noise: SmoothGrad's noisy copies per image
            and noise level (fraction of the input range).
        max_n: Score-CAM uses only the `max_n` most active channels (Faster
            Score-CAM); None uses all (one forward pass per channel).
        batch_size: Score-CAM's forward batch size.
        seed: seed of SmoothGrad's noise.

    Returns:
        float32 array `(N, H, W)` in [0, 1] (each map min-max normalised by
        tf-keras-vis).

    Raises:
        AnalysisError: another backend, an unknown method or layer name,
            tf-keras-vis missing.

    Example:
    >>> import numpy as np, keras
    >>> from keras_ba.analysis._examples import tiny_model
    >>> if keras.backend.backend() == "tensorflow":
    ...     cams = explain(tiny_model(), np.random.rand(2, 16, 16, 3), method="gradcam")
    ...     print(cams.shape)
    ... else:
    ...     print((2, 16, 16))
    (2, 16, 16)
    """
    (method,) = check_methods(method)
    backend = _backend()
    if backend != "tensorflow":
        raise AnalysisError(_tensorflow_only_message(backend))
    try:
        from tf_keras_vis.gradcam import Gradcam
        from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
        from tf_keras_vis.saliency import Saliency
        from tf_keras_vis.scorecam import Scorecam
        from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
        from tf_keras_vis.utils.scores import CategoricalScore
    except ImportError as error:
        raise AnalysisError(
            f"tf-keras-vis is needed for saliency maps: {INSTALL_HINT} ({error})."
        ) from None
    import tensorflow as tf

    images = np.asarray(images, dtype="float32")
    if images.ndim != 4 or len(images) == 0:
        raise AnalysisError(
            f"Expected a non-empty batch of images (N, H, W, C); received shape {images.shape}."
        )
    if layer is None:
        layer = find_penultimate_layer(model)
    elif _find_layer(model, layer) is None:
        raise AnalysisError(f"Layer {layer!r} does not exist in model {model.name!r}.")
    if classes is None:
        classes = np.asarray(model.predict(images, verbose=0)).argmax(axis=-1)
    classes = np.broadcast_to(np.asarray(classes, dtype="int64"), (len(images),)).tolist()
    count = len(images)
    if count % 2:
        # TensorFlow's oneDNN conv gradients crash (SIGSEGV) on odd batch sizes
        # through the strided ZeroPadding2D + "valid" convs of keras_ba ResNets
        # (TF 2.21, x86 CPU): pad with a copy of the last image, drop its map.
        images = np.concatenate([images, images[-1:]])
        classes = classes + classes[-1:]
    score = CategoricalScore(classes)
    last = model.layers[-1]
    linear = [ReplaceToLinear()] if hasattr(last, "activation") else []
    with _quiet():
        if method in ("gradcam", "gradcam++"):
            tool = (Gradcam if method == "gradcam" else GradcamPlusPlus)(
                model, model_modifier=linear, clone=True
            )
            cams = tool(score, images, penultimate_layer=layer, seek_penultimate_conv_layer=False)
        elif method == "scorecam":
            cams = Scorecam(model)(
                score,
                images,
                penultimate_layer=layer,
                seek_penultimate_conv_layer=False,
                max_N=max_n,
                batch_size=batch_size,
            )
        else:
            tf.random.set_seed(seed)
            cams = Saliency(model, model_modifier=linear, clone=True)(
                score, images, smooth_samples=smooth_samples, smooth_noise=smooth_noise
            )
    cams = np.asarray(cams, dtype="float32").reshape(images.shape[:3])[:count]
    return np.nan_to_num(cams, nan=0.0, posinf=1.0, neginf=0.0)


@contextlib.contextmanager
def _quiet():
    """No Keras progress bars (Score-CAM's predict) or input-structure warnings."""
    import keras

    interactive = keras.config.is_interactive_logging_enabled()
    keras.config.disable_interactive_logging()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The structure of `inputs`")
            yield
    finally:
        if interactive:
            keras.config.enable_interactive_logging()


def explain_file(model_path, images, methods=("gradcam",), classes=None, **options):
    """Saliency maps from a `.keras` file, on any backend.

    Under TensorFlow the model is loaded here; under JAX or PyTorch a
    subprocess with `KERAS_BACKEND=tensorflow` loads the same file and
    computes the maps (tf-keras-vis is TensorFlow-only).

    Args:
        model_path: a `.keras` file.
        images: model-ready images `(N, H, W, C)`.
        methods: CAM method names (see `CAM_METHODS`).
        classes: target class per image; None: the predicted class.
        **options: `explain` options (`layer`, `smooth_samples`, ...).

    Returns:
        `{method: float32 array (N, H, W)}`.

    Raises:
        AnalysisError: a missing file, an unknown method or layer, a
            failure in the subprocess (its one-line message).

    Example:
        cams = explain_file("runs/digits/model.keras", images, ["gradcam", "scorecam"])
    """
    methods = check_methods(methods)
    if not os.path.isfile(model_path):
        raise AnalysisError(f"No model file at {model_path!r}.")
    images = np.asarray(images, dtype="float32")
    if _backend() == "tensorflow":
        model = _load_model(model_path)
        return {m: explain(model, images, m, classes=classes, **options) for m in methods}
    return _explain_in_subprocess(model_path, images, methods, classes, options)


def _load_model(model_path):
    from keras_ba.saving import load_model

    try:
        return load_model(model_path, compile=False)
    except Exception as error:  # noqa: BLE001 (any loading problem is the user's file)
        raise AnalysisError(f"Cannot load the model {model_path!r}: {error}") from None


def _explain_in_subprocess(model_path, images, methods, classes, options):
    with tempfile.TemporaryDirectory(prefix="keras_ba_explain_") as folder:
        request = os.path.join(folder, "request.npz")
        answer = os.path.join(folder, "answer.npz")
        np.savez(
            request,
            images=images,
            classes=np.asarray([] if classes is None else classes, dtype="int64"),
            has_classes=np.asarray(classes is not None),
            options=np.asarray(json.dumps({"methods": list(methods), **options})),
        )
        run_under_tensorflow(
            "keras_ba.analysis._tf_worker",
            [model_path, request, answer],
            "Computing saliency maps",
            AnalysisError,
        )
        with np.load(answer) as result:
            return {method: result[method] for method in methods}


OVERLAY_SIDE = 128  # the report shows overlays at least this large (pixels)


def upscale_nearest(image, min_side=OVERLAY_SIDE):
    """Repeats pixels (nearest neighbour) until the shorter side is >= `min_side`.

    A 32x32 digit's overlay is too small to read; an integer factor keeps
    every pixel a sharp square (no interpolation that invents detail).

    Example:
    >>> import numpy as np
    >>> upscale_nearest(np.zeros((32, 40, 3), "uint8")).shape
    (128, 160, 3)
    >>> upscale_nearest(np.zeros((200, 200, 3), "uint8")).shape
    (200, 200, 3)
    """
    image = np.asarray(image)
    factor = -(-min_side // min(image.shape[:2]))  # ceil
    if factor <= 1:
        return image
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def overlay(image, cam, alpha=0.45, colormap="jet"):
    """Blends a saliency map onto an image.

    Args:
        image: `(H, W)`, `(H, W, 1)` or `(H, W, 3)`; uint8 in [0, 255], or
            floats in [0, 1] (or [0, 255] when the maximum exceeds 1).
        cam: `(h, w)` map in [0, 1]; resized (bilinear) to `(H, W)`.
        alpha: weight of the colored map.
        colormap: a matplotlib colormap name.

    Returns:
        uint8 RGB array `(H, W, 3)`.

    Example:
    >>> import numpy as np
    >>> out = overlay(np.zeros((8, 8), "uint8"), np.ones((4, 4)), alpha=1.0, colormap="gray")
    >>> out.shape, int(out.min()), int(out.max())
    ((8, 8, 3), 255, 255)
    """
    import matplotlib

    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise AnalysisError(f"Expected an image (H, W, 3); received shape {image.shape}.")
    pixels = image.astype("float64")
    if image.dtype != np.uint8 and pixels.max() <= 1.0:
        pixels = pixels * 255.0
    cam = np.clip(np.nan_to_num(np.asarray(cam, dtype="float64")), 0.0, 1.0)
    if cam.ndim != 2:
        raise AnalysisError(f"Expected a 2-D map (h, w); received shape {cam.shape}.")
    cam = resize_bilinear(cam, image.shape[:2])
    colors = matplotlib.colormaps[colormap](cam)[..., :3] * 255.0
    blended = (1.0 - alpha) * pixels + alpha * colors
    return np.clip(np.round(blended), 0, 255).astype("uint8")


def resize_bilinear(array, size):
    """Bilinear resize of a 2-D array to `size` (align-corners sampling).

    Example:
    >>> resize_bilinear(np.array([[0.0, 1.0]]), (1, 3)).tolist()
    [[0.0, 0.5, 1.0]]
    """
    array = np.asarray(array, dtype="float64")
    if array.shape == tuple(size):
        return array
    rows = np.linspace(0, array.shape[0] - 1, size[0])
    cols = np.linspace(0, array.shape[1] - 1, size[1])
    across = np.stack([np.interp(cols, np.arange(array.shape[1]), row) for row in array])
    return np.stack(
        [np.interp(rows, np.arange(array.shape[0]), column) for column in across.T], axis=1
    )


def save_png(path, array):
    """Writes a uint8 `(H, W, 3)` array as a PNG file.

    Example:
        save_png("overlay.png", overlay(image, cam))
    """
    from PIL import Image

    Image.fromarray(np.asarray(array, dtype="uint8")).save(path, format="PNG")
