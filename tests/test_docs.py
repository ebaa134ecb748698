"""The docstring examples run and print what they claim."""

import doctest
import importlib

import pytest

MODULES = [
    "keras_ba.layers._utils",
    "keras_ba.layers.bridge_attention",
    "keras_ba.layers.squeeze_excite",
    "keras_ba.layers.factory",
    "keras_ba.applications.resnet",
    "keras_ba.applications.registry",
]


@pytest.mark.parametrize("module_name", MODULES)
def test_docstring_examples(module_name):
    module = importlib.import_module(module_name)
    result = doctest.testmod(
        module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS, verbose=False
    )
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {module_name}"
