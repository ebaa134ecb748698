"""Input preprocessing shared by every keras_ba model, the data pipeline and export.

The authors trained their PyTorch models on RGB scaled to [0, 1] and
normalised with the ImageNet mean and standard deviation (torchvision
convention); `preprocess_input` computes exactly that from RGB in [0, 255].

Example:
>>> IMAGENET_MEAN
(0.485, 0.456, 0.406)
"""

import keras

from keras_ba import _validation

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def preprocess_input(x, data_format=None):
    """Scales RGB pixels in [0, 255] like the authors' training.

    `x / 255`, then the ImageNet mean is subtracted and the result divided by
    the ImageNet standard deviation, per channel (torchvision convention).

    Args:
        x: images with 3 channels, a NumPy array or a backend tensor.
        data_format: `"channels_last"` or `"channels_first"`; None reads
            `keras.config.image_data_format()`.

    Returns:
        Float32 images of the same shape (NumPy in, NumPy out).

    Example:
    >>> import numpy as np
    >>> preprocess_input(np.full((1, 2, 2, 3), 255.0))[0, 0, 0].round(3)
    array([2.249, 2.429, 2.64 ], dtype=float32)
    """
    import numpy as np

    data_format = _validation.standardize_data_format(data_format)
    shape = (3,) + (1, 1) if data_format == "channels_first" else (3,)
    mean = np.reshape(np.array(IMAGENET_MEAN, "float32") * 255.0, shape)
    std = np.reshape(np.array(IMAGENET_STD, "float32") * 255.0, shape)
    if isinstance(x, np.ndarray) or not hasattr(x, "shape"):
        return ((np.asarray(x, "float32") - mean) / std).astype("float32")
    x = keras.ops.cast(x, "float32")
    return (x - mean) / std
