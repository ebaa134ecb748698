"""Every docstring example in every module of keras_ba runs and prints what it claims.

Modules are discovered, not listed, so a new module's examples run too.
Examples that would build a full-size model are marked `# doctest: +SKIP`
in the library (test budget); their builders are covered shapes-only by the
family tests.
"""

import doctest
import importlib
import pkgutil

import pytest
from conftest import only_in

import keras_ba

pytestmark = only_in(
    "tensorflow",
    "torch",
    reason="docstring examples run in the TensorFlow and PyTorch passes (JAX compiles "
    "every eager op; the layers' JAX numerics are the family and parity tests')",
)

MODULES = sorted(
    name
    for _, name, _ in pkgutil.walk_packages(keras_ba.__path__, prefix="keras_ba.")
    if not name.endswith("__main__")
)


def test_every_module_is_collected():
    assert {"keras_ba.layers.registry", "keras_ba.applications.blocks"} <= set(MODULES)


@pytest.mark.parametrize("module_name", ["keras_ba"] + MODULES)
def test_docstring_examples(module_name):
    module = importlib.import_module(module_name)
    result = doctest.testmod(
        module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS, verbose=False
    )
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {module_name}"
