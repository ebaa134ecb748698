"""The README and the documentation site: they build, their links hold, the Quick start runs.

- `mkdocs build --strict` (mkdocs.yml) fails on a broken link or anchor
  between pages and on an API reference that does not resolve;
- every Markdown link and every repository path written as code in
  README.md, CONTRIBUTING.md and docs/ names a file of the repository;
- the README stays short, and its Quick start runs as pasted.
"""

import glob
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import BACKEND, REPO_ROOT, only_in

DOCS_PASS = only_in(
    "jax", reason="the documents are backend-independent: checked once, in the JAX pass"
)
# The Quick start runs in one pass: the layers and models it uses are tested on
# every backend, and a fresh process costs about a minute on a busy 2-core machine
# (PyTorch and TensorFlow 58-59 s, JAX 87 s, which compiles an initializer per
# weight shape).
QUICK_START_PASS = only_in(
    "torch", reason="the README's Quick start runs once, in the PyTorch pass (the cheapest)"
)
README = REPO_ROOT / "README.md"
DOCUMENTS = sorted([README, REPO_ROOT / "CONTRIBUTING.md", *(REPO_ROOT / "docs").rglob("*.md")])
# Markdown links and images: [text](target) / ![alt](target "title").
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
CODE_SPAN = re.compile(r"`([^`\n]+)`")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
# Top-level entries of the repository that a code span may name as a path.
REPO_DIRS = ("benchmarks/", "docs/", "examples/", "keras_ba/", "tests/", ".ci/")
REPO_FILES = {"README.md", "CONTRIBUTING.md", "mkdocs.yml", "pyproject.toml"}
PLACEHOLDER = re.compile(r"[<>{}…]|\.\.\.|NNNN")


def prose(path):
    """The text of a Markdown file without its fenced code blocks."""
    return FENCE.sub("", path.read_text(encoding="utf-8"))


def link_targets(path):
    """Local link targets of `path` (no URLs, no in-page anchors), without anchors."""
    targets = []
    for target in LINK.findall(prose(path)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # https:, mailto:, ... and anchors within the page
        targets.append(target.split("#", 1)[0])
    return targets


def path_spans(path):
    """Code spans of `path` that name a repository path (e.g. `tests/conftest.py`)."""
    spans = []
    for span in CODE_SPAN.findall(prose(path)):
        words = span.split()
        if len(words) != 1 or PLACEHOLDER.search(span):
            continue  # a command, or a pattern such as `runs/<model>`
        if span.startswith(REPO_DIRS) or span in REPO_FILES:
            spans.append(span)
    return spans


def resolves_inside(base, target):
    """Whether `target` (relative to folder `base`) exists inside the repository."""
    if target.startswith("/"):
        return False
    resolved = (base / target).resolve()
    return resolved.is_relative_to(REPO_ROOT) and resolved.exists()


def quick_start(text):
    """The first fenced Python block after the `## Quick start` heading."""
    section = text.split("\n## Quick start\n", 1)
    assert len(section) == 2, "README.md has no '## Quick start' heading"
    block = re.search(r"^```python\n(.*?)^```", section[1], re.MULTILINE | re.DOTALL)
    assert block, "the Quick start of README.md has no ```python block"
    return block.group(1)


@DOCS_PASS
def test_readme_is_short():
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= 300, f"README.md has {lines} lines; move the details into docs/"


@DOCS_PASS
def test_documents_are_found():
    names = {path.relative_to(REPO_ROOT).as_posix() for path in DOCUMENTS}
    assert {"README.md", "CONTRIBUTING.md", "docs/index.md", "docs/api/layers.md"} <= names


@DOCS_PASS
@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.relative_to(REPO_ROOT).as_posix())
def test_links_point_to_repository_files(path):
    broken = [t for t in link_targets(path) if t and not resolves_inside(path.parent, t)]
    assert not broken, f"{path.name}: links to missing files or outside the repository: {broken}"


@DOCS_PASS
@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.relative_to(REPO_ROOT).as_posix())
def test_repository_paths_exist(path):
    text = path.read_text(encoding="utf-8")
    outside = [
        word for word in ("/work/", "reference/official_keys", "reference/parity") if word in text
    ]
    assert not outside, f"{path.name} names paths outside the repository: {outside}"
    missing = [
        span
        for span in path_spans(path)
        if not (glob.glob(str(REPO_ROOT / span)) if "*" in span else (REPO_ROOT / span).exists())
    ]
    assert not missing, f"{path.name} names files that are not in the repository: {missing}"


@DOCS_PASS
def test_checks_catch_a_broken_link_and_a_missing_path(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](https://keras.io) [gone](missing.md) [out](../../../etc/hosts#x) [in](#anchor)\n"
        "`tests/conftest.py` `tests/no_such_module.py` `runs/<model>` `docs/speed/*.md`\n"
        "```bash\n[not a link](nowhere.md) `tests/ignored_in_code.py`\n```\n",
        encoding="utf-8",
    )
    targets = link_targets(page)
    assert targets == ["missing.md", "../../../etc/hosts"]
    assert not any(resolves_inside(page.parent, t) for t in targets)
    assert resolves_inside(REPO_ROOT, "docs/index.md")
    assert path_spans(page) == ["tests/conftest.py", "tests/no_such_module.py", "docs/speed/*.md"]


@DOCS_PASS
@pytest.mark.slow
def test_site_builds_strictly(tmp_path):
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or shutil.which("mkdocs")
    assert mkdocs, 'mkdocs is not installed: pip install -e ".[docs]" (part of ".[all]")'
    result = subprocess.run(
        [mkdocs, "build", "--strict", "--quiet", "--site-dir", str(tmp_path / "site")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stderr[-4000:]}"
    assert (tmp_path / "site" / "api" / "layers" / "index.html").exists()
    reference = (tmp_path / "site" / "api" / "layers" / "index.html").read_text(encoding="utf-8")
    # The docstring examples are rendered as highlighted doctests (docs/_ext/griffe_examples.py).
    assert "BridgeAttention" in reference
    assert '<span class="gp">&gt;&gt;&gt; </span>' in reference


@QUICK_START_PASS
@pytest.mark.slow
def test_readme_quick_start_runs(tmp_path):
    code = quick_start(README.read_text(encoding="utf-8"))
    assert "images" in code and "model.fit" in code
    env = {**os.environ, "KERAS_BACKEND": BACKEND, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=400,
        env=env,
    )
    assert result.returncode == 0, f"the README's Quick start failed:\n{result.stderr[-3000:]}"
    predictions = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"\[\d( \d)*\]", predictions), predictions
    assert (tmp_path / "quickstart.keras").exists()
