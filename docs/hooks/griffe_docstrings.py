"""Griffe extension for the API reference: three docstring conventions of the package, read as they are meant.

1. ``Example:`` sections are doctests, i.e. Google-style ``Examples:``.

The package's docstrings title their doctests ``Example:`` (singular), which Griffe's Google parser treats as a
generic admonition whose body is rendered as Markdown: ``>>>`` lines then become nested block quotes and list
outputs such as ``['pcns', 'puma']`` become broken reference links. Renaming the section to ``Examples:`` makes
Griffe split it into prose and highlighted Python console blocks, which is what the docstrings mean. Nothing else in
the docstring is changed, and the Python sources are not touched.

2. A ``Returns:`` section in a *class* docstring (``nucfuse_datasets.transforms.targets.NucleusTargets`` and
``HoVerNetTargets``) describes what calling an instance returns. Griffe expects ``Returns:`` on callables with a
return annotation and warns ("No type or annotation for returned value"), which fails the strict build. Such a
section is retitled ``Returns when called:`` (rendered as a note) instead of silencing the warning for every object.

3. Sphinx roles (``:class:`~nucfuse_datasets.schema.Sample```, ``:func:`hv_maps```, ``:meth:`X <target>```) mean
nothing to Markdown and would be shown verbatim. They become inline code with the name a reader expects
(``Sample``, ``hv_maps``, ``X``): plain text, so no cross-reference can fail to resolve.

Loaded by mkdocstrings (``extensions:`` in ``mkdocs.yml``).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_EXAMPLE = re.compile(r"^(\s*)Example:\s*$", re.MULTILINE)
_RETURNS = re.compile(r"^(\s*)Returns:\s*$", re.MULTILINE)
_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|data|attr|exc|obj|const):`(?P<body>[^`]+)`")


def _role_text(match: re.Match[str]) -> str:
    body = match["body"].strip()
    if "<" in body and body.endswith(">"):  # explicit title: :meth:`title <target>`
        return f"`{body[: body.index('<')].strip()}`"
    if body.startswith("~"):  # ~a.b.C shows only C
        return f"`{body[1:].rsplit('.', 1)[-1]}`"
    return f"`{body}`"


class DocstringConventions(griffe.Extension):
    """Retitle ``Example:`` sections (all objects) and ``Returns:`` sections (classes only); unwrap Sphinx roles."""

    def on_instance(self, *, node: Any, obj: griffe.Object, agent: Any, **kwargs: Any) -> None:
        """Called for every loaded object (module, class, function, attribute)."""
        doc = obj.docstring
        if doc is not None and "Example:" in doc.value:
            doc.value = _EXAMPLE.sub(r"\1Examples:", doc.value)
        if doc is not None and obj.is_class and "Returns:" in doc.value:
            doc.value = _RETURNS.sub(r"\1Returns when called:", doc.value)
        if doc is not None and "`" in doc.value:
            doc.value = _ROLE.sub(_role_text, doc.value)
