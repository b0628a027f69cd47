"""Mask values <-> class indices, discovery and inspection. 掩码取值与类别索引的映射、发现与检查"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from unet_course.data import (
    SyntheticSegmentation,
    discover_mask_values,
    indices_to_values,
    inspect_masks,
    values_to_indices,
)
from unet_course.data.masks import _VALUES_CACHE
from unet_course.errors import DataError


def test_values_to_indices_binary_0_255():
    mask = np.array([[0, 255], [255, 0]], dtype=np.uint8)
    out = values_to_indices(mask, [0, 255], "m.png")
    assert out.dtype == np.int64
    assert out.tolist() == [[0, 1], [1, 0]]


def test_values_to_indices_follows_the_given_order_isbi():
    # ISBI-2012: membrane is stored as 0 but is class 1 (foreground)
    mask = np.array([[0, 255, 255]], dtype=np.uint8)
    assert values_to_indices(mask, [255, 0]).tolist() == [[1, 0, 0]]


def test_values_to_indices_wide_integer_masks():
    mask = np.array([[0, 1000, 70000]], dtype=np.int32)
    assert values_to_indices(mask, [0, 1000, 70000]).tolist() == [[0, 1, 2]]
    with pytest.raises(DataError, match="5"):
        values_to_indices(np.array([[0, 5]], np.int32), [0, 1000], "wide.tif")


def test_values_to_indices_rejects_unknown_value_naming_file_and_value():
    mask = np.array([[0, 255, 128]], dtype=np.uint8)
    with pytest.raises(DataError) as err:
        values_to_indices(mask, [0, 255], "case_07_mask.png")
    msg = str(err.value)
    assert "case_07_mask.png" in msg and "128" in msg and "mask_values" in msg


def test_indices_to_values_round_trip_numpy_and_torch():
    mask = np.array([[255, 0], [0, 255]], dtype=np.uint8)
    idx = values_to_indices(mask, [255, 0])
    back = indices_to_values(idx, [255, 0])
    assert back.dtype == np.uint8 and (back == mask).all()
    back_t = indices_to_values(torch.from_numpy(idx), [255, 0])
    assert (back_t == mask).all()


def test_indices_to_values_refuses_out_of_range_labels():
    with pytest.raises(DataError, match="255"):
        indices_to_values(np.array([[0, 255]]), [0, 255])


def test_discover_mask_values_sorted_from_arrays_and_paths(tmp_path):
    Image.fromarray(np.array([[0, 3]], np.uint8)).save(tmp_path / "a.png")
    vals = discover_mask_values([np.array([[7, 0]], np.uint8), tmp_path / "a.png"])
    assert vals == [0, 3, 7]


def test_discover_mask_values_cache_is_used():
    key = ("test-cache", 123)
    _VALUES_CACHE.pop(key, None)
    assert discover_mask_values([np.array([[0, 1]])], cache_key=key) == [0, 1]
    # a second call with the same key must not rescan (an empty iterable would otherwise raise)
    assert discover_mask_values([], cache_key=key) == [0, 1]
    with pytest.raises(DataError):
        discover_mask_values([])


def test_inspect_masks_warns_about_0_255_masks(tmp_path):
    for i in range(3):
        m = np.zeros((16, 16), np.uint8)
        m[4 + i : 10, 4:10] = 255
        Image.fromarray(m).save(tmp_path / f"m{i}.png")
    with pytest.warns(UserWarning, match="255"):
        report = inspect_masks(tmp_path)
    assert report.values == [0, 255] and report.n_files == 3
    assert abs(sum(report.frequencies) - 1.0) < 1e-9
    assert len(report.warnings) == 1
    w = report.warnings[0]
    assert "ignore_index" in w and "mask_values" in w
    text = str(report)
    assert "255" in text and "WARNING" in text and "fraction" in text


def test_inspect_masks_flags_interpolated_masks():
    # a binary mask resized with bilinear interpolation grows in-between values along the edges
    m = np.zeros((40, 40), np.uint8)
    m[8:30, 10:33] = 255
    m[12:15, 2:38] = 255
    resized = np.asarray(Image.fromarray(m).resize((57, 57), Image.BILINEAR))
    assert len(np.unique(resized)) > 5
    with pytest.warns(UserWarning):
        report = inspect_masks([resized])
    assert any("interpolation" in w and "NEAREST" in w for w in report.warnings)


def test_inspect_masks_quiet_on_clean_index_masks():
    masks = [np.random.default_rng(i).integers(0, 3, (8, 8)).astype(np.uint8) for i in range(3)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = inspect_masks(masks)
    assert report.warnings == []
    assert report.values == [0, 1, 2]
    assert report.counts and sum(report.counts) == 3 * 64


def test_inspect_masks_on_a_dataset_uses_its_mapping():
    ds = SyntheticSegmentation(4, 32, task="multiclass", seed=1)
    report = inspect_masks(ds, warn=False)
    assert report.n_files == 4
    assert report.mask_values == ds.mask_values == [0, 128, 255]
    assert set(report.values) <= {0, 128, 255}


def _stray_set() -> list[np.ndarray]:
    masks = [np.zeros((64, 64), np.uint8) for _ in range(3)]
    for m in masks:
        m[:20, :20] = 255
    masks[1][50:53, 50:53] = 7  # 9 pixels of 7, in one mask only
    return masks


def test_discover_refuses_a_stray_value_and_inspect_warns_with_the_same_rule():
    masks = _stray_set()
    with pytest.raises(DataError) as err:
        discover_mask_values(masks, names=["a.png", "b.png", "c.png"])
    msg = str(err.value)
    assert "value 7 on 9 pixel(s)" in msg and "'b.png'" in msg and "mask_values=[0, 7, 255]" in msg
    assert discover_mask_values(masks, refuse_stray=False) == [0, 7, 255]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = inspect_masks(masks)
    assert any("Stray mask value" in str(w.message) for w in caught)
    assert any("value 7 on 9 pixel(s)" in w and "mask[1]" in w for w in report.warnings)


def test_rare_values_that_are_not_stray():
    big = [np.zeros((64, 64), np.uint8) for _ in range(3)]
    big[0][0, :3] = 255  # the only foreground: 3 pixels in one file, but removing it would leave one class
    assert discover_mask_values(big) == [0, 255]
    # a value held by two files is a class, however rare
    three = _stray_set()
    three[2][60, 60] = 7
    assert discover_mask_values(three) == [0, 7, 255]
    # a single mask cannot show that a value is stray
    assert discover_mask_values(_stray_set()[1:2]) == [0, 7, 255]


def test_binary_masks_in_two_encodings_are_refused_not_made_three_classes():
    def binary(value: int) -> np.ndarray:
        mask = np.zeros((16, 16), np.uint8)
        mask[2:10, 3:12] = value                                        # a large foreground, never stray
        return mask

    mixed = [binary(1), binary(1), binary(1), binary(255), binary(255)]  # two exports of one label set
    names = [f"m{i}.png" for i in range(len(mixed))]
    with pytest.raises(DataError) as err:                               # before: [0, 1, 255], three classes
        discover_mask_values(mixed, names=names)
    msg = str(err.value)
    assert "two binary encodings" in msg and "'m0.png'" in msg and "'m3.png'" in msg and "mask_values=[0, 1, 255]" in msg
    report = inspect_masks(mixed, warn=False)
    assert any("two binary encodings" in w for w in report.warnings)
    assert not any("void_values" in w for w in report.warnings)        # not taken for a void border
    border = binary(1)
    border[0] = 255                                                     # 1 and 255 in one file: a real third value
    assert discover_mask_values([border, binary(1)]) == [0, 1, 255]
    assert discover_mask_values([binary(1), binary(2)]) == [0, 1, 2]    # one class per image is fine
