"""Packaging: pyproject and environment.yml agree, the console script works, no shared data is tracked.
打包检查：pyproject 与 environment.yml 一致，命令行可用，仓库中没有共享数据
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from unet_course.env import REPO_ROOT

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10 (requires-python >= 3.10): the same parser from PyPI, a dev dependency 3.10 上使用 tomli
    import tomli as tomllib


def _pyproject() -> dict:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())


def test_torch_pins_are_exact():
    deps = _pyproject()["project"]["dependencies"]
    assert "torch==2.14.1" in deps and "torchvision==0.29.1" in deps


def test_environment_yml_agrees_with_pyproject():
    env = (REPO_ROOT / "environment.yml").read_text()
    assert re.search(r"python=3\.11\b", env)
    pins = set(re.findall(r"^\s*-\s*(torch(?:vision)?==[\d.]+)\s*$", env, flags=re.M))
    project_pins = {d for d in _pyproject()["project"]["dependencies"] if d.startswith("torch")}
    assert pins == project_pins, f"environment.yml pins {pins} but pyproject pins {project_pins}"
    extras = re.search(r"-e \.\[([a-z,]+)\]", env)
    assert extras, "environment.yml must install the package itself (-e .[dev])"
    assert set(extras.group(1).split(",")) <= set(_pyproject()["project"]["optional-dependencies"])
    req = REPO_ROOT.joinpath(".python-version")
    assert not req.exists() or req.read_text().strip().startswith("3.11")


def test_console_script_help():
    exe = Path(sys.executable).with_name("unet-course")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "unet_course"]
    out = subprocess.run([*cmd, "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for sub in ("train", "evaluate", "predict", "bench", "inspect", "course"):
        assert sub in out.stdout


def test_no_shared_data_or_large_files_tracked():
    files = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True).stdout.split()
    if not files:  # not a git checkout (e.g. an sdist)
        return
    bad = [f for f in files if re.search(r"(_training\.tif|_manual1\.gif|train-volume\.tif|train-labels\.tif)$", f)]
    assert not bad
    big = [f for f in files if not f.endswith(".ipynb") and (REPO_ROOT / f).is_file()
           and (REPO_ROOT / f).stat().st_size > 500_000]
    assert not big, f"large files tracked: {big}"
