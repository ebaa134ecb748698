"""A small detection/segmentation task generated in code: digits on a canvas.

scikit-learn's handwritten digits (8x8, shipped with scikit-learn, no
download) are scaled and pasted at random positions onto a noisy canvas, in
random colours, without overlapping. Every image comes with its boxes, box
classes and a per-pixel mask, so the same data serves detection and
segmentation. Everything is deterministic given `seed`.

Example:
>>> data = make_digit_canvases(4, image_size=64, digits=(0, 1), seed=0)
>>> data["images"].shape, data["boxes"].shape, data["masks"].shape
((4, 64, 64, 3), (4, 3, 4), (4, 64, 64))
"""

import numpy as np

BOX_FORMAT = "xyxy"  # what `make_digit_canvases` returns
INK_BOX = 0.3  # ink above this (of 1) is inside the box
INK_MASK = 0.5  # ink above this belongs to the digit in the mask


def _resize_matrix(source, target):
    """(target, source) bilinear interpolation weights (half-pixel centres)."""
    centres = (np.arange(target) + 0.5) * source / target - 0.5
    centres = np.clip(centres, 0, source - 1)
    low = np.floor(centres).astype(int)
    high = np.minimum(low + 1, source - 1)
    frac = centres - low
    weights = np.zeros((target, source))
    weights[np.arange(target), low] += 1 - frac
    weights[np.arange(target), high] += frac
    return weights


def _digit_ink(digit, side):
    """An 8x8 scikit-learn digit (0..16) resized to side x side ink in [0, 1]."""
    weights = _resize_matrix(digit.shape[0], side)
    return np.clip(weights @ (digit / 16.0) @ weights.T, 0.0, 1.0)


def _check_args(num_images, image_size, digits, max_objects, scale_range):
    for value, name in ((num_images, "num_images"), (max_objects, "max_objects")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(
                f"Received an invalid value for `{name}`, expected a positive "
                f"integer. Received: {name}={value!r}"
            )
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 32:
        raise ValueError(
            "Received an invalid value for `image_size`, expected an integer "
            f"of at least 32. Received: image_size={image_size!r}"
        )
    digits = tuple(digits)
    if (
        not digits
        or len(set(digits)) != len(digits)
        or not all(isinstance(d, (int, np.integer)) and 0 <= d <= 9 for d in digits)
    ):
        raise ValueError(
            "Received an invalid value for `digits`, expected distinct "
            f"integers in 0..9. Received: digits={digits!r}"
        )
    low, high = scale_range
    if not 0 < low <= high <= 0.9:
        raise ValueError(
            "Received an invalid value for `scale_range`, expected "
            f"0 < low <= high <= 0.9 (of the image side). Received: {scale_range!r}"
        )
    return digits


def make_digit_canvases(
    num_images,
    image_size=64,
    digits=tuple(range(10)),
    max_objects=3,
    scale_range=(0.25, 0.5),
    seed=0,
):
    """Generates images of handwritten digits with boxes and masks.

    Each image holds 1 to `max_objects` digits drawn from scikit-learn's
    digits dataset, each scaled to a random side in `scale_range` (a fraction
    of `image_size`), coloured and pasted without overlap on a noisy
    background.

    Args:
        num_images: number of images.
        image_size: side of the square images in pixels (at least 32).
        digits: the digits to draw; digit `digits[i]` gets class id `i`.
        max_objects: most digits per image (also the padded box count).
        scale_range: `(low, high)` side of a digit, as a fraction of the image.
        seed: seed of the generator; the same seed gives the same data.

    Returns:
        A dict of NumPy arrays:
        `"images"`: float32 `(N, S, S, 3)`, RGB in [0, 255];
        `"boxes"`: float32 `(N, max_objects, 4)`, `"xyxy"` pixel boxes around
        the ink, padded with -1;
        `"classes"`: float32 `(N, max_objects)`, class ids, padded with -1;
        `"masks"`: int32 `(N, S, S)`, 0 for background and `class id + 1` on
        the digit's ink (the segmentation target, `len(digits) + 1` classes).

    Example:
    >>> data = make_digit_canvases(2, digits=(3, 7), seed=1)
    >>> sorted(data)
    ['boxes', 'classes', 'images', 'masks']
    >>> int(data["masks"].max()) <= 2
    True
    """
    from sklearn.datasets import load_digits

    digits = _check_args(num_images, image_size, digits, max_objects, scale_range)
    source = load_digits()
    pools = [source.images[source.target == d] for d in digits]
    rng = np.random.default_rng(seed)
    size = image_size
    images = np.zeros((num_images, size, size, 3), np.float32)
    boxes = -np.ones((num_images, max_objects, 4), np.float32)
    classes = -np.ones((num_images, max_objects), np.float32)
    masks = np.zeros((num_images, size, size), np.int32)
    low, high = (max(8, int(round(f * size))) for f in scale_range)
    for index in range(num_images):
        canvas = rng.uniform(10, 70) + rng.normal(0, 8, (size, size, 3))
        taken = []
        for _ in range(rng.integers(1, max_objects + 1)):
            class_id = int(rng.integers(len(digits)))
            pool = pools[class_id]
            ink = _digit_ink(pool[rng.integers(len(pool))], int(rng.integers(low, high + 1)))
            rows, cols = np.nonzero(ink > INK_BOX)
            for _ in range(20):  # a free place, else skip this digit
                top, left = rng.integers(0, size - ink.shape[0] + 1, size=2)
                box = (
                    left + cols.min(),
                    top + rows.min(),
                    left + cols.max() + 1,
                    top + rows.max() + 1,
                )
                if all(_disjoint(box, other) for other in taken):
                    break
            else:
                continue
            colour = rng.uniform(140, 255, 3)
            window = (slice(top, top + ink.shape[0]), slice(left, left + ink.shape[1]))
            alpha = ink[..., None]
            canvas[window] = canvas[window] * (1 - alpha) + colour * alpha
            masks[index][window][ink > INK_MASK] = class_id + 1
            boxes[index, len(taken)] = box
            classes[index, len(taken)] = class_id
            taken.append(box)
        images[index] = np.clip(canvas, 0, 255)
    return {"images": images, "boxes": boxes, "classes": classes, "masks": masks}


def _disjoint(a, b, margin=1):
    return (
        a[2] + margin <= b[0]
        or b[2] + margin <= a[0]
        or a[3] + margin <= b[1]
        or b[3] + margin <= a[1]
    )
