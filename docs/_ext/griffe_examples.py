"""Griffe extension: keras_ba's `Example:` sections rendered as code.

keras_ba's docstrings end with an `Example:` section holding doctests
(`>>>`, run by tests/test_docs.py) or plain code. Griffe's Google parser
reads a singular `Example:` as an admonition whose body is Markdown, where
`>>>` would be a quote and `[...]` a link. This extension fences that body
before the docstring is parsed: doctest paragraphs as `pycon`, code without
`>>>` as `python`, other paragraphs left as prose. Loaded by mkdocs.yml
(mkdocstrings' `extensions` option); the library is not imported.
"""

import re

import griffe

HEADER = re.compile(r"^(?P<indent>\s*)Examples?:\s*$")
SECTION = re.compile(r"^[A-Z][\w ]*:\s*$")
WRAPPED_NAMES = re.compile(r"^\s+\w+(, \w+)*,\s*$")  # "    a, b," (continued below)


def _section_end(lines, start, indent):
    """Index after the example body that starts at `start`."""
    for index in range(start, len(lines)):
        line = lines[index]
        if not line.strip():
            continue
        line_indent = len(line) - len(line.lstrip())
        if line_indent <= indent and SECTION.match(line.strip()):
            return index
        if line_indent < indent:
            return index
    return len(lines)


def _paragraphs(body):
    """Blank-line separated paragraphs of `body` (lists of lines)."""
    paragraphs, current = [], []
    for line in body:
        if line.strip():
            current.append(line)
        elif current:
            paragraphs.append(current)
            current = []
    if current:
        paragraphs.append(current)
    return paragraphs


def _fence(body, pad):
    """The example body as Markdown: fenced code and prose paragraphs."""
    text = [line.strip("\n") for line in body]
    margin = min((len(s) - len(s.lstrip()) for s in text if s.strip()), default=0)
    text = [s[margin:] for s in text]
    if not any(s.lstrip().startswith(">>>") for s in text):
        while text and not text[-1].strip():
            text.pop()
        return [pad + "```python", *(pad + s if s else "" for s in text), pad + "```"]
    out = []
    for paragraph in _paragraphs(text):
        if paragraph[0].lstrip().startswith(">>>"):
            out += [pad + "```pycon", *(pad + s for s in paragraph), pad + "```", ""]
        else:
            out += [pad + s for s in paragraph] + [""]
    return out[:-1]


def join_wrapped_names(lines):
    """Joins `a, b,` / `c: description` argument lines into `a, b, c: description`."""
    out = []
    for line in lines:
        if out and WRAPPED_NAMES.match(out[-1]):
            out[-1] = out[-1].rstrip() + " " + line.strip()
        else:
            out.append(line)
    return out


def fence_examples(value):
    """Returns the docstring `value` with its example bodies fenced."""
    lines = join_wrapped_names(value.split("\n"))
    out, index = [], 0
    while index < len(lines):
        match = HEADER.match(lines[index])
        if not match:
            out.append(lines[index])
            index += 1
            continue
        indent = len(match["indent"])
        end = _section_end(lines, index + 1, indent)
        out.append(lines[index])
        out += _fence(lines[index + 1 : end], " " * (indent + 4))
        out.append("")
        index = end
    return "\n".join(out)


class FenceExamples(griffe.Extension):
    """Fences the `Example:` body of every docstring (see the module docstring)."""

    def on_object(self, *, obj, **kwargs):
        if obj.docstring is not None:
            obj.docstring.value = fence_examples(obj.docstring.value)
