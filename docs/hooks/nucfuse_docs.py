"""MkDocs hook: pages generated from the code at build time, so the site cannot drift from the registry.

Registered in ``mkdocs.yml`` under ``hooks:``. It

* fills the **Datasets** section of the navigation with one page per registered dataset
  (``docs/datasets/<name>.md``, in :func:`nucfuse_datasets.list_datasets` order) and logs a *warning* for every
  registered dataset without a page, which fails ``mkdocs build --strict`` (``make docs`` and ``tests/test_docs.py``);
* adds pages of other issues that may not exist yet (:data:`OPTIONAL_PAGES`) to the navigation when they exist;
* replaces ``<!-- nucfuse:catalogue -->`` with the dataset catalogue built from ``get_dataset_class(name).info()``;
* replaces ``<!-- nucfuse:licences -->`` with the non-commercial and unconfirmed licences of the registry;
* replaces ``<!-- nucfuse:counts -->`` with the counts each loader checks (sources and the paper's Table 1);
* replaces ``<!-- nucfuse:test-ids -->`` with the state of the shipped NucFuse-test id lists;
* replaces ``<!-- nucfuse:cli -->`` with the ``--help`` text of every ``nucfuse`` command;
* replaces ``<!-- nucfuse:dataset-classes -->`` with a mkdocstrings block per registered dataset class;
* appends a generated "Registry entry" section (sources, hashes, manual steps, expected counts) to every dataset page;
* points ``pymdownx.snippets`` at the repository root, so ``--8<-- "CHANGELOG.md"`` works from any working directory.

The helpers (:func:`catalogue_markdown`, :func:`dataset_nav`, ...) are plain functions so that
``tests/test_docs.py`` can check them without building the site.
"""

from __future__ import annotations

import html
import io
import logging
import math
import os
import re
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

log = logging.getLogger("mkdocs.hooks.nucfuse_docs")

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCS_DIR = REPO_ROOT / "docs"
DATASETS_SECTION = "Datasets"
DATASETS_INDEX = "datasets/index.md"
#: Pages owned by other issues that may not exist yet: added to the navigation (before the changelog) when present.
OPTIONAL_PAGES = {"reliability.md": "Reliability"}
_NON_COMMERCIAL = re.compile(r"(?<![A-Za-z])NC(?![A-Za-z])|non-commercial", re.IGNORECASE)
MARKERS = ("catalogue", "counts", "licences", "test-ids", "cli", "dataset-classes")


# --------------------------------------------------------------------------- registry access


def _registry() -> list[dict[str, Any]]:
    """``info()`` of every registered dataset, in ``list_datasets()`` order (read without touching any data)."""
    import nucfuse_datasets as nf

    # a root that never exists: info() then reports nothing local and never creates folders
    root = REPO_ROOT / ".nucfuse-docs-no-data"
    return [nf.get_dataset_class(name).info(root) for name in nf.list_datasets()]


def dataset_page(name: str, docs_dir: Path = DOCS_DIR) -> Path:
    """Path of the page of dataset ``name``."""
    return docs_dir / "datasets" / f"{name}.md"


def missing_pages(docs_dir: Path = DOCS_DIR) -> list[str]:
    """Registered datasets without a ``docs/datasets/<name>.md`` page."""
    import nucfuse_datasets as nf

    return [n for n in nf.list_datasets() if not dataset_page(n, docs_dir).is_file()]


def dataset_nav(docs_dir: Path = DOCS_DIR) -> list[Any]:
    """Navigation entries of the Datasets section: the catalogue, then one page per dataset.

    Registered datasets come first, in ``list_datasets()`` order (the paper's ranking, PanNuke, the rest); pages
    under ``docs/datasets/`` that no registered dataset claims follow, sorted by file name.
    """
    entries: list[Any] = [DATASETS_INDEX]
    claimed = {"index.md"}
    for info in _registry():
        page = dataset_page(info["name"], docs_dir)
        if page.is_file():
            entries.append({info["title"] or info["name"]: f"datasets/{page.name}"})
            claimed.add(page.name)
    for page in sorted((docs_dir / "datasets").glob("*.md")):
        if page.name not in claimed:
            entries.append(f"datasets/{page.name}")
    return entries


# --------------------------------------------------------------------------- formatting helpers


def _cell(text: Any) -> str:
    """A Markdown table cell: one line, pipes escaped."""
    return str(text).replace("|", "\\|").replace("\n", " ").strip()


_MD_SPECIAL = re.compile(r"([\\`*_\[\]])")


def esc(text: Any) -> str:
    """Registry text as literal Markdown: HTML-escaped (``<root>`` stays visible), emphasis characters escaped."""
    return _MD_SPECIAL.sub(r"\\\1", html.escape(str(text), quote=False))


def _int(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "—"


def human_size(n_bytes: int | None) -> str:
    """``1627427342`` → ``"1.6 GB"`` (decimal units, as hosts report them)."""
    if not n_bytes:
        return "?"
    units = ("B", "kB", "MB", "GB", "TB")
    exp = min(int(math.log(n_bytes, 1000)), len(units) - 1)
    value = n_bytes / 1000**exp
    return f"{value:.0f} {units[exp]}" if exp == 0 else f"{value:.1f} {units[exp]}"


def _host(url: str | None) -> str:
    if not url:
        return ""
    host = urlparse(url).netloc
    return host[4:] if host.startswith("www.") else host


def download_kind(info: dict[str, Any]) -> str:
    """``generated``, ``automatic (hosts)`` or ``manual (hosts)``."""
    resources = info["resources"]
    if not resources:
        return "generated"
    required = [r for r in resources if r["required"]] or resources
    if info["auto_download"]:
        hosts = sorted({_host(r["urls"][0]) for r in required if r["urls"]})
        return f"automatic ({', '.join(hosts)})" if hosts else "automatic"
    hosts = sorted({_host(r["page"] or (r["urls"][0] if r["urls"] else None)) for r in required if r["manual"]} - {""})
    return f"**manual** ({', '.join(hosts)})" if hosts else "**manual**"


def size_text(info: dict[str, Any]) -> str:
    """Download size from the registered resource sizes (``?`` where the host publishes none)."""
    resources = info["resources"]
    if not resources:
        return "—"
    known = [r for r in resources if r["size"]]
    if not known:
        return "?"
    if len(resources) == 1:
        return human_size(known[0]["size"])
    return "; ".join(f"{r['key']}: {human_size(r['size'])}" for r in resources)


def task_text(info: dict[str, Any]) -> str:
    """Instance segmentation, with the number of nucleus classes where the source has them."""
    names = [c for c in info["class_names"] or [] if c.lower() != "background"]
    return f"instances + {len(names)} classes" if names else "instances"


def classes_text(info: dict[str, Any]) -> str:
    """Source class names (background excluded), or ``—``."""
    names = [c for c in info["class_names"] or [] if c.lower() != "background"]
    return ", ".join(names) if names else "—"


def test_pool(info: dict[str, Any]) -> str:
    """Where NucFuse-test draws the dataset's 14 tiles from."""
    return f"`{info['test_split']}` split" if info["test_split"] else "whole dataset"


def licence_text(info: dict[str, Any]) -> str:
    """The licence (escaped), marked when it forbids commercial use."""
    lic = info["license"]
    return f"{esc(lic)} **(non-commercial)**" if _NON_COMMERCIAL.search(lic) else esc(lic)


# --------------------------------------------------------------------------- generated pages


def catalogue_markdown() -> str:
    """The catalogue table: one row per registered dataset, from ``info()``."""
    lines = [
        "| name | dataset | task | organs\\* | tiles\\* | nuclei\\* | tile size\\* | classes (source) "
        "| licence | download | size |",
        "|---|---|---|---|--:|--:|---|---|---|---|---|",
    ]
    for info in _registry():
        paper = info["paper_table1"] or {}
        name = info["name"]
        link = f"[`{name}`]({name}.md)" if dataset_page(name).is_file() else f"`{name}`"
        row = [
            link,
            esc(info["title"]),
            task_text(info),
            esc(paper.get("organs", "—")),
            _int(paper.get("tiles")) if paper else "any",
            _int(paper.get("nuclei")) if paper else "any",
            esc(paper.get("tile_size", "any")),
            esc(classes_text(info)),
            licence_text(info),
            download_kind(info),
            size_text(info),
        ]
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    return "\n".join(lines) + "\n"


README = REPO_ROOT / "README.md"
README_START = "<!-- nucfuse:readme-catalogue (generated: python docs/hooks/nucfuse_docs.py --write-readme) -->"
README_END = "<!-- /nucfuse:readme-catalogue -->"


def readme_catalogue_markdown() -> str:
    """The README's dataset table: one row per registered dataset, from ``info()`` (a test fails when it drifts)."""
    lines = ["| name | dataset | tiles* | nuclei* | licence | download |", "|---|---|---|---|---|---|"]
    for info in _registry():
        paper = info["paper_table1"] or {}
        row = [
            f"`{info['name']}`",
            esc(info["title"]),
            _int(paper.get("tiles")) if paper else "any",
            _int(paper.get("nuclei")) if paper else "any",
            esc(info["license"]),
            download_kind(info),
        ]
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    return "\n".join(lines) + "\n"


def readme_with_catalogue(text: str) -> str:
    """``text`` (the README) with the block between :data:`README_START` and :data:`README_END` regenerated."""
    start, end = text.index(README_START) + len(README_START), text.index(README_END)
    return text[:start] + "\n" + readme_catalogue_markdown() + text[end:]


def licence_summary_markdown() -> str:
    """One sentence: which registered datasets are non-commercial and which have an unconfirmed licence."""
    infos = _registry()
    nc = [i["title"] for i in infos if _NON_COMMERCIAL.search(i["license"])]
    unconfirmed = [i["title"] for i in infos if "UNCONFIRMED" in i["license"].upper()]
    parts = []
    if nc:
        parts.append(f"**non-commercial**: {', '.join(esc(t) for t in nc)}")
    if unconfirmed:
        parts.append(f"**licence unconfirmed**: {', '.join(esc(t) for t in unconfirmed)}")
    return "; ".join(parts) if parts else "none"


def counts_markdown() -> str:
    """The counts every loader checks after preparing (``expected_counts``) and the rest of its Table 1 row."""
    lines = [
        "| name | split | tiles | nuclei | tolerance | source |",
        "|---|---|--:|--:|--:|---|",
    ]
    for info in _registry():
        for exp in info["expected_counts"]:
            tol = f"±{exp['tolerance']:.1%}" if exp["tolerance"] else "exact"
            row = [f"`{info['name']}`", exp["split"], _int(exp["tiles"]), _int(exp["nuclei"]), tol, esc(exp["source"])]
            lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    lines += [
        "",
        "| name | density per 256²\\* | 256² training patches\\* | splits | NucFuse-test draws from |",
        "|---|--:|--:|---|---|",
    ]
    for info in _registry():
        paper = info["paper_table1"] or {}
        row = [
            f"`{info['name']}`",
            f"{paper['density']:.2f}" if paper else "—",
            _int(paper.get("train_patches")) if paper else "—",
            ", ".join(info["splits"]),
            test_pool(info),
        ]
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    return "\n".join(lines) + "\n"


def test_ids_markdown() -> str:
    """State of the shipped NucFuse-test id lists (``nucfuse_datasets/benchmark/splits/nucfuse_test.json``)."""
    from nucfuse_datasets.benchmark.protocol import shipped_test_lists
    from nucfuse_datasets.datasets._registry import get_dataset_class

    doc = shipped_test_lists()
    lines = ["| dataset | drawn from | ids | sha256 of the id list |", "|---|---|---|---|"]
    for name, entry in doc["datasets"].items():
        try:
            cls = get_dataset_class(name)
            pool = f"`{cls.test_split}` split" if cls.test_split else "whole dataset"
        except Exception:  # a name in the file that is not registered
            pool = "?"
        if entry.get("ids"):
            state = f"**pinned** ({len(entry['ids'])} ids)"
            sha = f"`{entry['sha256'][:16]}…`"
        else:
            state = "rule, computed from local data"
            sha = "—"
        lines.append(f"| `{name}` | {pool} | {state} | {sha} |")
    return "\n".join(lines) + "\n"


def cli_markdown() -> str:
    """``nucfuse --help`` and ``nucfuse <command> --help`` for every command."""
    import argparse

    from nucfuse_datasets.cli import build_parser

    parser = build_parser()
    parts = ["### `nucfuse`", "", "```text", _help(parser), "```", ""]
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subs.choices.items():
        parts += [f"### `nucfuse {name}`", "", "```text", _help(sub), "```", ""]
    return "\n".join(parts)


def _help(parser: Any) -> str:
    buf = io.StringIO()
    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"  # argparse wraps at the terminal width: make the page reproducible
    try:
        with redirect_stdout(buf):
            parser.print_help()
    finally:
        if columns is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = columns
    return buf.getvalue().rstrip()


def _manual_line(line: str) -> str:
    """One line of ``manual_instructions``: indented lines are commands (code), the rest literal text."""
    if not line.strip():
        return ""
    if line[:1].isspace() and "`" not in line:
        return f"`{line.strip()}`"
    return esc(line.strip())


def registry_entry_markdown(name: str, with_citation: bool = True) -> str:
    """The generated "Registry entry" section appended to a dataset page (citation only if the page has none)."""
    import nucfuse_datasets as nf

    info = nf.get_dataset_class(name).info(REPO_ROOT / ".nucfuse-docs-no-data")
    out = [
        "",
        "## Registry entry",
        "",
        f"*Generated from `nucfuse_datasets.get_dataset_class({name!r}).info()` when the site is built; "
        f"`nucfuse info {name}` prints the same, plus what is present locally.*",
        "",
        "| | |",
        "|---|---|",
        f"| Class | `nucfuse_datasets.{nf.get_dataset_class(name).__name__}` |",
        f"| Licence | {_cell(licence_text(info))} |",
        f"| Download | {_cell(download_kind(info))} |",
        f"| Source splits | {', '.join(f'`{s}`' for s in info['splits'])} |",
        f"| NucFuse-test draws from | {test_pool(info)} |",
        f"| Classes | {_cell(esc(classes_text(info)))} |",
    ]
    if info["homepage"]:
        out.append(f"| Homepage | <{info['homepage']}> |")
    if info["resources"]:
        out += ["", "| resource | file | download | size | hash (provenance) |", "|---|---|---|---|---|"]
        for r in info["resources"]:
            how = "manual" if r["manual"] else "automatic"
            if not r["required"]:
                how += ", optional"
            if r["sha256"]:
                digest = f"sha256 `{r['sha256'][:12]}…`"
            elif r["md5"]:
                digest = f"md5 `{r['md5']}`"
            else:
                digest = "none pinned: the sha256 of the first copy is recorded and enforced"
            if r["hash_source"] and (r["sha256"] or r["md5"]):
                digest += f" ({esc(r['hash_source'])})"
            elif r["hash_source"]:
                digest = esc(r["hash_source"])
            row = [f"`{r['key']}`", f"`{r['filename']}`", how, human_size(r["size"]), digest]
            out.append("| " + " | ".join(_cell(c) for c in row) + " |")
    if info["expected_counts"]:
        out += ["", "| checked after preparing: split | tiles | nuclei | source |", "|---|--:|--:|---|"]
        for e in info["expected_counts"]:
            row = [e["split"], _int(e["tiles"]), _int(e["nuclei"]), esc(e["source"])]
            out.append("| " + " | ".join(_cell(c) for c in row) + " |")
    if info["manual_instructions"]:
        out += ["", '!!! info "Manual download (as `nucfuse info` prints it)"', ""]
        out += [("    " + _manual_line(line)).rstrip() for line in info["manual_instructions"].splitlines()]
    if info["citation"] and with_citation:
        out += ["", '!!! quote "Citation"', "", "    " + esc(" ".join(info["citation"].split()))]
    return "\n".join(out) + "\n"


def dataset_classes_markdown() -> str:
    """One mkdocstrings block per registered dataset class (rendered by the mkdocstrings plugin)."""
    from nucfuse_datasets.datasets._registry import dataset_classes

    blocks = []
    for cls in dataset_classes():
        blocks += [
            f"::: {cls.__module__}.{cls.__qualname__}",
            "    options:",
            "      heading_level: 3",
            "      members: false",
            "",
        ]
    return "\n".join(blocks)


GENERATORS = {
    "catalogue": catalogue_markdown,
    "dataset-classes": dataset_classes_markdown,
    "counts": counts_markdown,
    "licences": licence_summary_markdown,
    "test-ids": test_ids_markdown,
    "cli": cli_markdown,
}


# --------------------------------------------------------------------------- MkDocs events


def _fill_datasets_section(nav: list[Any], entries: list[Any]) -> bool:
    for item in nav:
        if isinstance(item, dict) and DATASETS_SECTION in item:
            item[DATASETS_SECTION] = entries
            return True
    return False


def _nav_files(nav: list[Any]) -> set[str]:
    out: set[str] = set()
    for item in nav:
        if isinstance(item, str):
            out.add(item)
        elif isinstance(item, dict):
            for value in item.values():
                if isinstance(value, str):
                    out.add(value)
                elif isinstance(value, list):
                    out |= _nav_files(value)
    return out


def add_optional_pages(nav: list[Any], docs_dir: Path = DOCS_DIR) -> list[str]:
    """Insert the :data:`OPTIONAL_PAGES` that exist and are not in ``nav`` yet; returns the pages added."""
    added = []
    present = _nav_files(nav)
    for page, title in OPTIONAL_PAGES.items():
        if (docs_dir / page).is_file() and page not in present:
            at = next((i for i, it in enumerate(nav) if isinstance(it, dict) and "Changelog" in it), len(nav))
            nav.insert(at, {title: page})
            added.append(page)
    return added


def on_config(config: Any) -> Any:
    """Generate the Datasets navigation; warn (strict: fail) for registered datasets without a page."""
    docs_dir = Path(config["docs_dir"])
    for name in missing_pages(docs_dir):
        log.warning(
            f"dataset {name!r} is registered but has no page: write docs/datasets/{name}.md "
            "(headings in docs/contributing.md, section 4)"
        )
    nav = config.get("nav")
    if nav is not None:
        if not _fill_datasets_section(nav, dataset_nav(docs_dir)):
            log.warning(f"mkdocs.yml: the nav has no {DATASETS_SECTION!r} section for the generated dataset pages")
        add_optional_pages(nav, docs_dir)
    snippets = config["mdx_configs"].setdefault("pymdownx.snippets", {})
    snippets["base_path"] = [str(REPO_ROOT)]
    return config


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Fill the generated blocks and append the registry entry to dataset pages."""
    for key in MARKERS:
        marker = f"<!-- nucfuse:{key} -->"
        if marker in markdown:
            markdown = markdown.replace(marker, GENERATORS[key]())
    src = page.file.src_uri
    if src.startswith("datasets/") and src != DATASETS_INDEX:
        import nucfuse_datasets as nf

        name = Path(src).stem
        if name in nf.list_datasets():
            has_citation = re.search(r"^#+ .*citation", markdown, re.IGNORECASE | re.MULTILINE) is not None
            markdown = markdown.rstrip("\n") + "\n" + registry_entry_markdown(name, with_citation=not has_citation)
    return markdown


if __name__ == "__main__":  # python docs/hooks/nucfuse_docs.py --write-readme
    import sys

    if sys.argv[1:] != ["--write-readme"]:
        raise SystemExit("usage: python docs/hooks/nucfuse_docs.py --write-readme")
    sys.path.insert(0, str(REPO_ROOT))  # the package of this checkout, not another installed copy
    README.write_text(readme_with_catalogue(README.read_text(encoding="utf-8")), encoding="utf-8")
