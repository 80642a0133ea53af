"""The documentation site: strict offline build, generated pages, and the tutorials' code blocks.

* The site builds with ``mkdocs build --strict`` (no warnings) into a temporary folder; skipped, with the reason,
  only when the ``docs`` extra (mkdocs, mkdocs-material, mkdocstrings) is not installed.
* The catalogue and the dataset navigation come from the registry (``docs/hooks/nucfuse_docs.py``), and every
  registered dataset has a page.
* Every ```` ```python ```` block of ``docs/tutorials/*.md`` runs, page by page in one namespace, in a temporary
  working directory with ``NUCFUSE_DATA_DIR`` set to a temporary folder and ``NUCFUSE_OFFLINE=1``. A block preceded
  by ``<!-- skip-test: reason -->`` (it needs real data, trained weights or a GPU) is not run, but it must compile
  and every name it imports from ``nucfuse_datasets`` or ``examples`` must exist.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import logging
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

import nucfuse_datasets as nf

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
TUTORIALS = sorted((DOCS / "tutorials").glob("*.md"))
HOOK_FILE = DOCS / "hooks" / "nucfuse_docs.py"

_FENCE_OPEN = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
_SKIP = re.compile(r"^\s*<!--\s*skip-test\b:?\s*(?P<reason>.*?)\s*-->\s*$")


@dataclass
class Block:
    """One fenced code block of a Markdown page."""

    page: Path
    line: int  # 1-based line of the first code line
    language: str
    code: str
    skip: str | None  # the skip reason, or None


def code_blocks(page: Path) -> list[Block]:
    """Fenced code blocks of ``page`` with their language and skip marker (the comment line just before)."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    previous = ""  # last non-blank line before the current one
    while i < len(lines):
        m = _FENCE_OPEN.match(lines[i])
        if not m:
            if lines[i].strip():
                previous = lines[i]
            i += 1
            continue
        indent, fence = m["indent"], m["fence"]
        language = (m["info"].split() or [""])[0].lstrip(".{").rstrip("}").lower()
        start = i + 1
        j = start
        while j < len(lines) and not re.match(
            rf"^{re.escape(indent)}{re.escape(fence[0])}{{{len(fence)},}}\s*$", lines[j]
        ):
            j += 1
        body = [ln[len(indent) :] if ln.startswith(indent) else ln for ln in lines[start:j]]
        skip = _SKIP.match(previous)
        blocks.append(
            Block(page, start + 1, language, "\n".join(body) + "\n", (skip["reason"] or "marked") if skip else None)
        )
        previous = ""
        i = j + 1
    return blocks


def python_blocks(page: Path) -> list[Block]:
    """The ```` ```python ```` blocks of a page (``py`` and ``python3`` count too; ``pycon`` does not)."""
    return [b for b in code_blocks(page) if b.language in ("python", "py", "python3")]


def _load_hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location("nucfuse_docs_hook", HOOK_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- the site build


def _require_docs_extra() -> None:
    for module in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python", "pymdownx"):
        try:
            importlib.import_module(module)
        except ImportError:
            pytest.skip(f"the docs extra is not installed ({module} missing): pip install 'nucfuse-datasets[docs]'")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the site once, strictly, into a temporary folder."""
    _require_docs_extra()
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "NUCFUSE_OFFLINE": "1"}  # the build needs no network
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(REPO / "mkdocs.yml"), "-d", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        problems = [ln for ln in (proc.stderr + proc.stdout).splitlines() if "WARNING" in ln or "ERROR" in ln]
        pytest.fail("mkdocs build --strict failed:\n" + "\n".join(problems or [proc.stderr[-4000:]]))
    return out


def test_site_builds_strict_and_offline(site: Path) -> None:
    assert (site / "index.html").is_file()
    assert (site / "search" / "search_index.json").is_file()
    assert not (site / "hooks").exists(), "the hook sources must not be published"


def test_site_has_a_page_per_registered_dataset(site: Path) -> None:
    catalogue = (site / "datasets" / "index.html").read_text(encoding="utf-8")
    for name in nf.list_datasets():
        page = site / "datasets" / name / "index.html"
        assert page.is_file(), f"no built page for dataset {name!r}"
        assert "Registry entry" in page.read_text(encoding="utf-8")
        assert f"<code>{name}</code>" in catalogue, f"{name!r} missing from the built catalogue"


def test_site_renders_generated_and_included_content(site: Path) -> None:
    api = (site / "api" / "nucfuse" / "index.html").read_text(encoding="utf-8")
    assert "NucFuseTest" in api and "select_test_tiles" in api
    datasets_api = (site / "api" / "datasets" / "index.html").read_text(encoding="utf-8")
    for cls in nf.datasets._registry.dataset_classes():
        assert cls.__name__ in datasets_api
    cli = (site / "cli" / "index.html").read_text(encoding="utf-8")
    assert "nucfuse export-test" in cli and "--predictions" in cli
    changelog = (site / "changelog" / "index.html").read_text(encoding="utf-8")
    assert "Unreleased" in changelog and "--8&lt;--" not in changelog
    training = (site / "tutorials" / "training" / "index.html").read_text(encoding="utf-8")
    assert "HoVerNeXt" in training and "--8&lt;--" not in training
    assert "<!-- nucfuse:" not in "".join(p.read_text(encoding="utf-8") for p in site.rglob("*.html")), (
        "a generated-content marker was left unreplaced"
    )


# --------------------------------------------------------------------------- registry-driven pages (no build)


def test_every_registered_dataset_has_a_page() -> None:
    missing = [n for n in nf.list_datasets() if not (DOCS / "datasets" / f"{n}.md").is_file()]
    assert not missing, f"registered datasets without docs/datasets/<name>.md: {missing}"


def test_catalogue_and_nav_follow_the_registry() -> None:
    hook = _load_hook()
    table = hook.catalogue_markdown()
    rows = [ln for ln in table.splitlines() if ln.startswith("| ") and not ln.startswith("| name")]
    assert len(rows) == len(nf.list_datasets())
    for name, row in zip(nf.list_datasets(), rows, strict=True):
        info = nf.get_dataset_class(name).info(REPO / ".no-data")
        assert f"`{name}`" in row and hook.esc(info["title"]) in row
        assert ("generated" in row) if not info["resources"] else (("automatic" in row) == info["auto_download"])
    nav = hook.dataset_nav()
    pages = [e if isinstance(e, str) else next(iter(e.values())) for e in nav]
    assert pages[0] == "datasets/index.md"
    present = [n for n in nf.list_datasets() if (DOCS / "datasets" / f"{n}.md").is_file()]
    assert pages[1 : 1 + len(present)] == [f"datasets/{n}.md" for n in present]


def test_a_registered_dataset_without_a_page_fails_the_strict_build(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hook = _load_hook()
    (tmp_path / "datasets").mkdir()
    (tmp_path / "datasets" / "index.md").write_text("# Datasets\n")
    (tmp_path / "datasets" / "synthetic.md").write_text("# Synthetic\n")
    config = {"docs_dir": str(tmp_path), "nav": [{"Home": "index.md"}, {"Datasets": []}], "mdx_configs": {}}
    with caplog.at_level(logging.WARNING, logger="mkdocs"):
        hook.on_config(config)
    warned = {r.getMessage().split("'")[1] for r in caplog.records if r.levelno == logging.WARNING}
    assert warned == set(nf.list_datasets()) - {"synthetic"}
    assert config["nav"][1]["Datasets"] == ["datasets/index.md", {"Synthetic H&E": "datasets/synthetic.md"}]
    assert config["mdx_configs"]["pymdownx.snippets"]["base_path"] == [str(REPO)]


def test_every_page_in_the_nav_exists() -> None:
    yaml = pytest.importorskip("yaml", reason="PyYAML comes with mkdocs")
    config = yaml.load((REPO / "mkdocs.yml").read_text(encoding="utf-8"), Loader=yaml.BaseLoader)
    hook = _load_hook()

    def files(nav: list) -> list[str]:
        out = []
        for item in nav:
            value = next(iter(item.values())) if isinstance(item, dict) else item
            out += files(value) if isinstance(value, list) else [value]
        return out

    missing = [f for f in files(config["nav"]) if not (DOCS / f).is_file()]
    assert not missing, f"nav entries without a page: {missing}"
    assert set(hook.OPTIONAL_PAGES).isdisjoint(files(config["nav"]))


# --------------------------------------------------------------------------- tutorials


def test_there_are_tutorials_with_runnable_code() -> None:
    assert TUTORIALS, "docs/tutorials/ has no pages"
    runnable = {p.name: sum(b.skip is None for b in python_blocks(p)) for p in TUTORIALS}
    assert sum(runnable.values()) >= 10, runnable


CODE_PAGES = [p for p in TUTORIALS if python_blocks(p)]
#: code that needs an optional extra -> the modules it imports (the test skips, with the reason, without them)
OPTIONAL_DEPENDENCIES = {"examples.": ("timm", "torchvision"), "render_report(": ("matplotlib",)}


@pytest.mark.parametrize("page", CODE_PAGES, ids=[p.stem for p in CODE_PAGES])
def test_tutorial_code_runs_on_synthetic_data(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = python_blocks(page)
    runnable = "".join(b.code for b in blocks if not b.skip)
    for needle, modules in OPTIONAL_DEPENDENCIES.items():
        if needle in runnable:
            for module in modules:
                pytest.importorskip(module, reason=f"{page.name} needs {module} (pip install 'nucfuse-datasets[all]')")
    monkeypatch.syspath_prepend(str(REPO))  # the recipes are imported as `examples.*`, as from the repository root
    for block in blocks:  # everything must at least compile, and its imports must exist
        tree = compile(block.code, f"{page.relative_to(REPO)}:{block.line}", "exec", ast.PyCF_ONLY_AST)
        if block.skip:
            _check_imports(tree, block)

    monkeypatch.setenv("NUCFUSE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("NUCFUSE_OFFLINE", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    namespace: dict[str, object] = {"__name__": f"tutorial_{page.stem}"}
    for block in blocks:
        if block.skip:
            continue
        # pad with newlines so that tracebacks point at the line of the Markdown file
        source = "\n" * (block.line - 1) + block.code
        exec(compile(source, str(page.relative_to(REPO)), "exec"), namespace)


def _check_imports(tree: ast.AST, block: Block) -> None:
    where = f"{block.page.name}:{block.line} ({block.skip})"
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.split(".")[0] in ("nucfuse_datasets", "examples")
        ):
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name), f"{where}: {node.module} has no {alias.name!r}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in ("nucfuse_datasets",):
                    importlib.import_module(alias.name)


def test_skip_markers_are_parsed(tmp_path: Path) -> None:
    page = tmp_path / "t.md"
    page.write_text(
        textwrap.dedent(
            """\
            # T

            ```python
            a = 1
            ```

            <!-- skip-test: needs a GPU -->
            ```python title="GPU"
            b = 2
            ```

            === "tab"

                ```python
                c = a + 1
                ```

            ```bash
            nucfuse list
            ```
            """
        )
    )
    blocks = python_blocks(page)
    assert [(b.line, b.code, b.skip) for b in blocks] == [
        (4, "a = 1\n", None),
        (9, "b = 2\n", "needs a GPU"),
        (15, "c = a + 1\n", None),
    ]


def test_readme_catalogue_is_generated_from_the_registry() -> None:
    hook = _load_hook()
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert hook.readme_with_catalogue(text) == text, (
        "README.md's dataset table drifted from the registry; run `python docs/hooks/nucfuse_docs.py --write-readme`"
    )
    block = text[text.index(hook.README_START) : text.index(hook.README_END)]
    assert [f"`{n}`" for n in nf.list_datasets()] == re.findall(r"^\| (`[a-z0-9_]+`) \|", block, flags=re.M)


def test_every_registered_dataset_has_its_three_places() -> None:
    # docs/contributing.md: a dataset is its module, its fake generator (which declares its bad inputs) and its
    # docs narrative; everything else (README and docs tables, contract, five-path and bad-input tests) follows
    from tests.fakedata import generators

    contributing = (DOCS / "contributing.md").read_text(encoding="utf-8")
    assert "three places" in contributing
    fakes = generators()
    for name in nf.list_datasets():
        cls = nf.get_dataset_class(name)
        module = REPO / Path(*cls.__module__.split(".")).with_suffix(".py")
        assert module.is_file() and module.stem == name, f"{name}: not in nucfuse_datasets/datasets/{name}.py"
        assert (DOCS / "datasets" / f"{name}.md").is_file(), f"{name}: no docs/datasets/{name}.md"
        if cls.resources:  # generated datasets (synthetic) have no native files to fake
            assert name in fakes, f"{name}: no tests/fakedata/{name}.py"
            module_of_fake = importlib.import_module(f"tests.fakedata.{name}")
            assert module_of_fake.bad_inputs(), f"{name}: tests/fakedata/{name}.py declares no bad inputs"
