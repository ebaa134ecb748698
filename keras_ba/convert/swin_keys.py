"""Key map of the official Swin Transformer (microsoft/Swin-Transformer).

| Keras layer                          | PyTorch module                          |
|--------------------------------------|-----------------------------------------|
| `patch_embed_proj`, `patch_embed_norm` | `patch_embed.proj`, `patch_embed.norm` |
| `stage{s}_block{i}_norm1` / `_norm2` | `layers.{s-1}.blocks.{i-1}.norm1` / `norm2` |
| `stage{s}_block{i}_attn`             | `...attn.qkv`, `...attn.proj`, `...attn.relative_position_bias_table` |
| `stage{s}_block{i}_mlp_fc1` / `_fc2` | `...mlp.fc1` / `...mlp.fc2`             |
| `stage{s}_block{i}_ba` / `_se`       | `...ba.*` / `...se.fc.{0,2}` (ours; not in official checkpoints) |
| `stage{s}_merge_norm` / `_reduction` | `layers.{s-1}.downsample.norm` / `.reduction` |
| `norm`, `predictions`                | `norm`, `head`                          |

The buffers `relative_position_index` and `attn_mask` are skipped by name:
the model recomputes them from its configuration (Swin's own
`load_pretrained` deletes them too).
"""

import re

from keras_ba.convert import common_keys, transforms, vit_keys

FAMILY = "swin"
HEAD_PREFIX = "head."
CLASSIFIER = "head"
MARKER = "patch_embed_proj"
IGNORED = (
    (
        re.compile(r"^layers\.\d+\.blocks\.\d+\.(attn\.relative_position_index|attn_mask)$"),
        "buffers the model recomputes (relative_position_index, attn_mask)",
    ),
)
_TOP = {
    "patch_embed_proj": "patch_embed.proj",
    "patch_embed_norm": "patch_embed.norm",
    "norm": "norm",
    "predictions": "head",
}
_BLOCK = re.compile(r"^stage(\d+)_block(\d+)_(norm1|norm2|attn|mlp_fc1|mlp_fc2|ba|se)$")
_MERGE = re.compile(r"^stage(\d+)_merge_(norm|reduction)$")


def layer_keys_fn(model):
    """`f(layer) -> {key: Target}` (None without a counterpart) for `model`.

    Example:
    >>> import keras
    >>> layer = keras.layers.Dense(3, name="stage1_block1_mlp_fc1")
    >>> layer.build((None, 2))
    >>> list(layer_keys_fn(None)(layer))
    ['layers.0.blocks.0.mlp.fc1.weight', 'layers.0.blocks.0.mlp.fc1.bias']
    """
    del model  # Swin keys depend on the layer name only
    return _layer_keys


def _layer_keys(layer):
    if layer.name in _TOP:
        return vit_keys.transformer_module_keys(layer, _TOP[layer.name])
    match = _MERGE.match(layer.name)
    if match:
        stage, part = match.groups()
        return vit_keys.transformer_module_keys(layer, f"layers.{int(stage) - 1}.downsample.{part}")
    match = _BLOCK.match(layer.name)
    if not match:
        return None
    stage, index, part = match.groups()
    prefix = f"layers.{int(stage) - 1}.blocks.{int(index) - 1}"
    if part in ("ba", "se"):
        return vit_keys.block_attention_keys(layer, prefix)
    if part == "attn":
        return _window_attention_keys(layer, f"{prefix}.attn")
    return vit_keys.transformer_module_keys(layer, f"{prefix}.{part.replace('_', '.')}")


def _window_attention_keys(layer, prefix):
    keys = {}
    common_keys._add(
        keys,
        f"{prefix}.relative_position_bias_table",
        layer.relative_position_bias_table,
        transforms.IDENTITY,
    )
    keys.update(common_keys.module_keys(layer.qkv, f"{prefix}.qkv"))
    keys.update(common_keys.module_keys(layer.proj, f"{prefix}.proj"))
    return keys
