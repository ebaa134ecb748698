"""What a conversion did, and the single error that lists what went wrong."""

import dataclasses

MAX_LISTED = 50


@dataclasses.dataclass
class ConversionReport:
    """The outcome of `load_torch_weights`.

    Attributes:
        source: the checkpoint path, or `"<mapping>"`.
        model_name: name of the Keras model filled.
        family: `"resnet"`, `"efficientnet"` or `"mobilenet_v3"`.
        mapped: `(torch_key, keras_weight_path, transform_name)` per
            assigned weight, in model order: exactly the weights loaded.
        skipped: checkpoint keys deliberately not loaded
            (`num_batches_tracked`, the classifier of a model built with
            `include_top=False`, unused layers such as the authors'
            ResNeXt gates, attention weights in the trunk mode); `notes`
            says why.
        missing: keys the model needed but the checkpoint lacked (only
            possible with `strict=False`).
        unexpected: checkpoint keys the model has no weight for (only
            possible with `strict=False`).
        notes: how the checkpoint was read (wrapper, prefix, skipped
            groups...).
        num_values: total number of values assigned.
        mode: `"strict"`, `"non-strict"` or `"trunk"`.
        not_loaded: `(keras_weight_path, reason)` for every weight of the
            model that was left as it was (attention layers in the trunk
            mode, a classifier of another size, missing keys).
        trunk: a `keras_ba.convert.trunk_check.TrunkCheck` (the model's
            `trunk_style` and whether it computes the authors' function:
            padding and BatchNorm epsilon are invisible in weight shapes), or
            None for a family that declares no conventions.

    Example:
    >>> report = ConversionReport("ckpt.pth", "m", "resnet", [("fc.bias", "predictions/bias", "copy")])
    >>> report.num_mapped
    1
    """

    source: str
    model_name: str
    family: str
    mapped: list
    skipped: list = dataclasses.field(default_factory=list)
    missing: list = dataclasses.field(default_factory=list)
    unexpected: list = dataclasses.field(default_factory=list)
    notes: list = dataclasses.field(default_factory=list)
    num_values: int = 0
    mode: str = "strict"
    not_loaded: list = dataclasses.field(default_factory=list)
    trunk: object = None

    @property
    def num_mapped(self):
        """Number of checkpoint tensors assigned to Keras weights."""
        return len(self.mapped)

    def __str__(self):
        mode = " in trunk mode" if self.mode == "trunk" else ""
        lines = [
            f"Loaded {self.source} into model {self.model_name!r} ({self.family} layout{mode}):",
            f"  mapped {self.num_mapped} tensors ({self.num_values:,} values) "
            "onto as many Keras weights",
        ]
        if self.trunk is not None:
            lines.append(f"  trunk: {self.trunk.summary}")
        lines += [f"  note: {note}" for note in self.notes]
        if self.skipped:
            lines.append(f"  skipped {len(self.skipped)} entries: {_summary(self.skipped)}")
        for label, keys in (("missing", self.missing), ("unexpected", self.unexpected)):
            if keys:
                lines.append(f"  {label} (not loaded, strict=False): {listing(keys)}")
        for reason, paths in _group_by_reason(self.not_loaded).items():
            layers = list(dict.fromkeys(path.split("/")[0] for path in paths))
            lines.append(
                f"  not loaded, left as they were: {_count(len(paths), 'weight')} of "
                f"{_count(len(layers), 'layer')} ({reason}): {listing(layers)}"
            )
        return "\n".join(lines)


def _count(number, noun):
    return f"{number} {noun}{'s' if number != 1 else ''}"


def _group_by_reason(items):
    groups = {}
    for path, reason in items:
        groups.setdefault(reason, []).append(path)
    return groups


def _summary(keys):
    tracked = sum(key.endswith("num_batches_tracked") for key in keys)
    others = [key for key in keys if not key.endswith("num_batches_tracked")]
    parts = [f"{tracked} num_batches_tracked"] if tracked else []
    if others:
        parts.append(listing(others))
    return "; ".join(parts)


def listing(keys):
    """The first `MAX_LISTED` of `keys`, comma-separated, and how many more.

    Example:
    >>> listing(["a", "b"])
    'a, b'
    """
    shown = ", ".join(keys[:MAX_LISTED])
    more = len(keys) - MAX_LISTED
    return shown + (f" ... and {more} more" if more > 0 else "")


class CheckpointMismatchError(ValueError):
    """A checkpoint that does not fit the model; nothing was assigned.

    Attributes:
        missing: descriptions of the keys the model needs but did not get.
        unexpected: descriptions of the checkpoint keys the model lacks.
        mismatched: descriptions of the keys whose shapes differ.

    Example:
    >>> error = CheckpointMismatchError("bad", ["fc.bias (10,)"], [], [])
    >>> isinstance(error, ValueError), error.missing
    (True, ['fc.bias (10,)'])
    """

    def __init__(self, message, missing, unexpected, mismatched):
        super().__init__(message)
        self.missing = list(missing)
        self.unexpected = list(unexpected)
        self.mismatched = list(mismatched)


def format_problems(source, model_name, missing, unexpected, mismatched, hints):
    """One message naming every missing, unexpected and mismatched key.

    Args:
        source: the checkpoint's name.
        model_name: the Keras model's name.
        missing: lines `"key (...)"` for keys the model needs.
        unexpected: lines for checkpoint keys the model does not have.
        mismatched: lines for keys whose shapes differ.
        hints: extra lines suggesting a fix.

    Example:
    >>> print(format_problems("c.pth", "m", ["fc.bias (Keras predictions/bias)"], [], [], []))
    Cannot load c.pth into model 'm': 1 problem (1 missing key); no weight was assigned.
      missing key: fc.bias (Keras predictions/bias)
    """
    count = len(missing) + len(unexpected) + len(mismatched)
    kinds = [
        f"{len(items)} {label}{'s' if len(items) != 1 else ''}"
        for items, label in (
            (missing, "missing key"),
            (unexpected, "unexpected key"),
            (mismatched, "shape mismatch"),
        )
        if items
    ]
    lines = [
        f"Cannot load {source} into model {model_name!r}: {count} problem"
        f"{'s' if count != 1 else ''} ({', '.join(kinds)}); no weight was assigned."
    ]
    for items, label in (
        (missing, "missing key"),
        (unexpected, "unexpected key"),
        (mismatched, "shape mismatch"),
    ):
        lines += [f"  {label}: {item}" for item in items[:MAX_LISTED]]
        if len(items) > MAX_LISTED:
            lines.append(f"  ... and {len(items) - MAX_LISTED} more {label}s")
    lines += [f"Hint: {hint}" for hint in hints]
    return "\n".join(lines)
