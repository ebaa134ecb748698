"""The package's shape: concepts in folders, imports only downward, short
modules, one table of named models, old import paths kept for one release.

Source-reading checks are backend-independent: they run in one pass.
"""

import ast
import importlib
import inspect
import warnings

import pytest
from conftest import REPO_ROOT, only_in, shapes_only

from keras_ba.applications import registry

PACKAGE = REPO_ROOT / "keras_ba"
MAX_MODULE_LINES = 600
once = only_in("jax", reason="reads the package's source: backend-independent")


def _module_name(path):
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path):
    """keras_ba modules imported anywhere in `path`, function bodies included."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return {module for module in found if module.startswith("keras_ba")}


def _graph():
    modules = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    return {name: _imports(path) & set(modules) - {name} for name, path in modules.items()}


def _cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def _without_package_inits(graph):
    """A package's `__init__` importing its own modules is not a circle."""
    return {
        module: {t for t in targets if not module.startswith(t + ".")}
        for module, targets in graph.items()
    }


@once
def test_no_import_circle_even_inside_functions():
    graph = _without_package_inits(_graph())
    assert _cycles(graph) == []


@once
def test_the_cycle_finder_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]


@once
def test_no_module_over_600_lines():
    long = {
        str(path.relative_to(REPO_ROOT)): n
        for path in PACKAGE.rglob("*.py")
        if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long


@once
def test_training_is_under_a_quarter_of_the_package():
    def lines(folder):
        return sum(len(p.read_text().splitlines()) for p in folder.rglob("*.py"))

    share = lines(PACKAGE / "training") / lines(PACKAGE)
    assert share < 0.25, f"training/ holds {share:.0%} of keras_ba's lines"


@once
def test_lower_packages_never_import_training_or_the_cli():
    graph = _graph()
    lower = ("keras_ba.data", "keras_ba.runs", "keras_ba.export", "keras_ba.utils",
             "keras_ba.layers", "keras_ba.applications", "keras_ba.cv", "keras_ba.analysis")  # fmt: skip
    upward = {
        module: sorted(t for t in targets if t.startswith(("keras_ba.training", "keras_ba.cli")))
        for module, targets in graph.items()
        if module.startswith(lower)
    }
    assert not {m: t for m, t in upward.items() if t}


MOVED = {
    "keras_ba.training.run_folder": "keras_ba.runs.folder",
    "keras_ba.training.data": "keras_ba.data.pipeline",
    "keras_ba.training.export": "keras_ba.export.saved_model",
    "keras_ba.training.multiprocess": "keras_ba.training.distributed.launch",
    "keras_ba.training.errors": "keras_ba.errors",
}


@once
@pytest.mark.parametrize("old", list(MOVED))
def test_old_import_paths_warn_and_give_the_new_module(old):
    import sys

    sys.modules.pop(old, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    assert module is importlib.import_module(MOVED[old])
    assert any(
        issubclass(w.category, DeprecationWarning) and MOVED[old] in str(w.message) for w in caught
    )


def test_the_table_is_the_only_list_of_named_models():
    from keras_ba import applications
    from keras_ba.training import models

    assert applications.list_models() == sorted(registry.MODELS)
    for name, entry in registry.MODELS.items():
        builder = registry.get_model_builder(name)
        assert builder is getattr(applications, entry.builder)
        parameters = inspect.signature(builder).parameters.values()
        assert all(p.kind in (p.KEYWORD_ONLY, p.VAR_KEYWORD) for p in parameters), name
        assert builder.__doc__.startswith("Instantiates "), name
        assert f"`--model {name}`" in builder.__doc__
    assert models.check_model_name("ba_resnet18") is applications.BAResNet18


def test_named_builders_refuse_changing_their_structure():
    from keras_ba.applications import BAResNet50

    with pytest.raises(TypeError, match="BAResNet50 fixes `stackwise_num_blocks`"):
        BAResNet50(stackwise_num_blocks=[1, 1, 1, 1])
    model = shapes_only(BAResNet50, classes=10, attention="se", input_shape=(64, 64, 3))
    assert model.name == "ba_resnet50" and model.get_layer("conv2_block1_se")


def test_data_format_auto_reads_the_table():
    from keras_ba.training.layout import resolve_data_format

    for name, entry in registry.MODELS.items():
        expected = "channels_first" if entry.channels_first else "channels_last"
        assert resolve_data_format("auto", name, backend="torch") == expected
        assert resolve_data_format("auto", name, backend="jax") == "channels_last"


def test_backbone_refuses_keras_applications_input_shape():
    from keras_ba.applications import BAResNetBackbone

    with pytest.raises(ValueError, match=r"takes `image_shape=`.*image_shape=\(128, 128, 3\)"):
        BAResNetBackbone([1, 1, 1, 1], block_type="basic", input_shape=(128, 128, 3))
