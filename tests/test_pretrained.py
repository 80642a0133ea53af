"""Pretrained encoder weights (issue 13, part 1): fetched through the library's seams, never the network.

HIPT's ``vit256_small_dino.pth`` goes through the injectable downloader of ``_download.py``; timm's ConvNeXt-V2
weights through the injectable hub downloader of ``nucfuse_datasets.weights``. The files are generated here from
randomly initialised timm models (the scaled-down encoders of the smoke configurations), so the expected tensors
come from the file, not from the code under test.
"""

from __future__ import annotations

import argparse
import io
import json
import warnings
from pathlib import Path

import pytest
import torch

timm = pytest.importorskip("timm")

from examples.cellvit.model import CellViT256  # noqa: E402
from examples.cellvit.spec import SPEC as CELLVIT  # noqa: E402
from examples.common.pretrained import resolve_pretrained  # noqa: E402
from examples.hovernext.model import HoVerNeXt  # noqa: E402
from examples.hovernext.spec import SPEC as HOVERNEXT  # noqa: E402
from nucfuse_datasets.errors import (  # noqa: E402
    ArgumentError,
    ChecksumError,
    DownloadError,
    InvalidSourceError,
    OfflineError,
)
from nucfuse_datasets.io.download import use_downloader  # noqa: E402
from nucfuse_datasets.io.files import sha256_file  # noqa: E402
from nucfuse_datasets.weights import (  # noqa: E402
    CONVNEXTV2_TINY,
    HIPT_VIT256,
    convnextv2_weights,
    hipt_vit256_weights,
    use_hub_downloader,
    weights_dir,
)

pytestmark = pytest.mark.filterwarnings("ignore:.*randomly initialised.*:UserWarning")
VIT = "vit_tiny_patch16_224"
CONVNEXT = "convnextv2_atto"


@pytest.fixture(autouse=True)
def _no_hub() -> None:
    def refuse(repo_id: str, filename: str) -> str:
        raise AssertionError(f"a test tried to download {repo_id}/{filename} from the hub")

    with use_hub_downloader(refuse):
        yield


@pytest.fixture(scope="module")
def hipt_bytes() -> tuple[bytes, dict[str, torch.Tensor]]:
    """A DINO-style checkpoint: teacher + student, ``module.backbone.`` prefixes, a projection head, the args."""
    torch.manual_seed(0)
    vit = timm.create_model(VIT, pretrained=False, num_classes=0)
    encoder = {k: v.clone() for k, v in vit.state_dict().items()}
    teacher = {f"backbone.{k}": v for k, v in encoder.items()}
    teacher["head.mlp.0.weight"] = torch.randn(8, 192)
    ckpt = {
        "teacher": teacher,
        "student": {f"module.backbone.{k}": torch.zeros_like(v) for k, v in encoder.items()},
        "epoch": 100,
        "args": argparse.Namespace(arch="vit_small", patch_size=16),
    }
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    return buf.getvalue(), encoder


def _serve(data: bytes, calls: list[str] | None = None):
    def transport(url: str, output: Path) -> None:
        if calls is not None:
            calls.append(url)
        Path(output).write_bytes(data)

    return transport


# --------------------------------------------------------------------------- HIPT through the download seam
def test_hipt_download_loads_into_the_encoder_and_records_hash(tmp_path, hipt_bytes) -> None:
    data, encoder = hipt_bytes
    calls: list[str] = []
    with use_downloader(_serve(data, calls)):
        path = hipt_vit256_weights(tmp_path, progress=False)
    assert calls == list(HIPT_VIT256.urls) and path == tmp_path / "vit256_small_dino.pth"
    assert path.read_bytes() == data
    record = json.loads((tmp_path / ".nucfuse-hashes.json").read_text())
    assert record["vit256_small_dino.pth"]["sha256"] == sha256_file(path)  # recorded after it loaded
    model = CellViT256(pretrained_path=path, encoder_name=VIT, decoder_widths=(32, 16, 16, 8))
    state = model.encoder.state_dict()
    assert state.keys() == encoder.keys()
    assert all(torch.equal(state[k], encoder[k]) for k in encoder)  # the teacher's tensors, not the student's
    with use_downloader(_serve(b"never used")):  # present: used as is, no download
        assert hipt_vit256_weights(tmp_path) == path


def test_hipt_truncated_download_is_deleted_and_not_recorded(tmp_path, hipt_bytes) -> None:
    data, _ = hipt_bytes
    with use_downloader(_serve(data[: len(data) // 3])), pytest.raises(InvalidSourceError) as err:
        hipt_vit256_weights(tmp_path, progress=False)
    msg = str(err.value)
    assert "vit256_small_dino.pth" in msg and str(tmp_path / "vit256_small_dino.pth") in msg
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing half-written, no hash recorded
    with use_downloader(_serve(data)):  # the good file is not locked out
        assert hipt_vit256_weights(tmp_path, progress=False).read_bytes() == data


def test_hipt_not_a_state_dict(tmp_path) -> None:
    buf = io.BytesIO()
    torch.save({"epoch": 3, "note": "no tensors"}, buf)
    with use_downloader(_serve(buf.getvalue() * 4)), pytest.raises(InvalidSourceError, match="no state dict"):
        hipt_vit256_weights(tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_hipt_offline_and_unreachable_name_the_path(tmp_path, monkeypatch) -> None:
    dest = tmp_path / "vit256_small_dino.pth"
    monkeypatch.setenv("NUCFUSE_OFFLINE", "1")
    with pytest.raises(OfflineError) as err:
        hipt_vit256_weights(tmp_path)
    for part in (str(dest), HIPT_VIT256.urls[0], "--pretrained", "--no-pretrained", "NUCFUSE_OFFLINE"):
        assert part in str(err.value)
    monkeypatch.delenv("NUCFUSE_OFFLINE")

    def unreachable(url: str, output: Path) -> None:
        raise ConnectionError("Name or service not known")

    with use_downloader(unreachable), pytest.raises(DownloadError) as err:
        hipt_vit256_weights(tmp_path, progress=False)
    assert str(dest) in str(err.value) and "--no-pretrained" in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_hipt_file_changed_after_first_use(tmp_path, hipt_bytes) -> None:
    data, _ = hipt_bytes
    dest = tmp_path / "vit256_small_dino.pth"
    dest.write_bytes(data)  # placed by hand: checked, recorded on first use
    assert hipt_vit256_weights(tmp_path) == dest
    other = io.BytesIO()
    torch.save({"teacher": {"backbone.cls_token": torch.ones(1, 1, 192)}}, other)
    dest.write_bytes(other.getvalue())
    with pytest.raises(ChecksumError, match="recorded on first use"):
        hipt_vit256_weights(tmp_path)


# --------------------------------------------------------------------------- ConvNeXt-V2 through the hub seam
@pytest.fixture(scope="module")
def convnext_file(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    from safetensors.torch import save_file

    torch.manual_seed(1)
    full = timm.create_model(CONVNEXT, pretrained=False)  # the classifier's state dict, as the hub serves it
    state = {k: v.contiguous() for k, v in full.state_dict().items()}
    path = tmp_path_factory.mktemp("hub") / "model.safetensors"
    save_file(state, str(path))
    return path, state


def test_hub_download_goes_through_timms_repo_and_loads(tmp_path, convnext_file) -> None:
    src, state = convnext_file
    calls: list[tuple[str, str]] = []

    def hub(repo_id: str, filename: str) -> str:
        calls.append((repo_id, filename))
        return str(src)

    with use_hub_downloader(hub):
        path = convnextv2_weights(tmp_path)
    assert calls == [("timm/convnextv2_tiny.fcmae_ft_in22k_in1k", "model.safetensors")]
    assert timm.models.get_pretrained_cfg(CONVNEXTV2_TINY.model).hf_hub_id == calls[0][0]  # timm's own repository
    model = HoVerNeXt(pretrained_path=path, encoder_name=f"{CONVNEXT}.fcmae_ft_in1k", decoder_channels=(32, 16, 16, 8))
    enc = model.encoder.state_dict()
    # features_only renames "stem.0" -> "stem_0", "stages.0" -> "stages_0"; the classifier head is dropped
    renamed = {k.replace("stem_", "stem.").replace("stages_", "stages."): v for k, v in enc.items()}
    assert renamed.keys() <= state.keys() and len(renamed) == len(state) - 4  # head.norm/fc weight+bias
    assert all(torch.equal(v, state[k]) for k, v in renamed.items())


def test_convnext_local_file_first_then_offline_error(tmp_path, convnext_file, monkeypatch) -> None:
    src, _ = convnext_file
    dest = tmp_path / CONVNEXTV2_TINY.filename
    monkeypatch.setenv("NUCFUSE_OFFLINE", "1")
    with pytest.raises(OfflineError) as err:
        convnextv2_weights(tmp_path)
    for part in (str(dest), CONVNEXTV2_TINY.page, "--pretrained", "--no-pretrained"):
        assert part in str(err.value)
    dest.write_bytes(src.read_bytes())  # placed by hand: used offline
    assert convnextv2_weights(tmp_path) == dest
    dest.write_bytes(src.read_bytes()[:1000])  # truncated
    with pytest.raises(InvalidSourceError, match=CONVNEXTV2_TINY.filename):
        convnextv2_weights(tmp_path)


def test_convnext_hub_unreachable(tmp_path) -> None:
    def down(repo_id: str, filename: str) -> str:
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    with use_hub_downloader(down), pytest.raises(DownloadError) as err:
        convnextv2_weights(tmp_path)
    assert str(tmp_path / CONVNEXTV2_TINY.filename) in str(err.value) and "huggingface.co" in str(err.value)


# --------------------------------------------------------------------------- the recipes' model.pretrained value
def test_resolve_pretrained_values(tmp_path, hipt_bytes, convnext_file) -> None:
    assert resolve_pretrained(HOVERNEXT, {"pretrained": ""}) is None
    assert resolve_pretrained(CELLVIT, {"pretrained": "none"}) is None
    assert resolve_pretrained(CELLVIT, {"pretrained": "/some/file.pth"}) == "/some/file.pth"
    with pytest.raises(ArgumentError, match="--no-pretrained"):
        resolve_pretrained(HOVERNEXT, {"pretrained": "auto", "encoder_name": CONVNEXT})
    # "auto" with the paper's encoders: <root>/weights, fetched through the seams
    with use_downloader(_serve(hipt_bytes[0])):
        got = resolve_pretrained(CELLVIT, CELLVIT.default_config()["model"], tmp_path)
    assert got == str(weights_dir(tmp_path) / "vit256_small_dino.pth") and Path(got).is_file()
    with use_hub_downloader(lambda repo, name: str(convnext_file[0])):
        assert resolve_pretrained(HOVERNEXT, HOVERNEXT.default_config()["model"], tmp_path) == str(convnext_file[0])


def test_defaults_are_pretrained_and_cli_switches_it_off(capsys) -> None:
    from examples.common.cli import train_main

    assert HOVERNEXT.default_config()["model"]["pretrained"] == "auto"
    assert CELLVIT.default_config()["model"]["pretrained"] == "auto"
    assert train_main(CELLVIT, ["--print-config", "--no-pretrained"]) == 0
    assert json.loads(capsys.readouterr().out)["model"]["pretrained"] == ""
    assert train_main(CELLVIT, ["--print-config", "--no-pretrained", "--pretrained", "x.pth"]) == 2


def test_training_offline_fails_before_anything_is_written(tmp_path, monkeypatch) -> None:
    """``auto`` offline: one clear error from the training entry point, no run folder content."""
    from examples.common.cli import train_main

    monkeypatch.setenv("NUCFUSE_OFFLINE", "1")
    out = tmp_path / "run"
    argv = ["--datasets", "synthetic", "--set", "data.test_ids=rule", "--root", str(tmp_path / "data")]
    argv += ["--dataset-option", "synthetic.n_tiles=20", "--out", str(out), "--device", "cpu", "--no-progress"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert train_main(CELLVIT, argv) == 2
    assert not out.exists()
