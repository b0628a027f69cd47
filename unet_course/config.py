"""One dataclass holds every training knob, with its type, help text and allowed values.
一个数据类包含全部训练参数，并带有类型、帮助文本与可选值

The CLI flags (``--batch-size``), the notebooks' papermill parameters (``batch_size``) and the ``train_config``
stored in every checkpoint all use these field names, so a value can travel between them unchanged. Each field's
``metadata`` holds its ``help`` text and, for a choice, its ``choices``; the ``unet-course train`` flags are
generated from it (:mod:`unet_course.cli.options`), so this file is the one place to document a knob.
命令行参数、notebook 的 papermill 参数与检查点中保存的配置使用同一组字段名；帮助文本和可选值写在字段的
metadata 中，命令行参数由它自动生成

Every choice tuple of the package lives here; other modules import it from here.
包内所有的选项元组都定义在这里
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .coerce import coerce, from_text
from .errors import ConfigError, did_you_mean
from .rules import check_scale, check_threshold, check_tile, check_training_size, check_warp

OPTIMIZERS = ("adam", "adamw", "rmsprop", "sgd")
SCHEDULERS = ("plateau", "cosine", "poly", "none")
AMP_MODES = ("auto", "off", "fp16", "bf16")
LOSS_MODES = ("multiclass", "binary")
WANDB_MODES = ("disabled", "offline", "online")
ENHANCEMENTS = ("none", "green-clahe", "gray-clahe")
PROGRESS_MODES = ("auto", "bar", "line", "none")
#: Tile blending of the sliding window. 滑动窗口的融合方式
BLEND_MODES = ("gaussian", "linear", "constant")
#: Dataset splits that ``unet-course evaluate`` scores. 可评估的数据划分
SPLITS = ("train", "val", "test", "all", "holdout")

def knob(default: Any = dataclasses.MISSING, help: str = "", choices: tuple[str, ...] | None = None,
         default_factory: Any = dataclasses.MISSING, expects: str | None = None) -> Any:
    """A dataclass field whose ``metadata`` carries the ``--help`` text (English, then 中文) and the choices.
    带帮助文本与可选值的字段

    ``expects`` replaces the type's name in error messages when the type alone says too little
    (``int | str`` -> "an integer >= 0 or 'auto'"). expects 在类型名不够清楚时替换错误消息中的类型描述
    """
    metadata: dict[str, Any] = {"help": help}
    if choices is not None:
        metadata["choices"] = choices
    if expects is not None:
        metadata["expects"] = expects
    return field(default=default, default_factory=default_factory, metadata=metadata)


def data_seed_of(settings: Any) -> int:
    """The one rule for the seed of the data: ``data_seed`` when set, else ``seed``. 数据划分所用的种子

    The data sets take it as their ``seed`` (the train/val split, the k folds; the synthetic samples), while
    ``seed`` alone seeds the training (initial weights, crops, shuffles). So ``--seed 1 --data-seed 0`` trains
    on the same folds as ``--seed 0`` with other random draws: the run-to-run noise of a fold.
    数据集以它作为 seed；训练的随机性只由 seed 决定，因此固定 data_seed 可在同样的折上比较不同种子

    Args:
        settings: a :class:`TrainConfig` or its dict (a checkpoint's ``train_config``). 配置或其字典

    >>> data_seed_of({"seed": 1}), data_seed_of({"seed": 1, "data_seed": 0}), data_seed_of(TrainConfig(seed=2))
    (1, 0, 2)
    """
    values = settings if isinstance(settings, dict) else vars(settings)
    chosen = values.get("data_seed")
    return int(values.get("seed", 0) if chosen is None else chosen)


@dataclass
class TrainConfig:
    """Every knob of a training run. 训练运行的全部参数

    Defaults train the binary synthetic task to a validation Dice above 0.9 in under three minutes on a 2-core CPU.
    默认值在 2 核 CPU 上三分钟内把二分类合成任务训练到验证 Dice 0.9 以上

    Values are checked on construction: a wrong type (``epochs="abc"``, ``batch_size=2.5``), an unknown choice or
    an out-of-range value raises :class:`~unet_course.errors.ConfigError` naming the field.
    构建时检查类型、选项与取值范围，出错时 ConfigError 会写明字段名

    >>> TrainConfig(lr=1).lr                    # an int is accepted for a float field
    1.0
    >>> TrainConfig(epochs=1.5)
    Traceback (most recent call last):
    ...
    unet_course.errors.ConfigError: TrainConfig field 'epochs' must be an integer, got 1.5 (float).
    """

    # --- data 数据 ---
    dataset: str = knob("synthetic", "synthetic | synthetic-multiclass | drive | isbi2012 | carvana | folder 数据集")
    data_dir: str | None = knob(None, "dataset folder; none -> <data root>/<dataset default> 数据集目录")
    scale: float = knob(1.0, "resize factor applied before cropping, in (0, 4] 裁剪前的缩放比例")
    crop_size: int | None = knob(None, "random training crop (pixels); none -> whole image 训练随机裁剪大小")
    enhance: str = knob("none", "contrast enhancement 对比度增强", ENHANCEMENTS)
    image_size: int = knob(64, "synthetic images are image_size x image_size 合成图像尺寸")
    train_samples: int = knob(128, "synthetic: samples per epoch 合成数据每轮样本数")
    val_samples: int = knob(64, "synthetic: validation samples 合成验证样本数")
    val_fraction: float = knob(0.2, "real data: held-out fraction, in [0, 1) 验证集比例")
    folds: int = knob(0, "k-fold cross-validation: number of folds (0 -> use val_fraction) 交叉验证折数")
    fold: int = knob(0, "k-fold cross-validation: the fold used for validation, 0 .. folds-1 验证用的折")
    samples_per_epoch: int | None = knob(None, "real data: random crops per epoch (the train set repeats); "
                                               "none -> one pass 每轮随机裁剪数")
    augment: bool = knob(True, "flips / rotations / jitter on the training split 训练增强")
    rotate: float = knob(0.0, "with augment: also rotate training crops by a random angle in [-rotate, rotate] "
                              "degrees (0 -> off) 训练裁剪的随机旋转角度上限（度）")
    elastic: float = knob(0.0, "with augment: also deform training crops smoothly, with random displacements of "
                               "this standard deviation in pixels on a 3x3 grid (0 -> off) 训练裁剪的弹性形变（像素）")
    num_workers: int | str = knob("auto", "DataLoader workers; 'auto' picks a safe value 数据加载进程数",
                                  expects="an integer >= 0 or 'auto'")
    dataset_options: dict[str, Any] = knob(help="extra keyword arguments of the dataset class, as JSON, e.g. "
                                                "'{\"n_val\": 3, \"n_holdout\": 3}' for ISBI-2012's 24/3/3 split "
                                                "数据集类的额外参数", default_factory=dict)
    # --- model 模型 ---
    in_channels: int | None = knob(None, "input channels; none -> from the dataset 输入通道数")
    n_classes: int | None = knob(None, "classes; none -> from the dataset's mask values 类别数")
    base_channels: int = knob(8, "width of the first level (64 in the paper) 第一层通道数")
    depth: int = knob(3, "number of down-sampling steps (4 in the paper) 下采样次数")
    bilinear: bool = knob(False, "bilinear up-sampling instead of transposed conv 双线性上采样")
    gradient_checkpointing: bool = knob(False, "trade compute for memory 以计算换内存")
    channels_last: bool | None = knob(None, "NHWC memory format; unset -> auto (CUDA, or CPU with bf16) 通道在后")
    # --- loss 损失 ---
    mode: str = knob("multiclass", "multiclass (softmax + CE) | binary (sigmoid + BCE, 1 output channel) 损失模式",
                     LOSS_MODES)
    ce_weight: float = knob(1.0, "weight of CE/BCE in the combined loss 交叉熵权重")
    dice_weight: float = knob(1.0, "weight of Dice in the combined loss Dice 权重")
    class_weights: list[float] | None = knob(None, "optional per-class CE weights 每类交叉熵权重")
    ignore_index: int = knob(255, "target value that is never scored (DRIVE outside the FOV) 不计分的标签值")
    # --- optimisation 优化 ---
    epochs: int = knob(14, "training epochs 训练轮数")
    batch_size: int = knob(8, "images per step 批量大小")
    lr: float = knob(3e-3, "learning rate, > 0 学习率")
    weight_decay: float = knob(1e-4, "weight decay 权重衰减")
    optimizer: str = knob("adamw", "optimizer 优化器", OPTIMIZERS)
    momentum: float = knob(0.9, "sgd / rmsprop only 动量")
    scheduler: str = knob("plateau", "learning rate scheduler 学习率调度器", SCHEDULERS)
    plateau_patience: int = knob(2, "epochs without val Dice gain before the LR is cut 平台期耐心轮数")
    plateau_factor: float = knob(0.5, "LR multiplier on a plateau 平台期学习率倍率")
    warmup_epochs: int = knob(0, "poly / cosine warm-up epochs 预热轮数")
    grad_clip: float | None = knob(1.0, "max grad norm; none disables clipping 梯度裁剪")
    amp: str = knob("auto", "mixed precision (auto: fp16+scaler on CUDA; bf16 on CPU only with native bf16, "
                            "else fp32) 混合精度", AMP_MODES)
    time_budget: float | None = knob(None, "seconds of training: the cosine/poly schedule spans the epochs that fit "
                                           "in it (epochs stays the upper bound); none -> epochs alone 训练时间预算（秒）")
    # --- run 运行 ---
    device: str = knob("auto", "auto | cpu | cuda | cuda:N | mps 设备")
    seed: int = knob(0, "random seed: initial weights, crops, shuffles, and the data split unless data_seed is set "
                        "随机种子")
    data_seed: int | None = knob(None, "seed of the data alone: the train/val split and the k folds (synthetic: the "
                                       "samples); none -> seed. Keep it fixed to compare seeds on the same folds "
                                       "数据划分种子")
    deterministic: bool = knob(False, "deterministic kernels (bit-exact resume) 确定性计算")
    out_dir: str | None = knob(None, "output folder; none -> runs/train (or /kaggle/working/runs/train) 输出目录")
    resume: str | None = knob(None, "checkpoint to resume from ('last' -> <out_dir>/last.pt) 续训检查点")
    save_every: int = knob(1, "write last.pt every N epochs 每 N 轮保存一次")
    threshold: float = knob(0.5, "two classes (binary, or multiclass with 2 classes): foreground probability "
                                 "threshold, in (0, 1) 两类时的前景概率阈值")
    wandb_mode: str = knob("disabled", "Weights & Biases logging wandb 记录方式", WANDB_MODES)
    wandb_project: str = knob("unet-course", "wandb project wandb 项目名")
    wandb_run_name: str | None = knob(None, "wandb run name wandb 运行名")
    progress: str = knob("auto", "progress display 进度显示", PROGRESS_MODES)
    max_steps: int | None = knob(None, "stop each epoch after this many steps (smoke tests) 每轮最多步数")
    sync_batchnorm: bool = knob(False, "DDP only: synchronised batch norm 同步批归一化")
    predict_tta: bool = knob(False, "how to predict with this checkpoint: average the four flips (4x the compute) "
                                    "预测时是否使用翻转 TTA")
    predict_tile: int | None = knob(None, "how to predict with this checkpoint: sliding-window tile in pixels; none "
                                          "-> the whole image in one pass (tiles only above the memory cap) "
                                          "预测切片大小，none 为整图")
    extras: dict[str, Any] = knob(help="recipe-specific values, stored with the run 配方专用取值",
                                  default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------
    def validate(self, what: str = "TrainConfig field") -> None:
        """Check types, names and ranges; raise :class:`ConfigError` naming the field and what it expects.
        检查类型、名称与取值范围；出错时写明字段名与期望

        Args:
            what: how the message calls a field (``"Parameter"`` for notebooks). 消息中对字段的称呼
        """
        hints = field_types()
        for f in dataclasses.fields(self):          # 类型：int 字段拒绝 1.5 与 True，float 字段接受 int
            value = coerce(getattr(self, f.name), hints[f.name], f"{what} {f.name!r}", f.metadata.get("expects"))
            setattr(self, f.name, value)
        for f in dataclasses.fields(self):          # 选项
            allowed = f.metadata.get("choices")
            value = getattr(self, f.name)
            if allowed and value not in allowed:
                raise ConfigError(f"Unknown {f.name} {value!r}; choose one of: {', '.join(allowed)}.")
        self._check_ranges()
        self._check_combinations()

    def _check_combinations(self) -> None:
        """Refuse a setting that the other settings would silently switch off. 拒绝会被其他设置悄悄关闭的设置"""
        for name in ("rotate", "elastic"):
            if getattr(self, name) and not self.augment:
                raise ConfigError(f"{name}={getattr(self, name):g} is a training augmentation, so with augment=False "
                                  f"it would silently not happen. Turn augment on (--augment), or leave {name} at 0.")
        if self.warmup_epochs and self.scheduler not in ("cosine", "poly"):
            raise ConfigError(f"warmup_epochs={self.warmup_epochs} works with scheduler 'cosine' or 'poly'; with "
                              f"{self.scheduler!r} there would silently be no warm-up. Choose one of those "
                              "schedulers, or leave warmup_epochs at 0.")
        default_momentum = self.default_of("momentum")
        if self.momentum != default_momentum and self.optimizer not in ("sgd", "rmsprop"):
            raise ConfigError(f"momentum={self.momentum:g} is used by the sgd and rmsprop optimizers only; "
                              f"{self.optimizer!r} would silently ignore it. Choose one of those optimizers, or "
                              f"leave momentum at its default ({default_momentum:g}).")

    def _check_ranges(self) -> None:
        least = {"epochs": 1, "batch_size": 1, "base_channels": 1, "depth": 1, "image_size": 1, "train_samples": 1,
                 "val_samples": 1, "save_every": 1, "samples_per_epoch": 1, "max_steps": 1, "in_channels": 1,
                 "n_classes": 1, "plateau_patience": 0, "warmup_epochs": 0}
        for name, low in least.items():                             # None: unset, decided later 未设置
            value = getattr(self, name)
            if value is not None and value < low:
                raise ConfigError(f"{name} must be >= {low}, got {value!r}.")
        for name, ok, rule in (("lr", self.lr > 0, "> 0"), ("weight_decay", self.weight_decay >= 0, ">= 0"),
                               ("momentum", 0 <= self.momentum < 1, "in [0, 1)"),
                               ("plateau_factor", 0 < self.plateau_factor < 1, "in (0, 1)"),
                               # a negative norm would flip the gradients 负的范数会让梯度反向
                               ("grad_clip", self.grad_clip is None or self.grad_clip > 0, "> 0 (or None: no clipping)")):
            if not ok:
                raise ConfigError(f"{name} must be {rule}, got {getattr(self, name)!r}.")
        for name in ("seed", "data_seed"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"{name} must be a whole number >= 0, got {value!r}.")
        if self.folds and not (self.folds >= 2 and 0 <= self.fold < self.folds):
            raise ConfigError(f"folds={self.folds}, fold={self.fold}: use folds >= 2 and 0 <= fold < folds "
                              "(or folds=0 for a plain val_fraction split).")
        if self.time_budget is not None and not (self.time_budget > 0 and math.isfinite(self.time_budget)):
            raise ConfigError(f"time_budget must be a number of seconds > 0 (or None), got {self.time_budget!r}.")
        if not (0.0 <= self.val_fraction < 1.0):
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction!r}.")
        check_scale(self.scale)
        if self.crop_size is not None and self.crop_size < 8:
            raise ConfigError(f"crop_size must be >= 8 pixels (or None), got {self.crop_size!r}.")
        for name in ("rotate", "elastic"):
            check_warp(name, getattr(self, name))
        check_threshold(self.threshold)
        if self.predict_tile is not None:
            check_tile(self.predict_tile, self.depth, "predict_tile")
        if self.crop_size is not None:                              # the training input's side 训练输入的边长
            check_training_size(self.crop_size, self.batch_size, self.depth, "crop_size")
        elif self.dataset.startswith("synthetic"):
            check_training_size(self.image_size, self.batch_size, self.depth, "image_size")
        if self.num_workers != "auto" and (isinstance(self.num_workers, str) or self.num_workers < 0):
            raise ConfigError(f"num_workers must be 'auto' or an integer >= 0, got {self.num_workers!r}.")

    # ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain-types dict (JSON and ``torch.load(weights_only=True)`` safe). 仅含基本类型的字典"""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, strict: bool = True) -> TrainConfig:
        """Build from a dict; unknown keys raise :class:`ConfigError` when ``strict`` (typos are caught).
        从字典构建；strict 时未知键报错（可发现拼写错误）
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown and strict:
            raise ConfigError(f"Unknown TrainConfig field(s): {', '.join(unknown)}.{did_you_mean(unknown, names)} "
                              f"Known fields: {', '.join(sorted(names))}.")
        return cls(**{k: v for k, v in values.items() if k in names})

    @classmethod
    def from_parameters(cls, **values: Any) -> TrainConfig:
        """Build from a notebook's papermill parameters; a bad one gives one message naming the parameter.
        由 notebook 的 papermill 参数构建；参数有误时给出一条写明参数名的消息

        Only keyword arguments that are TrainConfig fields are used, so a notebook may pass all its parameters.
        ``papermill -p`` passes text, so JSON text for a dict or list field is read as JSON.
        只使用属于 TrainConfig 字段的参数，notebook 可以把全部参数传进来；dict/list 字段的 JSON 文本按 JSON 读取

        >>> TrainConfig.from_parameters(epochs=3, figure_dpi=80).epochs
        3
        >>> TrainConfig.from_parameters(dataset_options='{"mask_suffix": ""}').dataset_options   # papermill -p text
        {'mask_suffix': ''}
        >>> TrainConfig.from_parameters(epochs="abc")
        Traceback (most recent call last):
        ...
        unet_course.errors.ConfigError: Parameter 'epochs' must be an integer, got 'abc' (str). Fix it in the parameters cell or in papermill -p.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        config = cls()                               # 先用默认值构建，再逐个检查参数
        try:
            for name, value in values.items():
                if name in names:
                    setattr(config, name, from_text(value, field_types()[name], name))
            config.validate(what="Parameter")
        except ConfigError as exc:
            raise ConfigError(f"{exc} Fix it in the parameters cell or in papermill -p.") from None
        return config

    @classmethod
    def default_of(cls, name: str) -> Any:
        """The default value of field ``name`` (to tell a setting left alone from one given). 字段的默认值

        >>> TrainConfig.default_of("threshold")
        0.5
        """
        return next(f.default for f in dataclasses.fields(cls) if f.name == name)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (validated). 返回修改部分字段后的副本"""
        return self.from_dict({**dataclasses.asdict(self), **changes})

    @classmethod
    def from_json(cls, path: str | Path) -> TrainConfig:
        """Build from a JSON file of fields (:func:`read_config_file`, as ``--config`` reads it). 从 JSON 文件构建"""
        return cls.from_dict(read_config_file(path))


# ----------------------------------------------------------------------------------------------------------------
# Recipe and config files 配方与配置文件
# ----------------------------------------------------------------------------------------------------------------
#: Keys a recipe or config file may hold for people to read; they are not fields. 供人阅读的说明键
NOTE_KEYS = ("description", "notes", "comment")


def fields_from_json(text: str, where: str) -> dict[str, Any]:
    """The TrainConfig fields in the JSON text of a recipe or config file ``where``: a JSON object, without its
    notes (``description``/``notes``/``comment`` and keys starting with ``_``). 取出 JSON 文本中的字段（去掉说明键）

    >>> fields_from_json('{"epochs": 3, "description": "short", "_why": "a test"}', "Recipe 'demo'")
    {'epochs': 3}
    """
    try:
        values = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where} is not valid JSON: {exc}.") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{where} must hold a JSON object of TrainConfig fields, got {type(values).__name__}.")
    return {k: v for k, v in values.items() if not k.startswith("_") and k not in NOTE_KEYS}


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The fields of a config file (``--config``, :meth:`TrainConfig.from_json`); UTF-8, with or without the
    byte-order mark that Windows editors (Notepad) write. 读取配置文件中的字段（接受带 BOM 的 UTF-8）

    Raises:
        ConfigError: a missing file, invalid JSON, not an object, or a ``"recipe"`` key (a flag, not a field).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"Config file {str(path)!r} does not exist.")
    values = fields_from_json(path.read_text(encoding="utf-8-sig"), f"Config file {str(path)!r}")
    if "recipe" in values:
        raise ConfigError(f"Config file {str(path)!r} names a recipe, which is not a TrainConfig field; give it on "
                          f"the command line (--recipe {values['recipe']} --config {str(path)}), and keep only "
                          "fields in the file.")
    return values


# ----------------------------------------------------------------------------------------------------------------
# Type checks 类型检查
# ----------------------------------------------------------------------------------------------------------------
def field_types() -> dict[str, Any]:
    """The real type of each :class:`TrainConfig` field (``int | None`` etc., not strings). 各字段的真实类型"""
    return typing.get_type_hints(TrainConfig)
