"""`load_torch_weights`: validate a whole checkpoint, then assign it."""

import warnings

import numpy as np

from keras_ba.convert import attention, keymap, report, sources, trunk_check
from keras_ba.convert.common_keys import ATTENTION, HEAD


def load_torch_weights(model, source, strict=True, family=None):
    """Fills a keras_ba model with weights from a PyTorch state dict.

    Every key of the checkpoint is matched to one Keras weight by the
    family's key map (`resnet_keys`, `efficientnet_keys`,
    `mobilenet_v3_keys`), transposed to the Keras layout and cast to the
    weight's dtype. All checks run before any assignment: on error the model
    is left exactly as it was.

    Args:
        model: a model built by a keras_ba application (`BAResNet(...)` with
            any depths/widths/stem, `BAResNet50(attention="bav2")`,
            `BAResNeXt50_32x4d()`, `BAEfficientNetB0()`,
            `BAMobileNetV3Small()`...). Unless `strict="trunk"`, `attention`
            must match the checkpoint (`"bav1"`, `"bav2"`, `"se"`, or None
            for a plain ResNet).
        source: a path to a `.pth`/`.pt`/`.bin`/`.ckpt` file (read with
            `torch.load(weights_only=True)`), a `.safetensors` or `.npz`
            file, or a mapping of names to arrays. `module.` prefixes and
            `{"state_dict": ...}` wrappers (also holding epochs, accuracies
            as NumPy scalars or optimizer state) are handled.
        strict: True (default): missing keys, unexpected keys and shape
            mismatches all raise, together, in one `ValueError`. False:
            missing and unexpected keys are only reported; shape mismatches
            still raise. `"trunk"`: load a pretrained trunk, e.g. torchvision's
            or timm's ImageNet ResNet / ResNeXt, into a BA model: every
            non-attention weight must be found with its shape (anything else
            raises as with True), the attention layers are left as they are
            (freshly initialised), the checkpoint's own attention weights, if
            any, are skipped, and the classifier is loaded only when its shape
            matches. A model built with `include_top=False` skips the
            checkpoint's classifier in every mode. Keys the authors' layouts
            carry but never use (BA-ResNeXt's gate layers) are always skipped.
        family: `"resnet"`, `"efficientnet"` or `"mobilenet_v3"`; None
            detects it from the model's layer names.

    Returns:
        A `ConversionReport`: `mapped` lists every weight loaded,
        `not_loaded` every weight left as it was, `skipped` every checkpoint
        key not used, `trunk` which trunk the model has (`trunk_style`) and
        whether it computes the authors' function; `print(report)`
        summarises it. Weight shapes cannot show how a trunk pads or its
        BatchNorm epsilon: loading into a trunk without the authors'
        conventions (BA-MobileNetV3's default `trunk_style="keras"`) works,
        warns (`UserWarning`) and says so in the report; build the model
        with `trunk_style="pytorch"` to get the authors' function.

    Raises:
        ValueError: for an invalid `strict`, an unreadable or unsafe
            checkpoint, or one that does not fit the model: a
            `CheckpointMismatchError` (a `ValueError`) whose message names the
            offending keys (the first 50 of each kind) and whose `missing`,
            `unexpected` and `mismatched` attributes list all of them.
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
    if not (isinstance(strict, bool) or strict == "trunk"):
        raise ValueError(
            "Received an invalid value for `strict`, expected True, False or "
            f"'trunk'. Received: strict={strict!r}"
        )
    trunk = strict == "trunk"
    state = sources.read_state_dict(source)
    key_map = keymap.build_key_map(model, family, allow_unmapped=trunk)
    if key_map.rename is not None:
        state = key_map.rename(state)
    plan = _plan(state, key_map, trunk)
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
            _hints(state, key_map, plan, trunk),
        )
        raise report.CheckpointMismatchError(message, missing, unexpected, plan["mismatched"])
    for variable, value in plan["assignments"]:
        variable.assign(value)
    checked = _check_trunk(model, key_map.family)
    return report.ConversionReport(
        source=state.source,
        model_name=model.name,
        family=key_map.family,
        mapped=plan["mapped"],
        skipped=state.skipped + plan["skipped"],
        missing=[] if trunk else plan["missing"],
        unexpected=[] if trunk else plan["unexpected"],
        notes=state.notes + plan["notes"],
        num_values=int(sum(value.size for _, value in plan["assignments"])),
        mode="trunk" if trunk else ("strict" if strict else "non-strict"),
        not_loaded=plan["not_loaded"],
        trunk=checked,
    )


def _check_trunk(model, family):
    """The `TrunkCheck` of `model`; warns when it is not the authors' trunk."""
    styles = keymap.family_trunk_styles(family)
    if styles is None:
        return None
    checked = trunk_check.check_trunk(model, styles, family)
    if not checked.matches_authors:
        warnings.warn(f"Model {model.name!r}: {checked.summary}.", UserWarning, stacklevel=3)
    return checked


def _plan(state, key_map, trunk):
    """Checks every key and converts every array; assigns nothing."""
    plan = dict(assignments=[], mapped=[], mismatched=[], not_loaded=[])
    skipped = {}  # reason -> checkpoint keys
    targets = key_map.targets
    for key, (variable, transform, role) in targets.items():
        if trunk and role == ATTENTION:
            plan["not_loaded"].append((variable.path, "attention, trunk mode"))
            if key in state:
                skipped.setdefault("attention weights (trunk mode)", []).append(key)
            continue
        if key not in state:
            if trunk and role == HEAD:
                plan["not_loaded"].append((variable.path, "classifier not in the checkpoint"))
            continue
        expected = tuple(transform.torch_shape(tuple(variable.shape)))
        found = tuple(state[key].shape)
        if found != expected and trunk and role == HEAD:
            plan["not_loaded"].append((variable.path, "classifier of another size"))
            skipped.setdefault(_other_classifier(state, key_map), []).append(key)
        elif found != expected:
            plan["mismatched"].append(
                f"{key}: checkpoint {found} vs model {expected} "
                f"(Keras {variable.path} {tuple(variable.shape)})"
            )
        else:
            value = transform(state[key], variable.shape).astype(variable.dtype)
            plan["assignments"].append((variable, value))
            plan["mapped"].append((key, variable.path, transform.name))
    for layer in key_map.unmapped:
        reason = f"no counterpart in the {key_map.family} layout"
        plan["not_loaded"] += [(weight.path, reason) for weight in layer.weights]
    plan["missing"] = [
        key
        for key, target in targets.items()
        if key not in state and not (trunk and target.role in (ATTENTION, HEAD))
    ]
    if not trunk:
        plan["not_loaded"] += [
            (targets[key].variable.path, "missing in the checkpoint") for key in plan["missing"]
        ]
    plan["unexpected"] = []
    for key in state:
        if key in targets:
            continue
        reason = key_map.ignore_reason(key)
        if reason is None and not key_map.has_head and key.startswith(key_map.head_prefix):
            reason = "classifier weights (the model has include_top=False)"
        if reason is None and trunk and attention.is_attention_key(key):
            reason = "attention weights (trunk mode)"
        if reason is None:
            plan["unexpected"].append(key)
        else:
            skipped.setdefault(reason, []).append(key)
    plan["skipped"] = [key for keys in skipped.values() for key in keys]
    plan["notes"] = [
        f"skipped {len(keys)} {reason}: {report.listing(keys)}" for reason, keys in skipped.items()
    ]
    return plan


def _other_classifier(state, key_map):
    weight = f"{key_map.classifier}.weight"
    target = key_map.targets.get(weight)
    if weight not in state or target is None:
        return "classifier weights of another size"
    expected = tuple(target.transform.torch_shape(tuple(target.variable.shape)))
    return (
        f"classifier weights of another size ({weight}: checkpoint "
        f"{tuple(state[weight].shape)}, model {expected})"
    )


def _describe_missing(key, target):
    shape = target.transform.torch_shape(tuple(target.variable.shape))
    return f"{key} {tuple(shape)} (for Keras {target.variable.path})"


def _describe_unexpected(key, array):
    return f"{key} {tuple(np.shape(array))}"


def _hints(state, key_map, plan, trunk):
    hints = []
    targets = key_map.targets
    missing_attention = [key for key in plan["missing"] if targets[key].role == ATTENTION]
    if (
        not trunk
        and missing_attention
        and len(missing_attention) == len(plan["missing"])
        and all(attention.is_attention_key(key) for key in plan["unexpected"])
    ):
        hints.append(
            "the checkpoint has no weights for the model's attention layers "
            "(an ImageNet trunk from torchvision, timm or an official transformer "
            "checkpoint?): load it with strict='trunk' (`keras-ba convert --from "
            "torchvision`, or `--from official`) to fill "
            "every other weight and keep the attention layers freshly initialised."
        )
    found = attention.detect_attention(state)
    built = attention.detect_attention(targets)
    if not trunk and (plan["missing"] or plan["unexpected"]) and found != built:
        hints.append(
            f"the checkpoint has the {found or 'no-attention'} layout but the "
            f"model was built for {built or 'no attention'}: build it with "
            f"attention={found!r}."
        )
    head = key_map.classifier + ".weight"
    if head in state and any(item.startswith(head + ":") for item in plan["mismatched"]):
        hints.append(
            f"the classifier has {state[head].shape[0]} classes in the checkpoint: "
            f"build the model with classes={state[head].shape[0]}, or with "
            "include_top=False to drop it."
        )
    if not hints and len(plan["missing"]) > 10 and len(plan["unexpected"]) > 10:
        hints.append("many keys differ: was the checkpoint saved from another depth or family?")
    return hints
