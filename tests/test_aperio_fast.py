"""The whole-array Aperio reader gives what Python's ``float()`` and the full expat parser give.

The vertex numbers are converted without ``float()`` for plain decimals (``mantissa / 10**k``); the expected
values here come from ``float()`` on the same strings, and the layouts from the full parser
(``parse_aperio``), which is independent of the fast path.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from nucfuse_datasets.datasets._aperio_fast import fast_aperio_regions
from nucfuse_datasets.datasets.monuseg import parse_aperio_xml
from nucfuse_datasets.errors import InvalidSourceError
from nucfuse_datasets.io.files import parse_aperio


def _document(regions: list[list[str]], vertex: str = '<Vertex X="{x}" Y="{y}"/>') -> str:
    body = []
    for k, xs in enumerate(regions, start=1):
        pairs = list(zip(xs[0::2], xs[1::2], strict=True))
        vertices = "\n\t\t\t".join(vertex.format(x=x, y=y) for x, y in pairs)
        body.append(f'<Region Id="{k}" Type="0">\n\t\t<Vertices>\n\t\t\t{vertices}\n\t\t</Vertices>\n\t</Region>')
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Annotations MicronsPerPixel="0.252700">'
        '<Annotation Id="1"><Regions>\n\t' + "\n\t".join(body) + "\n</Regions></Annotation></Annotations>\n"
    )


def _random_decimal(rng: random.Random) -> str:
    sign = rng.choice(["", "", "", "-", "+"])
    kind = rng.random()
    digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 14)))
    if kind < 0.3:
        return sign + digits[:9]
    cut = rng.randint(0, min(len(digits), 9))  # coordinates stay below MAX_COORDINATE (2**31)
    if cut == 0 and kind < 0.4:
        return sign + "." + digits  # ".5"
    if cut == len(digits) and kind < 0.5:
        return sign + digits + "."  # "5."
    return sign + digits[:cut] + "." + digits[cut:] if cut else sign + "0." + digits


def test_plain_decimals_convert_exactly_as_float_does(tmp_path: Path) -> None:
    rng = random.Random(18)
    numbers = [_random_decimal(rng) for _ in range(6000)]
    # the round-to-nearest-even edge: decimals whose exact value sits near a half-ulp of a double
    numbers += ["0.1", "0.3", "2.675", "1.005", "123456789.012345", "999999999.999999", "0.00000000000001", "-0", "0.0"]
    if len(numbers) % 2:
        numbers.append("1")
    regions = [numbers[i : i + 60] for i in range(0, len(numbers), 60)]
    path = tmp_path / "a.xml"
    path.write_text(_document(regions))
    fast = fast_aperio_regions(path)
    assert fast is not None
    got = np.concatenate([xy.ravel() for xy in fast[1]])
    want = np.array([float(s) for r in regions for s in r])
    assert got.tobytes() == want.tobytes()  # bit for bit, signed zeros included


@pytest.mark.parametrize(
    "numbers",
    [
        ["1e3", "2.5E-1", "-.5e+2", "7"],  # exponents: converted by float()
        ["1234567890.1234567", "2", "3", "4"],  # 17 digits: beyond the exact fast path, float() again
        ["00000000000000000000001", "0.000000000000000000001", "5", "6"],
    ],
    ids=["exponent", "17-digits", "long-zeros"],
)
def test_other_numbers_fall_back_to_float(tmp_path: Path, numbers: list[str]) -> None:
    path = tmp_path / "a.xml"
    path.write_text(_document([[*numbers, "1", "1"]]))
    fast = fast_aperio_regions(path)
    assert fast is not None
    np.testing.assert_array_equal(fast[1][0].ravel(), [float(s) for s in [*numbers, "1", "1"]])


@pytest.mark.parametrize(
    ("vertex", "fast_expected"),
    [
        ('<Vertex X="{x}" Y="{y}" Z="0"/>', True),
        ('<Vertex X="{x}" Y="{y}" Z="a b?c"/>', True),
        ('<Vertex X="{x}" Y="{y}" />', True),
        ('<Vertex X="{x}" Y="{y}" Z="0" />', True),
        ('<Vertex  X="{x}" Y="{y}"/>', False),
        ('<Vertex X="{x}" Y="{y}"></Vertex>', False),
        ("<Vertex X='{x}' Y='{y}'/>", False),
        ('<Vertex X="{x}" Y="{y}" W="1"/>', False),
    ],
    ids=["z", "z-text", "space-close", "z-space-close", "double-space", "open-close", "single-quotes", "other-attr"],
)
def test_vertex_spellings_agree_with_the_full_parser(tmp_path: Path, vertex: str, fast_expected: bool) -> None:
    path = tmp_path / "a.xml"
    path.write_text(_document([["1.5", "2", "4", "2", "4", "5"], ["-1", ".5", "3", "7", "8", "12.5"]], vertex))
    fast = fast_aperio_regions(path)
    assert (fast is not None) == fast_expected
    root, annotations = parse_aperio(path)
    slow = [xy for ann in annotations for _, xy in ann.regions]
    regions, _ = parse_aperio_xml(path)
    assert [r.tolist() for r in regions] == [s.tolist() for s in slow]
    if fast is not None:
        assert fast[0] == root


@pytest.mark.parametrize(
    "broken",
    [
        ('Y="2"/>', 'Y="2"'),  # an unclosed vertex tag
        ('<Region Id="1"', '<Region Id="<Vertex X="1" Y="2"/>"'),  # a vertex inside an attribute value
        ('X="1.5"', 'X="1.5.1"'),  # not a number
        ('X="1.5"', 'X=""'),  # no number
        ("</Annotations>\n", "</Annotations>\n<Vertex X='1' Y='1'/>"),  # content after the root
    ],
    ids=["unclosed", "in-attribute", "two-dots", "empty", "after-root"],
)
def test_broken_documents_go_to_the_full_parser(tmp_path: Path, broken: tuple[str, str]) -> None:
    text = _document([["1.5", "2", "4", "2", "4", "5"]])
    assert broken[0] in text
    path = tmp_path / "a.xml"
    path.write_text(text.replace(broken[0], broken[1], 1))
    assert fast_aperio_regions(path) is None
    with pytest.raises(InvalidSourceError, match=r"a\.xml"):
        parse_aperio_xml(path)


def test_mutated_documents_agree_with_the_full_parser_or_fall_back(tmp_path: Path) -> None:
    """Random byte edits of a regular file: the fast path answers only when the full parser agrees."""
    rng = random.Random(2026)
    base = _document([["1.5", "2", "4", "2", "4", "5", "3", "3"], ["-1", ".5", "3", "7", "8", "12.5"]]).encode()
    alphabet = b'<>/"=. -+eE0123456789XYZVertexRegion\n!?&;'
    path = tmp_path / "m.xml"
    answered = 0
    for _ in range(400):
        data = bytearray(base)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(data))
            op = rng.random()
            if op < 0.4:
                data[at] = rng.choice(alphabet)
            elif op < 0.7:
                del data[at : at + rng.randint(1, 4)]
            else:
                data[at:at] = bytes(rng.choice(alphabet) for _ in range(rng.randint(1, 4)))
        path.write_bytes(bytes(data))
        fast = fast_aperio_regions(path)
        if fast is None:
            continue
        answered += 1
        root, annotations = parse_aperio(path)  # must not raise: the fast path accepted the document
        slow = [xy for ann in annotations for _, xy in ann.regions]
        assert fast[0] == root
        assert [r.tobytes() for r in fast[1]] == [s.tobytes() for s in slow], bytes(data)
    assert answered > 50  # the edits left many documents regular (digits changed, whitespace...)
