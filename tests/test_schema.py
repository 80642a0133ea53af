from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from nucfuse_datasets import Sample, SampleMeta, collate
from nucfuse_datasets.errors import InvalidSampleError, NucFuseError

META = SampleMeta(dataset="d", sample_id="x", split="all")


def make(h=8, w=10, **kw):
    inst = np.zeros((h, w), np.int32)
    inst[1:3, 1:3] = 1
    inst[5:7, 5:9] = 2
    return Sample(image=np.zeros((h, w, 3), np.uint8), instances=inst, meta=META, **kw)


def test_valid_sample_basics():
    s = make()
    assert s.shape == (8, 10)
    assert s.n_instances == 2
    assert s.type_map() is None
    d = s.to_dict()
    assert d["meta"]["dataset"] == "d" and d["image"] is s.image


@pytest.mark.parametrize(
    ("field", "value", "text"),
    [
        ("image", np.zeros((8, 10), np.uint8), "H×W×3"),
        ("image", np.zeros((8, 10, 4), np.uint8), "H×W×3"),
        ("image", np.zeros((8, 10, 3), np.float32), "uint8"),
        ("instances", np.zeros((8, 10), np.int64), "int32"),
        ("instances", np.zeros((8, 9), np.int32), "differs from image"),
        ("instances", [[0]], "numpy array"),
        ("ignore", np.zeros((8, 10), np.uint8), "bool"),
        ("ignore", np.zeros((8, 9), bool), "differs from image"),
        ("classes", np.zeros(3, np.int64), "int32"),
    ],
)
def test_invalid_arrays_raise_one_clear_error(field, value, text):
    base = make().to_dict()
    base["meta"] = META
    base[field] = value
    with pytest.raises(InvalidSampleError, match=text) as info:
        Sample(**base)
    assert isinstance(info.value, NucFuseError) and isinstance(info.value, ValueError)
    assert "d/x" in str(info.value)


def test_classes_need_class_names_and_validate_values():
    with pytest.raises(InvalidSampleError, match="class_names"):
        make(classes=np.array([0, 1, 1], np.int32))
    s = make(classes=np.array([0, 1, 2], np.int32), class_names=("background", "a", "b"))
    assert s.type_map()[6, 6] == 2
    s.validate_values()
    bad = make(classes=np.array([0, 1], np.int32), class_names=("background", "a"))
    with pytest.raises(InvalidSampleError, match="largest id"):
        bad.validate_values()
    out_of_range = make(classes=np.array([0, 1, 5], np.int32), class_names=("background", "a"))
    with pytest.raises(InvalidSampleError, match="class_names"):
        out_of_range.validate_values()


def test_negative_ids_rejected_by_validate_values():
    s = make()
    s.instances[0, 0] = -1
    with pytest.raises(InvalidSampleError, match=">= 0"):
        s.validate_values()


def test_replace_validates():
    s = make()
    t = s.replace(image=np.full((8, 10, 3), 7, np.uint8))
    assert t.image[0, 0, 0] == 7 and s.image[0, 0, 0] == 0
    with pytest.raises(InvalidSampleError):
        s.replace(image=np.zeros((3, 3, 3), np.uint8))


def test_sample_pickles():
    s = make(ignore=np.zeros((8, 10), bool))
    t = pickle.loads(pickle.dumps(s))
    assert np.array_equal(t.instances, s.instances) and t.meta == s.meta


def test_meta_is_strict():
    with pytest.raises(Exception, match="extra"):
        SampleMeta(dataset="d", sample_id="x", split="all", unknown=1)


def test_collate_same_size_stacks_chw():
    a, b = make(), make()
    batch = collate([a, b.to_dict()])
    assert batch["image"].shape == (2, 3, 8, 10) and batch["image"].dtype == torch.uint8
    assert batch["instances"].shape == (2, 8, 10) and batch["instances"].dtype == torch.int32
    assert batch["ignore"] is None
    assert [m["sample_id"] for m in batch["meta"]] == ["x", "x"]


def test_collate_mixed_sizes_and_ignore():
    a = make(ignore=np.ones((8, 10), bool))
    b = make(h=6, w=6)
    batch = collate([a, b])
    assert isinstance(batch["image"], list) and batch["image"][1].shape == (3, 6, 6)
    assert batch["ignore"][0].all() and not batch["ignore"][1].any()


def test_collate_empty_batch():
    with pytest.raises(InvalidSampleError):
        collate([])
