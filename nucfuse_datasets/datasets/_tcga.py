"""TCGA barcodes: a tile's TCGA case, project and primary site, from the GDC's tissue source site (TSS) codes.

A TCGA barcode starts ``TCGA-<TSS>-<participant>`` (``TCGA-21-5784-01Z-00-DX1``): the two-character TSS code names
the site that collected the tissue *for one study*, so it determines the TCGA project (code ``21``: Fox Chase Cancer
Center, "Lung squamous cell carcinoma", TCGA-LUSC) and with it the primary site. Two tables ship as package data:

* ``tcga_tss.tsv``: the GDC's "TCGA Code Tables: Tissue Source Site Codes" (830 codes; columns TSS Code, Source
  Site, Study Name, BCR), copied from IARCbioinfo/TCGA_platypus-nf ``data/tissueSourceSite.tsv`` @ ``1e75637``;
* ``tcga_projects.tsv``: the GDC's "TCGA Study Abbreviations" (Study Name -> project ``TCGA-<abbreviation>``) with
  each project's primary site in the library's organ vocabulary (``lung``, ``kidney``, ... as ``meta.organ`` uses).

The header of each file cites its source and states the mapping rule. Every TCGA-derived dataset (MoNuSeg, MoNuSAC,
PCNS) records :func:`tcga_fields` in ``meta.extra`` and fills ``meta.organ`` from it where the organisers give none.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from nucfuse_datasets.errors import NucFuseError

__all__ = ["TCGA_CASE", "TissueSourceSite", "tcga_case", "tcga_fields", "tissue_source_sites"]

#: A TCGA case id anywhere in a name: ``TCGA-<TSS>-<participant>`` (case-insensitive).
TCGA_CASE = re.compile(r"TCGA-([A-Z0-9]{2})-([A-Z0-9]{4})", re.IGNORECASE)
TSS_FILE = "tcga_tss.tsv"
PROJECTS_FILE = "tcga_projects.tsv"


@dataclass(frozen=True)
class TissueSourceSite:
    """One row of the GDC's TSS code table, with the project and primary site its study stands for.

    Attributes:
        code: the two-character TSS code (``"21"``).
        source_site: the collecting institution (``"Fox Chase Cancer Center"``).
        study_name: the TCGA study as the GDC names it (``"Lung squamous cell carcinoma"``).
        bcr: the Biospecimen Core Resource that processed it (``"IGC"`` or ``"NCH"``).
        project: the GDC project (``"TCGA-LUSC"``); ``None`` for the cell-line controls.
        primary_site: the project's primary site in the library's organ vocabulary (``"lung"``), or ``None``.
    """

    code: str
    source_site: str
    study_name: str
    bcr: str
    project: str | None
    primary_site: str | None


def _rows(name: str) -> list[list[str]]:
    """The data rows of a shipped TSV (``#`` comment lines and the header line dropped)."""
    text = resources.files("nucfuse_datasets.datasets").joinpath(name).read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    rows = list(csv.reader(io.StringIO("\n".join(lines[1:])), delimiter="\t"))
    if any(len(row) != len(rows[0]) for row in rows):
        raise NucFuseError(f"nucfuse_datasets/datasets/{name}: rows of different lengths; the package is damaged")
    return rows


@lru_cache(maxsize=1)
def tissue_source_sites() -> dict[str, TissueSourceSite]:
    """Every TSS code of the GDC table, upper case, with its project and primary site (read once).

    Example:
        >>> site = tissue_source_sites()["21"]
        >>> site.source_site, site.study_name, site.project, site.primary_site
        ('Fox Chase Cancer Center', 'Lung squamous cell carcinoma', 'TCGA-LUSC', 'lung')
    """
    projects = {name.lower(): (f"TCGA-{abbr}", site or None) for abbr, name, site in _rows(PROJECTS_FILE)}
    out: dict[str, TissueSourceSite] = {}
    for code, source_site, study, bcr in _rows(TSS_FILE):
        project, primary_site = projects.get(study.lower(), (None, None))
        out[code.upper()] = TissueSourceSite(code, source_site, study, bcr, project, primary_site)
    return out


def tcga_case(name: str) -> str | None:
    """The TCGA case id (``TCGA-XX-YYYY``, upper case) in a file name, sample id or barcode, or ``None``.

    Example:
        >>> tcga_case("TCGA-G9-6342-01Z-00-DX1-1"), tcga_case("Human_Skin_03")
        ('TCGA-G9-6342', None)
    """
    m = TCGA_CASE.search(name)
    return m.group(0).upper() if m else None


def tcga_fields(name: str) -> dict[str, str]:
    """``meta.extra`` fields of a name holding a TCGA barcode: ``tcga_case``, ``tcga_project``, ``primary_site``.

    Empty for a name without a barcode; only ``tcga_case`` when the TSS code is not in the GDC table, or stands for
    no project (the cell-line controls).

    Example:
        >>> tcga_fields("TCGA-2Z-A9J9-01A-01-TS1")
        {'tcga_case': 'TCGA-2Z-A9J9', 'tcga_project': 'TCGA-KIRP', 'primary_site': 'kidney'}
        >>> tcga_fields("TCGA-ZZ-0000"), tcga_fields("train_1")
        ({'tcga_case': 'TCGA-ZZ-0000'}, {})
    """
    case = tcga_case(name)
    if case is None:
        return {}
    out = {"tcga_case": case}
    site = tissue_source_sites().get(case.split("-")[1])
    if site is not None and site.project is not None:
        out["tcga_project"] = site.project
        if site.primary_site is not None:
            out["primary_site"] = site.primary_site
    return out
