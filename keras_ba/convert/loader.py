"""`load_torch_weights`: validate a whole checkpoint, then assign it."""

import numpy as np

from keras_ba.convert import keymap, report, sources


def load_torch_weights(model, source, strict=True, family=None):
    """Fills a keras_ba model with weights from the authors' PyTorch layout.

    Every key of the checkpoint is matched to one Keras weight by the
    family's key map (`resnet_keys`, `efficientnet_keys`), transposed to the
    Keras layout and cast to the weight's dtype. All checks run before any
    assignment: on error the model is left exactly as it was.

    Args:
        model: a model built by a keras_ba application (`BAResNet(...)` with
            any depths/widths/stem, `BAResNet50(attention="bav2")`,
            `BAEfficientNetB0()`...). `attention` must match the checkpoint
            (`"bav1"`, `"bav2"`, `"se"`, or None for a plain ResNet).
        source: a path to a `.pth`/`.pt`/`.bin`/`.ckpt` file (read with
            `torch.load(weights_only=True)`), a `.safetensors` or `.npz`
            file, or a mapping of names to arrays. `module.` prefixes and
            `{"state_dict": ...}` wrappers are handled.
        strict: if True (default), missing keys, unexpected keys and shape
            mismatches all raise, together, in one `ValueError`. If False,
            missing and unexpected keys are only reported; shape mismatches
            still raise. A model built with `include_top=False` skips the
            checkpoint's classifier in both modes.
        family: `"resnet"` or `"efficientnet"`; None detects it from the
            model's layer names.

    Returns:
        A `ConversionReport`; `print(report)` summarises it.

    Raises:
        ValueError: for an unreadable or unsafe checkpoint, or one that does
            not fit the model: a `CheckpointMismatchError` (a `ValueError`)
            whose message names the offending keys (the first 50 of each
            kind) and whose `missing`, `unexpected` and `mismatched`
            attributes list all of them.
        ImportError: when a `.pth` file is given and PyTorch is missing.

    Example:
    >>> import numpy as np
    >>> from keras_ba.applications import BAResNet
    >>> model = BAResNet([1, 1, 1, 1], [16, 16, 16, 16], block_type="basic",
    ...                  stem_filters=16, classes=10, input_shape=(32, 32, 3))
    >>> state = {"fc.weight": np.zeros((10, 16)), "fc.bias": np.ones(10)}
    >>> report = load_torch_weights(model, state, strict=False)
    >>> report.num_mapped, float(model.get_layer("predictions").bias.numpy()[0])
    (2, 1.0)
    """
    state = sources.read_state_dict(source)
    key_map = keymap.build_key_map(model, family)
    plan = _plan(state, key_map)
    problems = (plan["missing"], plan["unexpected"]) if strict else ([], [])
    if any(problems) or plan["mismatched"]:
        missing = [_describe_missing(key, key_map.targets[key]) for key in problems[0]]
        unexpected = [_describe_unexpected(key, state[key]) for key in problems[1]]
        message = report.format_problems(
            state.source,
            model.name,
            missing,
            unexpected,
            plan["mismatched"],
            _hints(state, key_map, plan),
        )
        raise report.CheckpointMismatchError(message, missing, unexpected, plan["mismatched"])
    for variable, value in plan["assignments"]:
        variable.assign(value)
    return report.ConversionReport(
        source=state.source,
        model_name=model.name,
        family=key_map.family,
        mapped=plan["mapped"],
        skipped=state.skipped + plan["skipped"],
        missing=plan["missing"],
        unexpected=plan["unexpected"],
        notes=state.notes,
        num_values=int(sum(value.size for _, value in plan["assignments"])),
    )


def _plan(state, key_map):
    """Checks every key and converts every array; assigns nothing."""
    plan = dict(assignments=[], mapped=[], mismatched=[], skipped=[])
    for key, (variable, transform) in key_map.targets.items():
        if key not in state:
            continue
        expected = tuple(transform.torch_shape(tuple(variable.shape)))
        found = tuple(state[key].shape)
        if found != expected:
            plan["mismatched"].append(
                f"{key}: checkpoint {found} vs model {expected} "
                f"(Keras {variable.path} {tuple(variable.shape)})"
            )
            continue
        value = transform(state[key], variable.shape).astype(variable.dtype)
        plan["assignments"].append((variable, value))
        plan["mapped"].append((key, variable.path, transform.name))
    plan["missing"] = [key for key in key_map.targets if key not in state]
    unexpected = [key for key in state if key not in key_map.targets]
    if not key_map.has_head:
        plan["skipped"] = [k for k in unexpected if k.startswith(key_map.head_prefix)]
    plan["unexpected"] = [k for k in unexpected if k not in plan["skipped"]]
    return plan


def _describe_missing(key, target):
    shape = target.transform.torch_shape(tuple(target.variable.shape))
    return f"{key} {tuple(shape)} (for Keras {target.variable.path})"


def _describe_unexpected(key, array):
    return f"{key} {tuple(np.shape(array))}"


def _hints(state, key_map, plan):
    hints = []
    found = keymap.detect_attention(state)
    built = keymap.detect_attention(key_map.targets)
    if (plan["missing"] or plan["unexpected"]) and found != built:
        hints.append(
            f"the checkpoint has the {found or 'no-attention'} layout but the "
            f"model was built for {built or 'no attention'}: build it with "
            f"attention={found!r}."
        )
    head = key_map.head_prefix + "weight"
    if any(item.startswith(head + ":") for item in plan["mismatched"]):
        hints.append(
            f"the classifier has {state[head].shape[0]} classes in the checkpoint: "
            f"build the model with classes={state[head].shape[0]}, or with "
            "include_top=False to drop it."
        )
    if not hints and len(plan["missing"]) > 10 and len(plan["unexpected"]) > 10:
        hints.append("many keys differ: was the checkpoint saved from another depth or family?")
    return hints
