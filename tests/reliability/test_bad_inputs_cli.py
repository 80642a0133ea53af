"""The bad-input corpus of ``test_bad_inputs.py``, run through the command line (``nucfuse prepare``).

Every case must end in one ``error: ...`` line on stderr that names the offending file (no traceback, no bare
built-in exception), a non-zero exit status, and nothing partial left behind: what the API promises, the CLI keeps.
"""

from __future__ import annotations

import contextlib

import pytest

from nucfuse_datasets.cli import main
from nucfuse_datasets.errors import NucFuseError
from nucfuse_datasets.io.download import use_downloader
from tests.conftest import copy_native
from tests.reliability.corpus import Ctx, _assert_nothing_partial, _snapshot, all_cases

CASES = all_cases()


def _argv(ctx: Ctx) -> list[str]:
    argv = ["prepare", ctx.name, "--root", str(ctx.root), "--quiet"]
    if ctx.download:
        argv.append("--download")
    for key, value in ctx.fake.options.items():
        argv += ["--option", f"{key}={value}"]
    return argv


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_through_the_cli(case, tmp_path, fake_factory, serve_fake, monkeypatch, capsys):
    ctx = Ctx(case.dataset, fake_factory(case.dataset), tmp_path, monkeypatch, serve_fake)
    offenders = case.mutate(ctx)
    offenders = (offenders,) if isinstance(offenders, str) else offenders
    before = _snapshot(ctx.root)
    capsys.readouterr()

    cm = use_downloader(ctx._transport) if ctx.download else contextlib.nullcontext()
    with cm:
        code = main(_argv(ctx))  # a bare exception would escape here and fail the test

    err = capsys.readouterr().err
    assert code == 1, err
    assert err.startswith("error: "), err
    assert "Traceback" not in err
    for offender in offenders:
        assert offender in err, f"the message does not name {offender!r}: {err}"
    for fragment in case.fragments:
        assert fragment in err.lower(), f"{fragment!r} missing from: {err}"
    _assert_nothing_partial(ctx, before)


def test_corrupt_prepared_store_through_the_cli(tmp_path, fake_factory, capsys):
    """A damaged prepared file: ``ds[i]`` and ``nucfuse verify`` name it and ``nucfuse verify NAME --repair``."""
    import nucfuse_datasets as nf

    copy_native(fake_factory("tnbc"), tmp_path, "tnbc")
    ds = nf.get_dataset("tnbc", root=tmp_path)
    victim = ds.store_path / "instances" / f"{ds.sample_ids[0]}.npy"
    victim.write_bytes(victim.read_bytes()[:100])
    with pytest.raises(NucFuseError) as info:  # the API
        ds[0]
    assert str(victim) in str(info.value) and "verify tnbc --repair" in str(info.value)
    assert main(["verify", "tnbc", "--root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"instances/{ds.sample_ids[0]}.npy" in out and "nucfuse verify tnbc --repair" in out
    assert main(["verify", "tnbc", "--root", str(tmp_path), "--repair"]) == 0
    assert nf.get_dataset("tnbc", root=tmp_path)[0].instances.ndim == 2
