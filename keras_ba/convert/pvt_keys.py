"""Key map of the official PVT v1 (whai362/PVT, `classification/pvt.py`).

| Keras layer                                | PyTorch module                       |
|--------------------------------------------|--------------------------------------|
| `pos_embed{s}` (`embeddings`), `cls_token` | `pos_embed{s}`, `cls_token` (parameters) |
| `patch_embed{s}_proj` / `_norm`            | `patch_embed{s}.proj` / `.norm`      |
| `block{s}_{j}_norm1` / `_norm2`            | `block{s}.{j}.norm1` / `.norm2`      |
| `block{s}_{j}_attn` (`q`, `kv`, `proj`, `sr`, `norm`) | `block{s}.{j}.attn.q` / `.kv` / `.proj` / `.sr` / `.norm` |
| `block{s}_{j}_mlp_fc1` / `_fc2`            | `block{s}.{j}.mlp.fc1` / `.fc2`      |
| `block{s}_{j}_ba` / `_se`                  | `block{s}.{j}.ba.*` / `.se.fc.{0,2}` (ours; not in official checkpoints) |
| `norm`, `predictions`                      | `norm`, `head`                       |

PVT v1 has no buffers. A model built with `include_top=False` has no
`norm` layer: the checkpoint's final norm is then skipped like its head.
"""

import re

from keras_ba.convert import common_keys, transforms, vit_keys

FAMILY = "pvt"
HEAD_PREFIX = "head."
CLASSIFIER = "head"
MARKER = "pos_embed1"
IGNORED = (
    (
        re.compile(r"^norm\.(weight|bias)$"),
        "final norm of the classifier head (the model has include_top=False)",
    ),
)
_TOP = {"norm": "norm", "predictions": "head"}
_EMBED = re.compile(r"^patch_embed(\d)_(proj|norm)$")
_BLOCK = re.compile(r"^block(\d)_(\d+)_(norm1|norm2|attn|mlp_fc1|mlp_fc2|ba|se)$")


def layer_keys_fn(model):
    """`f(layer) -> {key: Target}` (None without a counterpart) for `model`.

    Example:
    >>> import keras
    >>> layer = keras.layers.Dense(3, name="block2_1_mlp_fc1")
    >>> layer.build((None, 2))
    >>> list(layer_keys_fn(None)(layer))
    ['block2.1.mlp.fc1.weight', 'block2.1.mlp.fc1.bias']
    """
    del model  # PVT keys depend on the layer name only
    return _layer_keys


def _layer_keys(layer):
    keys = {}
    if layer.name.startswith("pos_embed"):
        common_keys._add(keys, layer.name, getattr(layer, "embeddings", None))
        return keys
    if layer.name == "cls_token":
        common_keys._add(keys, "cls_token", getattr(layer, "token", None))
        return keys
    if layer.name in _TOP:
        return vit_keys.transformer_module_keys(layer, _TOP[layer.name])
    match = _EMBED.match(layer.name)
    if match:
        stage, part = match.groups()
        return vit_keys.transformer_module_keys(layer, f"patch_embed{stage}.{part}")
    match = _BLOCK.match(layer.name)
    if not match:
        return None
    stage, index, part = match.groups()
    prefix = f"block{stage}.{index}"
    if part in ("ba", "se"):
        return vit_keys.block_attention_keys(layer, prefix)
    if part == "attn":
        return _attention_keys(layer, f"{prefix}.attn")
    return vit_keys.transformer_module_keys(layer, f"{prefix}.{part.replace('_', '.')}")


def _attention_keys(layer, prefix):
    keys = {}
    for name in ("q", "kv", "proj"):
        keys.update(common_keys.module_keys(getattr(layer, name), f"{prefix}.{name}"))
    if getattr(layer, "sr", None) is not None:
        keys.update(common_keys.kernel_keys(layer.sr, f"{prefix}.sr", transforms.CONV))
        keys.update(vit_keys.layer_norm_keys(layer.norm, f"{prefix}.norm"))
    return keys
