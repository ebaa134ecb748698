"""The command line answers at once, quietly; the install is lean; the repository is tidy.

Backend-independent subprocess checks run in one pass (named in each skip
reason); the file checks are instant and run everywhere.
"""

import re

import pytest
from conftest import BACKEND, REPO_ROOT, run_command, run_python

HEAVY = ("keras", "tensorflow", "jax", "torch", "keras_cv", "sklearn", "matplotlib", "tf_keras_vis")


@pytest.mark.skipif(BACKEND != "tensorflow", reason="backend-independent: the TensorFlow pass")
def test_help_of_every_command_imports_no_framework():
    # What makes `keras-ba --help` slow is importing Keras (which starts its
    # backend), TensorFlow or keras-cv: none may be imported to parse arguments.
    result = run_python(
        "import contextlib, io, sys, time\n"
        "import keras_ba\n"
        f"heavy = {HEAVY!r}\n"
        "loaded = lambda: sorted(m for m in heavy if m in sys.modules)\n"
        "print('AFTER_IMPORT', loaded())\n"
        "from keras_ba.cli import build_parser\n"
        "parser = build_parser()\n"
        "commands = sorted(parser._subparsers._group_actions[0].choices)\n"
        "for argv in [['--help']] + [[c, '--help'] for c in commands]:\n"
        "    start = time.perf_counter()\n"
        "    with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "        try:\n"
        "            build_parser().parse_args(argv)\n"
        "        except SystemExit:\n"
        "            pass\n"
        "    assert 'usage: keras-ba' in out.getvalue(), argv\n"
        "print('COMMANDS', commands)\n"
        "print('AFTER_HELP', loaded())\n"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "AFTER_IMPORT []" in result.stdout, result.stdout
    assert "AFTER_HELP []" in result.stdout, result.stdout
    commands = re.search(r"COMMANDS \[(.*)\]", result.stdout).group(1)
    for command in ("train", "evaluate", "predict", "export", "convert"):
        assert f"'{command}'" in commands


def test_lazy_package_names_still_import():
    from keras_ba import BridgeAttention, SqueezeExcite, applications, layers

    assert BridgeAttention is layers.BridgeAttention and SqueezeExcite is layers.SqueezeExcite
    assert callable(applications.BAResNet50)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        import keras_ba

        keras_ba.nope  # noqa: B018


def _pyproject():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    with open(REPO_ROOT / "pyproject.toml", "rb") as file:
        return tomllib.load(file)["project"]


def _names(requirements):
    return {re.split(r"[<>=\[; ]", r, maxsplit=1)[0] for r in requirements}


def test_the_base_install_is_lean_and_extras_bring_the_rest():
    project = _pyproject()
    assert _names(project["dependencies"]) == {"keras", "numpy", "h5py"}
    extras = project["optional-dependencies"]
    assert {"tensorflow", "keras-cv", "tensorboard", "matplotlib"} <= _names(extras["train"])
    assert {"tf-keras-vis", "scikit-learn", "matplotlib"} <= _names(extras["vis"])
    for name in ("export", "jax", "torch", "convert", "dev", "tfds"):
        assert extras[name], name
    (everything,) = extras["all"]
    listed = set(re.search(r"keras-ba\[(.*)\]", everything).group(1).split(","))
    assert listed == set(extras) - {"all"}


def test_readme_and_ci_install_from_the_clone():
    readme = (REPO_ROOT / "README.md").read_text()
    # keras-ba is not on the package index: no command may install it by name.
    assert not re.search(r"pip install[^\n`]*?\s[\"']?keras-ba\b", readme)
    assert 'pip install -e ".[all]"' in readme
    setup = (REPO_ROOT / ".ci" / "setup").read_text()
    torch_line = setup.index('pip" install -q "torch==2.13.0"')
    assert torch_line < setup.index('install -q -e "$root[all]"')


def test_export_output_is_git_ignored():
    if not (REPO_ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    result = run_command(
        ["git", "check-ignore", "-q", "serving/ba_resnet18/1/saved_model.pb"], timeout=60
    )
    if result.returncode == 128:
        pytest.skip(f"git cannot answer here: {result.stderr[-200:]}")
    assert result.returncode == 0, "serving/ (written by keras-ba export) is not git-ignored"


LEAN = r"""
import importlib.abc, sys, tempfile, os
BLOCKED = {"tensorflow", "keras_cv", "sklearn", "matplotlib", "tensorboard", "tf_keras_vis",
           "tensorflow_datasets", "torch"}


class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, NotInstalled())
import keras
import keras_ba
from keras_ba.applications import BAResNet
from keras_ba.convert import read_state_dict

folder = tempfile.mkdtemp()
model = BAResNet([1, 1, 1, 1], [8, 16, 32, 64], block_type="basic", stem="cifar", stem_filters=8,
                 reduction=4, classes=3, input_shape=(16, 16, 3))
model.save(os.path.join(folder, "m.keras"))
keras.saving.load_model(os.path.join(folder, "m.keras"))
print("MODELS OK")
from keras_ba.cli import main
print("TRAIN EXIT", main(["train", "--output", os.path.join(folder, "run")]))
print("EVALUATE EXIT", main(["evaluate", os.path.join(folder, "m.keras"), "--data", "digits"]))
"""


@pytest.mark.skipif(BACKEND != "jax", reason="needs a backend without TensorFlow: the JAX pass")
def test_without_extras_models_work_and_the_workflow_names_the_extra():
    result = run_python(LEAN, backend="jax")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MODELS OK" in result.stdout
    assert "TRAIN EXIT 1" in result.stdout and "EVALUATE EXIT 1" in result.stdout
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 2, result.stderr[-3000:]
    for line in errors:
        assert "needs the package 'tensorflow'" in line, line
        assert '"train" extra' in line and 'pip install -e ".[train]"' in line
    assert "Traceback" not in result.stderr
