"""Data: data sets, joint transforms, mask value mapping and loaders.
数据：数据集、联合变换、掩码取值映射与数据加载器

Start here::

    from unet_course.data import build_dataset, build_loaders
    ds = build_dataset("synthetic", split="train")          # or "drive", "isbi2012", "carvana", "folder"
    item = ds[0]   # {"image": float32 (C, H, W), "mask": int64 (H, W), "name": str}

Files: ``io`` (reading files; the bit depth, channel and suffix rules), ``masks`` (values <-> class indices,
stray values, :func:`inspect_masks`), ``synthetic``,
``folder`` (image/mask pairs, Carvana, zips), ``drive``, ``isbi``, ``transforms``, ``registry`` (data sets by
name and the split rule), ``loaders``.
See data/README.md for where to get each real data set and the expected folder trees.
各真实数据集的获取方式与目录结构见 data/README.md
"""

from __future__ import annotations

from .base import SegmentationDataset, split_indices
from .drive import DRIVE_MEAN, DRIVE_STD, DRIVEDataset
from .folder import CarvanaDataset, FolderPairs
from .io import (
    IMAGE_EXTENSIONS,
    TIFF_EXTENSIONS,
    match_channels,
    read_image,
    read_mask,
    read_stack,
    resolve_channels,
)
from .isbi import ISBI_MASK_VALUES, ISBI_MEAN, ISBI_STD, ISBI2012Dataset
from .loaders import (
    DataInfo,
    SegmentationLoader,
    build_loaders,
    collate_segmentation,
    resolve_num_workers,
    worker_free_message,
)
from .mask_report import MaskReport, inspect_masks
from .masks import (
    STRAY_FRACTION,
    discover_mask_values,
    find_stray_values,
    indices_to_values,
    values_to_indices,
)
from .registry import DATASETS, build_dataset, dataset_key, dataset_options, options_blamed, split_kwargs
from .synthetic import SYNTHETIC_MEAN, SYNTHETIC_STD, SyntheticSegmentation, render_sample
from .transforms import SegmentationTransform, compute_mean_std, preprocess_image, scaled_size

__all__ = [
    "DATASETS", "DataInfo", "build_dataset", "build_loaders", "dataset_key", "dataset_options", "options_blamed",
    "resolve_num_workers", "split_kwargs", "split_indices",
    "collate_segmentation", "SegmentationLoader", "worker_free_message",
    "SegmentationDataset", "SyntheticSegmentation", "render_sample", "FolderPairs", "CarvanaDataset",
    "DRIVEDataset", "ISBI2012Dataset",
    "read_image", "read_mask", "read_stack", "match_channels", "resolve_channels", "IMAGE_EXTENSIONS",
    "TIFF_EXTENSIONS",
    "discover_mask_values", "values_to_indices", "indices_to_values", "inspect_masks", "MaskReport",
    "find_stray_values", "STRAY_FRACTION",
    "SegmentationTransform", "compute_mean_std", "preprocess_image", "scaled_size",
    "DRIVE_MEAN", "DRIVE_STD", "ISBI_MEAN", "ISBI_STD", "ISBI_MASK_VALUES", "SYNTHETIC_MEAN", "SYNTHETIC_STD",
]
