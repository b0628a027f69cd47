"""``unet-course cv``: k-fold cross-validation of a training recipe.
cv 子命令：对训练配方做 k 折交叉验证

Each fold trains the recipe on the other folds (``TrainConfig(folds=k, fold=i)``), then scores that fold's images
at native size with the run's final weights (``last.pt``, not ``best.pt``: a checkpoint picked by the validation
fold itself would make the estimate optimistic) at several decision thresholds, with one forward pass and with flip TTA. The result is the mean ± sd over
folds, and ``cv.json``. A fold whose ``fold.json`` exists is not trained again, so an interrupted CV continues
where it stopped; a finished fold trained with other settings is refused (:func:`check_finished_fold`).
每一折用其余折训练，再用最终权重（last.pt）在本折原尺寸图像上按多个阈值评分；结果为各折的均值 ± 标准差；
已完成的折不会重复训练

Examples::

    unet-course cv --recipe drive --folds 5 --out-dir runs/drive_cv
    unet-course cv --recipe drive --folds 5 --time-budget 600 --out-dir runs/drive_cv_600s
    torchrun --nproc_per_node=2 -m unet_course cv --recipe drive --folds 5   # each fold trained data-parallel

Under ``torchrun`` one process group serves every fold; rank 0 scores each fold, writes ``cv.json`` and prints,
while the other ranks wait for it. torchrun 下所有折共用一个进程组；0 号进程评分、写 cv.json 并打印，其余进程等待
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from .. import distributed
from ..checkpoint import load_checkpoint, load_model
from ..data import build_dataset, dataset_options, split_kwargs
from ..data.registry import check_folds
from ..env import default_out_dir, pick_device
from ..errors import ConfigError, OutputError
from ..files import ensure_writable_dir, is_json_report, write_json
from ..inference.calibration import DEFAULT_THRESHOLDS, score_thresholds
from ..training import TrainingStopped, fit, signal_name
from . import train
from .options import apply_data_root, config_from_args

HELP = "k-fold cross-validation of a recipe (mean ± sd of F1 over folds)"

#: What Ctrl-C says outside a fold (set-up, or the summary at the end). 不在某一折中被中断时的消息
INTERRUPTED = ("interrupted outside the folds: every finished fold is kept (fold.json in each fold_* folder of "
               "--out-dir). Run the same command again: it reuses them and trains the rest.")


def _thresholds(text: str) -> list[float]:
    try:
        values = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values or not all(0.0 < v < 1.0 for v in values):
        raise argparse.ArgumentTypeError(f"thresholds must lie in (0, 1), got {text!r}")
    return values


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """The ``train`` flags (``--folds`` sets k) plus ``--thresholds``. 训练参数加阈值列表"""
    train.configure_parser(parser)
    parser.description = ("k-fold cross-validation: train the recipe k times, each time validating on one fold, "
                          "and report F1 (foreground Dice inside the valid pixels) as mean ± sd over folds.")
    for action in parser._actions:                                    # --folds: cv's default is 5, not 0
        if action.dest == "folds":
            action.help = "number of folds, >= 2 (default 5) 交叉验证折数"
    parser.add_argument("--thresholds", type=_thresholds, default=list(DEFAULT_THRESHOLDS),
                        help="comma-separated decision thresholds to score (default 0.30,0.35,...,0.70)")
    parser.set_defaults(func=run)


def _fold_dataset(cfg: Any) -> Any:
    """The validation images of ``cfg.fold`` at native size (prediction re-applies the enhancement), rebuilt by
    :func:`~unet_course.data.split_kwargs`, the rule ``evaluate`` uses, with the same ``dataset_options`` as in
    training (e.g. a folder's ``mask_suffix``). 本折验证集（与 evaluate 同一规则重建），数据集参数与训练时相同"""
    check_folds(cfg.dataset, cfg.folds)                            # a data set without folds 不支持 k 折的数据集
    dataset_options(cfg.dataset, cfg.dataset_options)              # checked as training checks them 与训练时同样检查
    return build_dataset(cfg.dataset, root=cfg.data_dir, split="val", **split_kwargs(cfg.dataset, "val", cfg.to_dict()))


#: Settings that do not change a fold's result: where it is written and how it reports. 不影响结果的设置
PLUMBING = ("out_dir", "resume", "progress", "device", "num_workers", "save_every", "wandb_mode", "wandb_project",
            "wandb_run_name")


def check_finished_fold(cfg: Any) -> None:
    """Refuse a finished fold in ``cfg.out_dir`` that was trained with other settings: ``cv`` reuses a finished
    fold, so its result would be reported as this run's. 已完成的折若设置不同则拒绝（否则其结果会被当作本次的结果）

    The fold's settings come from its ``fold.json`` (``config``), or from its ``last.pt`` for a fold written
    before ``fold.json`` held them. 设置取自 fold.json，旧版本则取自 last.pt

    Raises:
        ConfigError: naming the folder, the settings that differ, and the fix.
    """
    out = Path(cfg.out_dir)
    done = out / "fold.json"
    if not done.is_file():
        return
    saved = json.loads(done.read_text()).get("config")
    current = cfg.to_dict()
    if saved is None and (out / "last.pt").is_file():
        saved = load_checkpoint(out / "last.pt").get("train_config") or {}
        # a checkpoint stores what an unset (None) setting resolved to, e.g. channels_last 检查点保存的是解析后的值
        current = {key: value for key, value in current.items() if value is not None}
    differ = [f"{key} {saved[key]!r} there, {value!r} now" for key, value in current.items()
              if key not in PLUMBING and saved is not None and key in saved and saved[key] != value]
    if differ:
        raise ConfigError(
            f"{str(out)!r} holds fold {cfg.fold} of an earlier cv run with other settings ({'; '.join(differ[:5])}"
            f"{'; ...' if len(differ) > 5 else ''}), and cv would report its result as this run's. Use another "
            f"--out-dir for these settings, or delete the fold_* folders there to train them again.")


def check_two_classes(cfg: Any) -> None:
    """Refuse data with other than two classes before any fold trains: cv scores the foreground F1 at decision
    thresholds, which a model with more classes does not have. 多于两类时在训练前拒绝（cv 按阈值计算前景 F1）

    Raises:
        ConfigError: naming the classes and the fold-by-fold commands that work for any class count.
    """
    values = list(_fold_dataset(cfg).mask_values)
    if len(values) == 2:
        return
    raise ConfigError(
        f"cv scores the foreground F1 at decision thresholds, which needs two classes; {cfg.dataset!r} has "
        f"{len(values)} (mask_values {values}). Cross-validate it fold by fold instead: for each I in 0..K-1, "
        "`unet-course train --folds K --fold I --out-dir runs/cv/fold_I ...` (the same data flags), then "
        "`unet-course evaluate runs/cv/fold_I/last.pt`, which scores that fold's validation images and reports "
        "the Dice of every class.")


def run_fold(cfg: Any, thresholds: list[float], device: Any = "cpu") -> dict[str, Any]:
    """Train one fold (unless its ``fold.json`` exists) and score it at each threshold. 训练并评估一折

    Under ``torchrun`` every rank trains, rank 0 alone scores and writes ``fold.json``, and the other ranks read it
    once it is written. torchrun 下所有进程一起训练，只由 0 号进程评分并写 fold.json，其余进程随后读取
    """
    done = Path(cfg.out_dir) / "fold.json"
    distributed.barrier()                                  # 所有进程看到同样的已完成折
    if done.is_file():
        return json.loads(done.read_text())
    start = time.perf_counter()
    fit(cfg)
    train_s = time.perf_counter() - start
    result = distributed.main_does(lambda: _score_fold(cfg, thresholds, train_s), device, f"scoring fold {cfg.fold}")
    return result if result is not None else json.loads(done.read_text())


def _score_fold(cfg: Any, thresholds: list[float], train_s: float) -> dict[str, Any]:
    """Score a trained fold at each threshold and write its ``fold.json``. 评估训练好的一折并写 fold.json"""
    out = Path(cfg.out_dir)
    done = out / "fold.json"
    model, meta = load_model(out / "last.pt")
    data = _fold_dataset(cfg)
    scores = score_thresholds(model, meta, data, thresholds, tta=False)   # 单次前向
    flips = score_thresholds(model, meta, data, thresholds, tta=True)     # 四个翻转取平均
    at = _nearest(thresholds, cfg.threshold)
    result = {"fold": cfg.fold, "train_seconds": train_s, "recipe_threshold": cfg.threshold,
              "f1_at_recipe_threshold": scores["f1"][at], "f1_tta_at_recipe_threshold": flips["f1"][at],
              "f1_tta": flips["f1"], **scores, "config": cfg.to_dict()}
    write_json(done, result)
    return result


def _nearest(values: list[float], target: float) -> int:
    return min(range(len(values)), key=lambda i: abs(values[i] - target))


def summarise(folds: list[dict[str, Any]], thresholds: list[float]) -> dict[str, Any]:
    """Mean ± sd over folds at each threshold. 各阈值下各折的均值与标准差"""
    def mean_sd(xs: list[float]) -> tuple[float, float]:
        return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)

    table = []
    for j, t in enumerate(thresholds):
        m, sd = mean_sd([f["f1"][j] for f in folds])
        table.append({"threshold": t, "f1_mean": m, "f1_sd": sd})
        m, sd = mean_sd([f["f1_tta"][j] for f in folds])
        table[-1].update(f1_tta_mean=m, f1_tta_sd=sd)
    at_recipe = mean_sd([f["f1_at_recipe_threshold"] for f in folds])
    tta = mean_sd([f["f1_tta_at_recipe_threshold"] for f in folds])
    best = max(table, key=lambda row: row["f1_mean"])
    return {"n_folds": len(folds), "f1_at_recipe_threshold": {"mean": at_recipe[0], "sd": at_recipe[1]},
            "f1_tta_at_recipe_threshold": {"mean": tta[0], "sd": tta[1]},
            "by_threshold": table, "best_threshold_on_these_folds": best,
            "train_seconds_mean": statistics.fmean(f["train_seconds"] for f in folds), "folds": folds}


def stopped_message(fold: int, root: Path, signum: int) -> str:
    """What ``cv`` says when a signal stops it in fold ``fold``: what is kept and how to continue.
    cv 在某一折被信号停止时的消息：保留了什么、如何继续

    >>> print(stopped_message(2, Path("runs/cv"), signal.SIGTERM))  # doctest: +NORMALIZE_WHITESPACE
    cv was stopped by SIGTERM in fold 2. Folds 0-1 are finished and kept (fold.json in each fold_* folder of
    'runs/cv'). Run the same cv command again: it reuses them and trains fold 2 from its start, then the rest.
    >>> print(stopped_message(0, Path("runs/cv"), signal.SIGINT))
    cv was stopped by Ctrl-C (SIGINT) in fold 0. No fold had finished yet; run the same cv command again to start over.
    """
    stopped = f"cv was stopped by {signal_name(signum)} in fold {fold}."
    if fold == 0:
        return f"{stopped} No fold had finished yet; run the same cv command again to start over."
    kept = f"Folds 0-{fold - 1} are finished and kept" if fold > 1 else "Fold 0 is finished and kept"
    return (f"{stopped} {kept} (fold.json in each fold_* folder of {str(root)!r}). Run the same cv command again: "
            f"it reuses them and trains fold {fold} from its start, then the rest.")


def run(args: argparse.Namespace) -> int:
    """Run every fold, write ``<out-dir>/cv.json`` and print the table. 运行所有折并输出结果

    Returns:
        0; 128 + the signal number when SIGTERM or Ctrl-C stopped it (one ``error:`` line says what is kept).
    """
    given = vars(args)                                                 # only the flags typed (defaults suppressed)
    if "fold" in given:
        raise ConfigError("cv trains every fold in turn, so --fold is not used; train one fold with "
                          "`unet-course train --folds K --fold I`.")
    if given.get("folds") == 0:
        raise ConfigError("cv needs at least 2 folds, and --folds 0 (train's 'no cross-validation') has no meaning "
                          "here; give --folds K with K >= 2, or leave it out for 5 folds.")
    if "resume" in given:
        raise ConfigError("cv has no --resume: it reuses every finished fold in its --out-dir, so run the same "
                          "command again to continue.")
    apply_data_root(args)
    base = config_from_args(args)
    if base.folds < 2:
        base = base.replace(folds=5)                                   # 默认 5 折
    check_two_classes(base.replace(fold=0))                            # 训练之前：cv 的阈值评分只适用于两类
    root = ensure_writable_dir(base.out_dir or default_out_dir("cv"), "--out-dir")
    summary_file = root / "cv.json"
    if summary_file.exists() and not is_json_report(summary_file, ("n_folds", "folds")):   # 不覆盖他人的 cv.json
        raise OutputError(f"{str(summary_file)!r} exists and no cv run wrote it, so the summary would overwrite it. "
                          "Choose another --out-dir, or move that file away.")
    configs = [base.replace(fold=k, out_dir=str(root / f"fold_{k}"), resume=None) for k in range(base.folds)]
    for cfg in configs:                                                # 先检查所有已完成的折，再开始训练
        check_finished_fold(cfg)
    _, device, created = distributed.setup(pick_device(base.device))  # torchrun：所有折共用一个进程组
    try:
        return _run_folds(base, configs, root, args.thresholds, device)
    finally:
        distributed.cleanup(created)


def _run_folds(base: Any, configs: list[Any], root: Path, thresholds: list[float], device: Any) -> int:
    """Every fold in turn, then ``cv.json`` and the summary (printed by rank 0 only). 依次运行各折并汇总"""
    main = distributed.is_main_process()
    folds = []
    for k, cfg in enumerate(configs):
        try:
            folds.append(run_fold(cfg, thresholds, device))
        except (TrainingStopped, KeyboardInterrupt) as exc:            # SIGTERM 或 Ctrl-C：说明如何继续
            signum = exc.signum if isinstance(exc, TrainingStopped) else signal.SIGINT
            if main:
                print(f"error: {stopped_message(k, root, signum)}", file=sys.stderr)
            return 128 + signum
        if main:
            print(f"fold {k}: F1 {folds[-1]['f1_at_recipe_threshold']:.4f} at threshold {base.threshold} "
                  f"(best {folds[-1]['best_f1']:.4f} at {folds[-1]['best_threshold']})", flush=True)
    if not main:
        return 0
    summary = summarise(folds, thresholds)
    summary["config"] = base.to_dict()
    write_json(root / "cv.json", summary)
    r = summary["f1_at_recipe_threshold"]
    t = summary["f1_tta_at_recipe_threshold"]
    print(f"{base.folds}-fold CV: F1 {r['mean']:.4f} ± {r['sd']:.4f} at threshold {base.threshold} "
          f"(flip TTA {t['mean']:.4f} ± {t['sd']:.4f}); "
          "by threshold: " + ", ".join(f"{row['threshold']:.2f}: {row['f1_mean']:.4f}" for row in
                                       summary["by_threshold"]))
    print(f"written: {root / 'cv.json'}")
    return 0
