"""Choices shared by the library and the command line (no heavy imports).

Example:
>>> PRECISIONS["bfloat16"]
'mixed_bfloat16'
"""

DIGITS = "digits"  # the embedded data set
TFDS_PREFIX = "tfds:"
CACHE_MODES = ("auto", "memory", "none")
PRECISIONS = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
SUBSETS = ("validation", "train")
JIT_CHOICES = {"auto": "auto", "on": True, "off": False}
EXPORT_FORMATS = ("saved_model", "onnx", "litert")
QUANTIZE_MODES = ("none", "dynamic", "int8")  # LiteRT export
