"""Lesson 05, prediction: overlap-tile sliding window, whole-image prediction with flip TTA, scoring, FOV masks.
第 05 课：预测。重叠切片滑动窗口、整图预测与翻转 TTA、评分、视野掩码

- :mod:`.tiling`: ``tile_starts``, ``blend_weights``, ``sliding_window_inference`` (the overlap-tile strategy),
  ``check_overlap``
- :mod:`.predict`: ``Prediction``, ``predict_image``, ``network_input``, ``predict_with_meta``, ``predict_probs``, ``settings_from_meta``
- :mod:`.scoring`: ``score_prediction``, ``evaluate_dataset``, ``compare_resize_vs_sliding``, ``masked_target``
- :mod:`.fov`: ``find_fov_mask``, ``apply_fov``
- :mod:`.memory`: ``estimate_forward_mb``, ``DEFAULT_MEMORY_CAP_MB``, ``check_memory_cap`` (when a whole image is
  tiled automatically)

The decision rule (probabilities -> labels) lives in :mod:`unet_course.metrics`, the AMP policy in
:mod:`unet_course.precision`, image reading and channel matching in :mod:`unet_course.data.io`.
决策规则在 metrics，混合精度策略在 precision，读图与通道对齐在 data.io
"""

from __future__ import annotations

from .fov import apply_fov, find_fov_mask
from .memory import DEFAULT_MEMORY_CAP_MB, check_memory_cap, estimate_forward_mb
from .predict import (
    TTA_FLIPS,
    Prediction,
    load_image,
    network_input,
    predict_image,
    predict_probs,
    predict_with_meta,
    settings_from_meta,
)
from .scoring import (
    INSTANCE_KEYS,
    compare_resize_vs_sliding,
    evaluate_dataset,
    masked_target,
    score_prediction,
)
from .tiling import (
    BLEND_MODES,
    blend_weights,
    check_overlap,
    sliding_window_inference,
    tile_starts,
)

__all__ = [
    "BLEND_MODES",
    "DEFAULT_MEMORY_CAP_MB",
    "INSTANCE_KEYS",
    "TTA_FLIPS",
    "Prediction",
    "apply_fov",
    "blend_weights",
    "check_memory_cap",
    "check_overlap",
    "compare_resize_vs_sliding",
    "estimate_forward_mb",
    "evaluate_dataset",
    "find_fov_mask",
    "load_image",
    "masked_target",
    "network_input",
    "predict_image",
    "predict_probs",
    "predict_with_meta",
    "score_prediction",
    "settings_from_meta",
    "sliding_window_inference",
    "tile_starts",
]
