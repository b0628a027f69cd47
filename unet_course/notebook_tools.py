"""Run and maintain the course notebooks: the papermill course run, in-place re-execution, results.
运行与维护课程 notebook：papermill 课程运行、原地重新执行、结果记录

- ``run_course()`` executes ``notebooks/0*.ipynb`` with papermill into ``runs/course-<time>/`` and leaves the
  committed notebooks untouched. 用 papermill 把五个 notebook 执行到 runs/course-<时间>/，不改动仓库中的 notebook
- ``execute_in_place()`` re-executes the committed notebooks (``make notebooks``) and strips widget state and
  volatile metadata, so that nbval compares stable outputs. 原地重新执行并清理易变元数据，供 nbval 比较
- ``store_launcher()`` executes the Kaggle launcher once and stores its outputs. 执行一次 Kaggle 启动器并保存输出
- ``record_result()`` is called by a notebook's last cell to report its key metric to the course run.
  notebook 最后一个单元调用它，向课程运行报告关键指标
"""

from __future__ import annotations

import argparse
import html as _html
import json
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .env import HEADLESS_ENV, REPO_ROOT, cpu_info, default_out_dir
from .errors import ConfigError, OutputError, did_you_mean
from .files import ensure_writable_dir, is_json_report

RESULTS_ENV = "UNET_COURSE_RESULTS"
#: Longest a single cell may run in a headless execution before it fails (seconds). 单元格最长运行时间
CELL_TIMEOUT_S = 1800
NOTEBOOK_DIR = REPO_ROOT / "notebooks"

# Metadata keys that change on every run and would make diffs and nbval noisy.
# 每次运行都会变化的元数据键
_VOLATILE_CELL_METADATA = ("execution", "papermill", "ExecuteTime", "collapsed", "scrolled")
_ABS_PATH = re.compile(r"(/(?:work|root|home|tmp|Users|kaggle/working)/[^\s'\"]*)")


def record_result(notebook: str, **metrics: Any) -> dict[str, Any]:
    """Report a notebook's key metrics to the course run (no-op outside it).
    向课程运行报告 notebook 的关键指标（不在课程运行中时只返回字典）

    Args:
        notebook: short name, e.g. ``"04_training_loop"``.
        **metrics: JSON-serialisable numbers, e.g. ``val_dice=0.93``.

    Returns:
        The record that was (or would have been) written.
    """
    def plain(v: Any) -> Any:
        # numpy / torch scalars -> Python numbers; ints stay ints. 标量转为 Python 数字，整数保持整数
        if hasattr(v, "item") and callable(v.item):
            v = v.item()
        return v if isinstance(v, (bool, int, float, str)) or v is None else float(v)

    record = {"notebook": notebook, **{k: plain(v) for k, v in metrics.items()}}
    path = os.environ.get(RESULTS_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
    return record


def course_notebooks(folder: Path = NOTEBOOK_DIR) -> list[Path]:
    """The numbered course notebooks in order. 按编号排序的课程 notebook"""
    found = sorted(folder.glob("0[1-9]_*.ipynb"))
    if not found:
        raise ConfigError(f"No course notebooks (0N_*.ipynb) found in {folder}. They come with the source checkout, "
                          "not with an installed wheel: pass --notebook-dir <checkout>/notebooks, or install the "
                          "checkout with pip install -e <checkout>.")
    return found


@dataclass
class NotebookRun:
    name: str
    seconds: float
    ok: bool
    output: str
    metrics: dict[str, Any]
    error: str = ""


def execute_headless(notebook: str | Path, output: str | Path, parameters: dict[str, Any] | None = None,
                     kernel_name: str = "python3", cwd: str | Path | None = None) -> Any:
    """Run one notebook with papermill, without a frontend: the way the course, CI and Kaggle run them.
    用 papermill 在无界面环境下执行一个 notebook（课程、CI 与 Kaggle 均如此运行）

    The kernel gets :data:`unet_course.env.HEADLESS_ENV`, so :func:`unet_course.viz.explore` draws a plain figure
    instead of widgets (papermill's client can hang on widget output capture), and a cell that runs longer than
    :data:`CELL_TIMEOUT_S` fails instead of blocking forever.
    内核会收到 HEADLESS_ENV，explore 不创建控件；单元格超时即失败，不会无限等待

    Returns:
        The executed notebook (papermill's return value). Raises what papermill raises on a failing cell.
    """
    import papermill as pm  # deferred: slow to import, and record_result (used in every notebook) needs none of it


    old = os.environ.get(HEADLESS_ENV)
    os.environ[HEADLESS_ENV] = "1"                      # 内核进程继承当前环境变量
    try:
        return pm.execute_notebook(
            str(notebook), str(output), parameters=dict(parameters or {}), kernel_name=kernel_name,
            cwd=None if cwd is None else str(cwd), progress_bar=False, log_output=False,
            execution_timeout=CELL_TIMEOUT_S,
            # the kernel's own log (a transport warning on every start, a closed-socket error when Ctrl-C stops
            # the run mid-cell) is not the notebook's output; cell errors still reach papermill as messages
            # 内核自身的日志（启动时的传输警告、Ctrl-C 中断时的套接字错误）不属于 notebook 的输出
            extra_arguments=["--IPKernelApp.log_level=CRITICAL"],
        )
    finally:
        if old is None:
            os.environ.pop(HEADLESS_ENV, None)
        else:
            os.environ[HEADLESS_ENV] = old


def check_parameters(parameters: dict[str, Any], notebooks: list[Path]) -> None:
    """Refuse a parameter that no course notebook declares: papermill would only warn and run on without it.
    拒绝任何 notebook 的参数单元格都没有的参数（papermill 只会警告并继续运行）

    A parameter may be meant for some notebooks only (``wandb_mode`` for 04), so the names of every course
    notebook count, not only of those that run. 只要某个课程 notebook 有该参数即可

    Raises:
        ConfigError: naming the unknown parameter, the closest known name and the full list.
    """
    import papermill as pm  # deferred: slow to import, and only the course command needs it

    known = sorted({name for nb in notebooks for name in pm.inspect_notebook(str(nb))})
    for key in parameters:
        if key not in known:
            raise ConfigError(f"Unknown parameter {key!r}: no course notebook has it in its parameters cell."
                              f"{did_you_mean([key], known)} "
                              f"Known parameters: {', '.join(known)}.")


def select_notebooks(paths: list[Path], wanted: list[str]) -> list[Path]:
    """The notebooks named in ``wanted``, in course order: a stem, a file name, a number (``3``, ``03``) or a
    word of one name (``prediction``). A name that matches none, or several, is refused: a run that skipped it
    in silence would look complete. 按名称、编号或名称中的词选择 notebook；不匹配或匹配多个时拒绝

    >>> names = [Path(n) for n in ("01_preprocessing.ipynb", "05_prediction.ipynb")]
    >>> [p.stem for p in select_notebooks(names, ["prediction", "1"])]
    ['01_preprocessing', '05_prediction']
    """
    def matches(path: Path, name: str) -> bool:
        if name.isdigit():
            return path.stem[:2].isdigit() and int(name) == int(path.stem[:2])
        return name in (path.stem, path.name) or name.lower() in path.stem[3:].lower().split("_")

    chosen: set[Path] = set()
    for name in wanted:
        found = [p for p in paths if matches(p, name)]
        if len(found) != 1:
            why = "matches no course notebook" if not found else f"matches {len(found)} notebooks"
            raise ConfigError(f"--notebooks {name!r} {why}; give a number or a name from: "
                              f"{', '.join(p.stem for p in paths)}.")
        chosen.update(found)
    return [p for p in paths if p in chosen]


def run_course(
    out_dir: str | os.PathLike | None = None,
    parameters: dict[str, Any] | None = None,
    notebooks: list[str] | None = None,
    kernel_name: str = "python3",
    notebook_dir: str | os.PathLike | None = None,
) -> list[NotebookRun]:
    """Execute the course notebooks with papermill into a fresh run folder.
    用 papermill 把课程 notebook 执行到新的运行目录

    Each notebook runs with the run folder as its working directory, so every file it writes (checkpoints,
    figures, wandb runs) lands below ``out_dir``; the source folder may be read-only (``/kaggle/input``).
    每个 notebook 以运行目录为工作目录，所写文件都在 out_dir 之下；源目录可以只读（如 Kaggle 输入目录）

    Args:
        out_dir: run folder; default ``runs/course-<YYYYmmdd-HHMMSS>`` (on Kaggle under ``/kaggle/working``); never
            the notebooks' own folder, whose files the executed copies would overwrite.
        parameters: papermill parameters given to every notebook (each notebook ignores the ones it lacks; a
            name that no course notebook declares is refused, see :func:`check_parameters`).
        notebooks: names or stems to run (default: all five).
        kernel_name: Jupyter kernel to use.
        notebook_dir: folder holding ``0N_*.ipynb``; default the checkout's ``notebooks/``.

    Returns:
        One :class:`NotebookRun` per notebook, with time and the metrics it recorded.
    """
    source = Path(notebook_dir) if notebook_dir is not None else NOTEBOOK_DIR
    paths = course_notebooks(source)
    check_parameters(parameters or {}, paths)                       # 先检查参数名与 notebook，再创建运行目录
    if notebooks:
        paths = select_notebooks(paths, notebooks)
    if out_dir is not None and Path(out_dir).expanduser().resolve() == source.expanduser().resolve():
        raise ConfigError(f"--out-dir {str(out_dir)!r} is the folder of the notebooks being run; their executed "
                          "copies would overwrite them. Choose another --out-dir (the default is "
                          "runs/course-<time>).")
    if out_dir is not None:
        check_run_folder(Path(out_dir).expanduser(), paths)           # 不覆盖不是课程运行写出的文件
    run_dir = ensure_writable_dir(out_dir or default_out_dir(time.strftime("course-%Y%m%d-%H%M%S"))).resolve()
    results_file = run_dir / "results.jsonl"
    results_file.write_text("")
    old_env = os.environ.get(RESULTS_ENV)
    os.environ[RESULTS_ENV] = str(results_file.resolve())
    runs: list[NotebookRun] = []
    try:
        for nb in paths:
            target = run_dir / nb.name
            start = time.perf_counter()
            error = ""
            try:
                execute_headless(nb, target, parameters=parameters, kernel_name=kernel_name, cwd=run_dir)
                ok = True
            except Exception as exc:  # papermill re-raises the cell error; keep going, report at the end
                ok = False
                error = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            seconds = time.perf_counter() - start
            metrics = {}
            for line in results_file.read_text().splitlines():
                rec = json.loads(line)
                if rec.get("notebook") == nb.stem:
                    metrics.update({k: v for k, v in rec.items() if k != "notebook"})
            runs.append(NotebookRun(nb.stem, seconds, ok, str(target), metrics, error))
    finally:
        if old_env is None:
            os.environ.pop(RESULTS_ENV, None)
        else:
            os.environ[RESULTS_ENV] = old_env
    (run_dir / "summary.json").write_text(json.dumps([r.__dict__ for r in runs], indent=2))
    return runs


def check_run_folder(run_dir: Path, paths: list[Path]) -> None:
    """Refuse a run folder holding a file the course would write that no course run wrote: a notebook without
    papermill's metadata (say a student's own edited copy), or a ``results.jsonl`` / ``summary.json`` of other
    rows. An earlier course run's files are replaced. 运行目录中不是课程运行写出的同名文件会被拒绝，不会被覆盖

    Raises:
        OutputError: naming the files and the fix.
    """
    def executed(path: Path) -> bool:                  # papermill writes its metadata into every notebook it runs
        try:
            return "papermill" in json.loads(path.read_text(encoding="utf-8")).get("metadata", {})
        except (OSError, UnicodeDecodeError, ValueError, AttributeError):
            return False

    checks = {run_dir / nb.name: executed for nb in paths}
    checks[run_dir / "results.jsonl"] = lambda path: is_json_report(path, ["notebook"], lines=True)
    checks[run_dir / "summary.json"] = lambda path: is_json_report(path, ["name", "ok"])
    foreign = [str(path) for path, ours in checks.items() if path.is_file() and not ours(path)]
    if foreign:
        raise OutputError(f"--out-dir {str(run_dir)!r} holds {', '.join(repr(f) for f in foreign)}, which no course "
                          "run wrote (a notebook you edited?), and running the course there would overwrite it. "
                          "Choose another --out-dir (the default is runs/course-<time>), or move those files away.")


def format_summary(runs: list[NotebookRun]) -> str:
    """A small table: notebook, status, seconds, key metrics. 汇总表"""
    lines = [f"{'notebook':<32} {'status':<6} {'time':>7}  key metrics", "-" * 78]
    for r in runs:
        metrics = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.metrics.items())
        lines.append(f"{r.name:<32} {'ok' if r.ok else 'FAILED':<6} {r.seconds:>6.1f}s  {metrics or r.error}")
    total = sum(r.seconds for r in runs)
    lines.append("-" * 78)
    lines.append(f"{'total':<32} {'':<6} {total:>6.1f}s")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------
# In-place execution for maintainers (make notebooks). 维护者使用的原地执行
# ----------------------------------------------------------------------------------------------------------
#: The kernelspec JupyterLab writes for the ``python3`` kernel; stored as is, opening a notebook changes nothing.
#: JupyterLab 为 python3 内核写入的 kernelspec；原样保存，打开 notebook 不会使其变为未保存
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
#: The line stored above the picture of a widget (the explorer) in place of its live view. 控件图片上方的一行提示
WIDGET_HINT = "Run this cell to move the sliders. 运行此单元格以拖动滑块"
_LIVE_HINT = "Run this cell to show the live widget. 运行此单元格以显示交互控件"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
# text/plain of a bare widget, e.g. "VBox(children=(HBox(..." 控件的默认文本表示
_WIDGET_REPR = re.compile(r"^[A-Z]\w*\((children|value|layout|description)=")


def _widget_tree(state: dict[str, Any], model_id: str) -> list[dict[str, Any]]:
    """The stored models of a widget and of the widgets it refers to, depth first in child order.
    控件及其引用的子控件的状态（深度优先，保持子控件顺序）
    """
    found: list[dict[str, Any]] = []
    todo, seen = [model_id], set()
    while todo:
        mid = todo.pop()
        if mid in seen or mid not in state:
            continue
        seen.add(mid)
        found.append(state[mid])
        refs, values = [], list(state[mid].get("state", {}).values())
        while values:                                     # children are "IPY_MODEL_<id>" strings, maybe nested
            v = values.pop(0)
            if isinstance(v, str) and v.startswith("IPY_MODEL_"):
                refs.append(v[len("IPY_MODEL_"):])
            elif isinstance(v, (list, tuple)):
                values[:0] = list(v)
        todo.extend(reversed(refs))
    return found


def _plain_text(html: str) -> str:
    return _html.unescape(re.sub(r"<[^>]+>", "", html)).replace("\xa0", " ").strip()


def _static_widget_outputs(out: dict[str, Any], state: dict[str, Any]) -> list[dict[str, Any]]:
    """What a saved file shows instead of a widget view: its picture and a hint, or its text.
    保存文件中替代控件视图的内容：控件的图片加一行提示，或其文本

    A widget view means nothing without its model: a viewer (GitHub, a reload, a new kernel) shows
    "Error displaying widget". So: stored images (the explorer's ``Output`` widget) are kept with
    :data:`WIDGET_HINT`; a progress bar becomes its text line; any other widget keeps its text/plain fallback,
    or a hint if that is only a widget repr such as ``VBox(children=...)``.
    没有模型时控件视图无法显示：保留状态中的图片（explore 的 Output 控件）和提示；进度条变为一行文本；
    其他控件保留文本表示（若只是 VBox(...) 之类的表示则换成提示）
    """
    data = dict(out.get("data", {}))
    view = data.pop(WIDGET_VIEW, None) or {}
    tree = _widget_tree(state, str(view.get("model_id", "")))
    images = [o for m in tree for o in m.get("state", {}).get("outputs", []) if "image/png" in o.get("data", {})]
    if images:
        hint = WIDGET_HINT if any("Slider" in m.get("model_name", "") for m in tree) else _LIVE_HINT
        static = [{"output_type": "display_data", "metadata": {}, "data": {"text/plain": hint}}]
        for image in images:
            picture = {k: v for k, v in image["data"].items() if k in ("image/png", "text/plain")}
            static.append({"output_type": "display_data", "metadata": dict(image.get("metadata", {})),
                           "data": picture})
        return static
    if any("Progress" in m.get("model_name", "") for m in tree):      # a tqdm bar: "desc: 100% 8/8 [..]"
        parts = [_plain_text(str(m["state"].get("value", ""))) for m in tree if m.get("model_name") == "HTMLModel"]
        return [{"output_type": "display_data", "metadata": {}, "data": {"text/plain": " ".join(p for p in parts if p)}}]
    text = data.get("text/plain", "")
    text = text if isinstance(text, str) else "".join(text)
    if not data or _WIDGET_REPR.match(text):
        data = {"text/plain": _LIVE_HINT}
    return [dict(out, data=data)]


def clean_notebook(nb: Any) -> Any:
    """Make a notebook file stable and readable anywhere (in place).
    让 notebook 文件稳定、在任何查看器中都可读（原地修改）

    - the kernelspec becomes :data:`KERNELSPEC` (what JupyterLab writes, so opening it changes nothing);
    - widget views become static outputs (:func:`_static_widget_outputs`), then the widget state is dropped;
    - volatile metadata (execution times, papermill) and absolute paths go.
    kernelspec 统一为 KERNELSPEC；控件视图改为静态输出后删除控件状态；删除易变元数据与绝对路径
    """
    widgets = nb.metadata.pop("widgets", None) or {}
    state = dict((widgets.get(WIDGET_STATE) or {}).get("state", {}))
    nb.metadata.pop("papermill", None)
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    for cell in nb.cells:
        for key in _VOLATILE_CELL_METADATA:
            cell.metadata.pop(key, None)
        if cell.cell_type != "code":
            continue
        kept = []
        for out in cell.get("outputs", []):
            for item in (_static_widget_outputs(out, state) if WIDGET_VIEW in out.get("data", {}) else [out]):
                data = item.get("data", {})
                if item.get("output_type") in {"display_data", "execute_result"} and not data:
                    continue                              # e.g. a progress bar that removed itself 空输出
                if item.get("output_type") == "stream":
                    item["text"] = _ABS_PATH.sub("<path>", item.get("text", ""))
                if "text/plain" in data:
                    text = data["text/plain"]
                    data["text/plain"] = _ABS_PATH.sub("<path>", text if isinstance(text, str) else "".join(text))
                kept.append(item)
        cell["outputs"] = [_as_node(o) for o in kept]
    return nb


def _as_node(out: Any) -> Any:
    """Plain dicts -> nbformat nodes (attribute access, as nbformat.read gives). 转为 nbformat 节点"""
    import nbformat  # deferred: notebooks import this module for record_result, which needs none of Jupyter

    return nbformat.from_dict(out)


def executed_on() -> dict[str, Any]:
    """The machine facts stored in each executed notebook (``metadata.unet_course.executed_on``): CPU model, SIMD
    level, native bf16, core count, torch version. The stored outputs of all five notebooks come from one pass on
    one machine, and a test checks that their records agree.
    每个执行过的 notebook 记录的机器信息；五个 notebook 的记录必须一致（由测试检查）
    """
    cpu = cpu_info()
    return {"cpu": cpu["model"], "simd": cpu["capability"], "native_bf16": cpu["native_bf16"],
            "cores": cpu["affinity_cores"] or cpu["logical_cores"], "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def execute_in_place(paths: list[str | Path], timeout: int = 900, kernel_name: str = "python3") -> None:
    """Re-execute notebooks in place (cwd = their folder), then clean them and record :func:`executed_on`.
    原地重新执行 notebook（工作目录为其所在目录），然后清理并记录机器信息
    """
    import nbformat  # deferred, as above
    from nbclient import NotebookClient

    os.environ.setdefault("UNET_COURSE_QUIET", "1")
    for path in paths:
        path = Path(path)
        nb = nbformat.read(path, as_version=4)
        start = time.perf_counter()
        NotebookClient(nb, timeout=timeout, kernel_name=kernel_name,
                       resources={"metadata": {"path": str(path.parent)}}).execute()
        clean_notebook(nb)
        nb.metadata["unet_course"] = {"executed_on": executed_on()}
        nbformat.write(nb, path)
        print(f"{path.name}: executed in {time.perf_counter() - start:.1f}s")


LAUNCHER = REPO_ROOT / "kaggle" / "unet_course_kaggle.ipynb"


def store_launcher(path: str | Path = LAUNCHER, work_dir: str | Path | None = None) -> None:
    """Execute the Kaggle launcher once, as Kaggle would, and store its outputs (``make notebooks``).
    像 Kaggle 那样执行一次启动器并保存其输出

    The launcher runs all five notebooks on the synthetic data with offline wandb, from this checkout
    (``install=False``: the package is installed already), in a temporary work folder in place of
    ``/kaggle/working``. The injected-parameters cell is dropped, absolute paths become ``<path>``, and
    :func:`executed_on` is recorded, so the stored copy shows what a Kaggle user sees after *Run all*.
    在临时目录中代替 /kaggle/working，以合成数据和离线 wandb 运行全部五个 notebook；去掉注入参数单元，绝对路径改为 <path>
    """
    import nbformat  # deferred: notebooks import this module for record_result, which needs none of Jupyter

    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="unet-course-kaggle-") as tmp:
        params = {"repo_dir": str(REPO_ROOT), "work_dir": str(Path(work_dir or tmp) / "working"),
                  "dataset": "synthetic", "data_dir": "", "install": False, "wandb_mode": "offline"}
        start = time.perf_counter()
        nb = execute_headless(path, Path(tmp) / path.name, parameters=params, cwd=tmp)
    nb.cells = [c for c in nb.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    clean_notebook(nb)
    nb.metadata["unet_course"] = {"executed_on": executed_on()}
    nbformat.write(nb, path)
    print(f"{path.name}: executed in {time.perf_counter() - start:.1f}s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unet_course.notebook_tools",
                                     description="Maintain the course notebooks.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("execute", help="re-execute notebooks in place and strip volatile metadata")
    p.add_argument("paths", nargs="+")
    p.add_argument("--timeout", type=int, default=900)
    p = sub.add_parser("clean", help="strip widget state and volatile metadata only")
    p.add_argument("paths", nargs="+")
    sub.add_parser("store-launcher", help="execute the Kaggle launcher once on the synthetic data, store its outputs")
    args = parser.parse_args(argv)
    if args.cmd == "execute":
        execute_in_place(args.paths, timeout=args.timeout)
    elif args.cmd == "store-launcher":
        store_launcher()
    else:
        import nbformat  # deferred, as above

        for path in args.paths:
            nb = nbformat.read(path, as_version=4)
            nbformat.write(clean_notebook(nb), path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
