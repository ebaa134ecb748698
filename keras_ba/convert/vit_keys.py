"""Key-map pieces shared by the vision transformers (Swin, PVT, CSWin).

Example:
>>> import keras
>>> norm = keras.layers.LayerNormalization(epsilon=1e-5)
>>> norm.build((None, 8))
>>> list(layer_norm_keys(norm, "norm"))
['norm.weight', 'norm.bias']
"""

from keras import layers

from keras_ba.convert import common_keys


def layer_norm_keys(layer, prefix):
    """`nn.LayerNorm` keys: `weight` (gamma) and `bias` (beta).

    Example:
    >>> import keras
    >>> norm = keras.layers.LayerNormalization()
    >>> norm.build((None, 4))
    >>> [tuple(t.variable.shape) for t in layer_norm_keys(norm, "n").values()]
    [(4,), (4,)]
    """
    if not isinstance(layer, layers.LayerNormalization):
        raise ValueError(f"Layer {layer.name!r} is not a LayerNormalization layer.")
    keys = {}
    common_keys._add(keys, f"{prefix}.weight", layer.gamma)
    common_keys._add(keys, f"{prefix}.bias", layer.beta)
    return keys


def transformer_module_keys(layer, prefix):
    """Keys of a LayerNorm, Linear or conv layer (`common_keys.module_keys`).

    Example:
    >>> import keras
    >>> dense = keras.layers.Dense(3)
    >>> dense.build((None, 2))
    >>> list(transformer_module_keys(dense, "head"))
    ['head.weight', 'head.bias']
    """
    if isinstance(layer, layers.LayerNormalization):
        return layer_norm_keys(layer, prefix)
    return common_keys.module_keys(layer, prefix)


def block_attention_keys(layer, prefix):
    """Our BA (`{prefix}.ba.*`) or SE (`{prefix}.se.fc.{0,2}`) of a block.

    No official checkpoint has them; the names follow the BA-ResNet layout
    so that `keras_ba.convert.attention` recognises them.

    Example:
    >>> from keras_ba.layers import SqueezeExcite
    >>> se = SqueezeExcite(reduction=4)
    >>> se.build((None, 4, 8))
    >>> list(block_attention_keys(se, "layers.0.blocks.0"))
    ['layers.0.blocks.0.se.fc.0.weight', 'layers.0.blocks.0.se.fc.2.weight']
    """
    return common_keys.attention_keys(layer, f"{prefix}.ba", se_prefix=f"{prefix}.se.fc")
