"""Key-map pieces shared by the model families: one Keras layer -> keys.

A key map is an ordered `dict` from a PyTorch state-dict key to a
`Target`: the Keras variable, the `Transform` that produces it, and its
role (`"trunk"`, `"attention"` or `"head"`), which the trunk mode of
`load_torch_weights` uses to leave attention layers as they are.
"""

import collections

import keras
from keras import layers

from keras_ba.convert import transforms
from keras_ba.layers import BridgeAttention, SqueezeExcite

TRUNK, ATTENTION, HEAD = "trunk", "attention", "head"
Target = collections.namedtuple("Target", ["variable", "transform", "role"], defaults=(TRUNK,))


def _add(keys, name, variable, transform=transforms.IDENTITY, role=TRUNK):
    if variable is not None:
        keys[name] = Target(variable, transform, role)


def leaf_layers(model):
    """The layers of `model`, nested models flattened, in order.

    Example:
    >>> import keras
    >>> inner = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="d")])
    >>> [layer.name for layer in leaf_layers(keras.Sequential([inner]))]
    ['d']
    """
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from leaf_layers(layer)
        else:
            yield layer


def collect_keys(model, layer_keys, family, allow_unmapped=False):
    """Runs `layer_keys(layer)` over every layer with weights.

    Args:
        model: the Keras model.
        layer_keys: `f(layer) -> {key: Target}`, or None for a layer with no
            counterpart in the family's layout.
        family: the family name, for the error message.
        allow_unmapped: if False, layers without a counterpart raise.

    Returns:
        `(keys, unmapped_layers)`.

    Raises:
        ValueError: for layers without a counterpart, unless allowed.

    Example:
    >>> import keras
    >>> inputs = keras.Input((4,))
    >>> model = keras.Model(inputs, keras.layers.Dense(2, name="fc")(inputs))
    >>> keys, unmapped = collect_keys(model, lambda layer: module_keys(layer, "fc"), "toy")
    >>> list(keys), unmapped
    (['fc.weight', 'fc.bias'], [])
    """
    keys, unmapped = {}, []
    for layer in leaf_layers(model):
        if not layer.weights:
            continue
        layer_map = layer_keys(layer)
        if layer_map is None:
            unmapped.append(layer)
        else:
            keys.update(layer_map)
    if unmapped and not allow_unmapped:
        raise unmapped_layers_error([layer.name for layer in unmapped], family)
    return keys, unmapped


def batch_norm_keys(layer, prefix):
    """`BatchNorm{1,2}d` keys: weight, bias, running_mean, running_var.

    Example:
    >>> from keras import layers
    >>> bn = layers.BatchNormalization()
    >>> bn.build((None, 4))
    >>> list(batch_norm_keys(bn, "bn1"))
    ['bn1.weight', 'bn1.bias', 'bn1.running_mean', 'bn1.running_var']
    """
    keys = {}
    _add(keys, f"{prefix}.weight", layer.gamma)
    _add(keys, f"{prefix}.bias", layer.beta)
    _add(keys, f"{prefix}.running_mean", layer.moving_mean)
    _add(keys, f"{prefix}.running_var", layer.moving_variance)
    return keys


def kernel_keys(layer, prefix, transform):
    """`{prefix}.weight` (and `.bias` when the layer has one)."""
    keys = {}
    _add(keys, f"{prefix}.weight", layer.kernel, transform)
    _add(keys, f"{prefix}.bias", getattr(layer, "bias", None))
    return keys


def module_keys(layer, prefix):
    """Keys of a plain conv, depthwise conv, dense or batch-norm layer.

    Raises:
        ValueError: for a layer type without a PyTorch counterpart here.

    Example:
    >>> from keras import layers
    >>> dense = layers.Dense(10)
    >>> dense.build((None, 512))
    >>> {k: t.transform.name for k, t in module_keys(dense, "fc").items()}
    {'fc.weight': 'linear [out,in] -> [in,out]', 'fc.bias': 'copy'}
    """
    if isinstance(layer, layers.BatchNormalization):
        return batch_norm_keys(layer, prefix)
    if isinstance(layer, layers.DepthwiseConv2D):
        return kernel_keys(layer, prefix, transforms.DEPTHWISE)
    if isinstance(layer, layers.Conv2D):
        return kernel_keys(layer, prefix, transforms.CONV)
    if isinstance(layer, layers.Dense):
        return kernel_keys(layer, prefix, transforms.LINEAR)
    raise ValueError(
        f"Cannot map layer {layer.name!r} of type {type(layer).__name__} to a "
        f"PyTorch module ({prefix!r})."
    )


def bridge_attention_keys(layer, prefix):
    """Keys of the authors' BA module for a `BridgeAttention` layer.

    BAv1 (`BA_module.py`): `pre_fusions.{j}` (Linear, BatchNorm1d) for the
    earlier features, `cur_fusion` for the last one, `generation.1` (the
    Linear after the ReLU). BAv2 (`ba_resnet_v2_1.py`): `fusions.{j}.0`,
    `proj` (Linear over the branch axis), `generation.0` (BatchNorm1d),
    `generation.2` (Linear).

    Example:
    >>> from keras_ba.layers import BridgeAttention
    >>> ba = BridgeAttention(version="v2")
    >>> ba.build([(None, 4, 4, 16), (None, 4, 4, 64)])
    >>> sorted(bridge_attention_keys(ba, "ba"))[:3]
    ['ba.fusions.0.0.weight', 'ba.fusions.1.0.weight', 'ba.generation.0.bias']
    """
    if not isinstance(layer, BridgeAttention):
        raise ValueError(f"Layer {layer.name!r} is not a BridgeAttention layer.")
    if layer.version == "v1":
        return _bav1_keys(layer, prefix)
    return _bav2_keys(layer, prefix)


def attention_keys(layer, prefix, se_transform=transforms.LINEAR, se_prefix=None):
    """Keys of a known attention layer, or None for another kind.

    `BridgeAttention` -> `bridge_attention_keys(layer, prefix)`;
    `SqueezeExcite` (and `PixelGate`, which has the same weights) ->
    `squeeze_excite_keys(layer, se_prefix or prefix, se_transform)`. A layer
    of any other class (a user's own attention) has no counterpart in the
    authors' layouts.

    Example:
    >>> from keras_ba.layers import SqueezeExcite
    >>> se = SqueezeExcite(reduction=16)
    >>> se.build((None, 4, 4, 64))
    >>> sorted({t.role for t in attention_keys(se, "se", se_prefix="se.fc").values()})
    ['attention']
    """
    if isinstance(layer, BridgeAttention):
        return bridge_attention_keys(layer, prefix)
    if isinstance(layer, SqueezeExcite):
        return squeeze_excite_keys(layer, se_prefix or prefix, se_transform)
    return None


def _bav1_keys(layer, prefix):
    keys = {}
    last = layer.num_features - 1
    for index, (dense, norm) in enumerate(
        zip(layer.squeeze_layers, layer.squeeze_norms, strict=True)
    ):
        module = f"{prefix}.cur_fusion" if index == last else f"{prefix}.pre_fusions.{index}"
        keys.update(kernel_keys(dense, f"{module}.0", transforms.LINEAR))
        keys.update(batch_norm_keys(norm, f"{module}.1"))
    keys.update(kernel_keys(layer.excitation, f"{prefix}.generation.1", transforms.LINEAR))
    return _as_attention(keys)


def _bav2_keys(layer, prefix):
    keys = {}
    for index, dense in enumerate(layer.squeeze_layers):
        keys.update(kernel_keys(dense, f"{prefix}.fusions.{index}.0", transforms.LINEAR))
    keys.update(kernel_keys(layer.selection, f"{prefix}.proj", transforms.LINEAR))
    keys.update(batch_norm_keys(layer.norm, f"{prefix}.generation.0"))
    keys.update(kernel_keys(layer.excitation, f"{prefix}.generation.2", transforms.LINEAR))
    return _as_attention(keys)


def squeeze_excite_keys(layer, prefix, transform=transforms.LINEAR):
    """Keys of an SE module stored as `{prefix}.0` (squeeze), `{prefix}.2`.

    The authors' SE-ResNet uses Linear layers (`se.fc.0`, `se.fc.2`), their
    MobileNetV3 too (`att.fc.0`, `att.fc.2`, with bias); their EfficientNet's
    first block uses 1x1 convs with bias (`att.0`, `att.2`, a `PixelGate`),
    mapped with `transforms.POINTWISE_TO_DENSE`.

    Example:
    >>> from keras_ba.layers import SqueezeExcite
    >>> se = SqueezeExcite(reduction=16)
    >>> se.build((None, 4, 4, 64))
    >>> list(squeeze_excite_keys(se, "se.fc"))
    ['se.fc.0.weight', 'se.fc.2.weight']
    """
    if not isinstance(layer, SqueezeExcite):
        raise ValueError(f"Layer {layer.name!r} is not a SqueezeExcite layer.")
    keys = kernel_keys(layer.squeeze, f"{prefix}.0", transform)
    keys.update(kernel_keys(layer.excitation, f"{prefix}.2", transform))
    return _as_attention(keys)


def _as_attention(keys):
    return {key: target._replace(role=ATTENTION) for key, target in keys.items()}


def unmapped_layers_error(names, family):
    """The error for Keras layers with weights but no PyTorch counterpart."""
    return ValueError(
        f"These layers of the model have weights but no counterpart in the "
        f"authors' {family} layout, so a checkpoint cannot fill them: "
        f"{', '.join(names)}. Was the model built with keras_ba's "
        f"{family} builder (layer names unchanged)?"
    )
