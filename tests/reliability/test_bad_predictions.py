"""The bad-input corpus of prediction files (``prediction_cases.py``), run through the public API.

Every case: ``find_predictions`` then ``read_prediction`` raise exactly the declared error, whose message names the
file and says what is wrong; the folder is left as it was (nothing written, nothing removed); the answer is quick.
"""

from __future__ import annotations

import time
import warnings

import pytest

from nucfuse_datasets.errors import NucFuseError, UnsafePickleWarning
from nucfuse_datasets.io.files import sha256_file
from nucfuse_datasets.io.predictions import find_predictions, read_prediction
from tests.reliability.prediction_cases import KEY, cases

CASES = cases()


def _snapshot(folder):
    return {
        p.relative_to(folder).as_posix(): (p.stat().st_size, sha256_file(p) if p.stat().st_size < 1 << 24 else "")
        for p in folder.rglob("*")
        if p.is_file()
    }


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_prediction(case, tmp_path):
    folder = tmp_path / "predictions"
    folder.mkdir()
    offender = case.make(folder)
    before = _snapshot(folder)
    start = time.perf_counter()
    with pytest.raises(NucFuseError) as info, warnings.catch_warnings():
        warnings.simplefilter("ignore", UnsafePickleWarning)  # the allow_pickle cases warn by design
        found = find_predictions(folder, [KEY], format=case.format)
        read_prediction(found[KEY], case.shape, **case.read)
    elapsed = time.perf_counter() - start
    exc = info.value
    assert type(exc) is case.error, f"expected {case.error.__name__}, got {type(exc).__name__}: {exc}"
    message = str(exc)
    assert offender.rsplit("/", 1)[-1] in message, f"the message does not name {offender!r}: {message}"
    for fragment in case.fragments:
        assert fragment in message.lower(), f"{fragment!r} missing from: {message}"
    assert elapsed < case.max_seconds, f"took {elapsed:.2f} s"
    assert _snapshot(folder) == before, "the predictions folder changed"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["predictions"], "something was written beside it"


def test_corpus_ids_are_unique():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 40
