"""``unet-course inspect``: report the raw values found in mask files (0/1 vs 0/255, JPEG noise, ...).
inspect 子命令：报告掩码文件中的原始取值（0/1 还是 0/255、JPEG 噪声等）

Example::

    unet-course inspect drive --split train
    unet-course inspect path/to/masks --max-files 20
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from ..data import DATASETS, build_dataset, dataset_key
from ..data.folder import ZipMasks
from ..data.mask_report import inspect_masks
from ..errors import ConfigError, DataError, did_you_mean
from .options import add_data_root_argument, apply_data_root, positive_int

HELP = "report the raw values found in mask files"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``inspect`` flags. 添加 inspect 参数"""
    parser.description = "Report mask values, counts and likely problems (0/1 vs 0/255, JPEG noise, ...)."
    parser.add_argument("target", help="a dataset name (synthetic, drive, isbi2012, ...), a folder or file of masks, "
                                       "or a .zip of masks (read without unzipping)")
    parser.add_argument("--data-dir", help="dataset folder when TARGET is a dataset name")
    add_data_root_argument(parser)
    parser.add_argument("--split", default="train", help="split of a named dataset (default train)")
    parser.add_argument("--ignore-index", type=int, default=255, help="label value that is never scored")
    parser.add_argument("--max-files", type=positive_int, default=None, help="look at no more than N files")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the mask report of a folder, a file or a named dataset. 打印掩码报告"""
    apply_data_root(args)
    path = Path(args.target).expanduser()
    masks: Any = path                                          # 掩码目录或单个文件
    if path.is_file() and path.suffix.lower() == ".zip":       # e.g. Carvana's train_masks.zip 不解压读取
        masks = ZipMasks(path)
    if not path.exists():
        if path.suffix or "/" in args.target or os.sep in args.target:        # 看起来是路径而不是数据集名
            raise DataError(f"{args.target!r} does not exist. inspect takes a folder or file of masks, or a data "
                            f"set name ({', '.join(DATASETS)}).")
        try:
            dataset_key(args.target)
        except ConfigError:                                            # neither a path here nor a data set name
            raise DataError(f"{args.target!r} is neither a file or folder here nor a data set name "
                            f"({', '.join(DATASETS)}).{did_you_mean([args.target], list(DATASETS))} inspect takes a "
                            "folder or file of masks, or a data set name.") from None
        masks = build_dataset(args.target, root=args.data_dir, split=args.split)
    print(inspect_masks(masks, ignore_index=args.ignore_index, max_files=args.max_files, warn=False))
    return 0
