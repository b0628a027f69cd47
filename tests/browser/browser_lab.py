"""The JupyterLab server and the browser of ``make browser-test``, both local.
make browser-test 使用的本地 JupyterLab 服务器与浏览器

- JupyterLab is the ``.venv/bin/jupyter-lab`` binary itself (so its PID is the server), on a free loopback port
  with a random token, with Jupyter's config/data/runtime/settings folders in a temporary folder (no user setting
  leaks in) and the switches of CI, papermill and headless runs removed from its environment: the kernel sees what
  a student's kernel sees. It serves *copies* of the notebooks, so autosave never touches the checkout.
  JupyterLab 使用 .venv 中的二进制（其 PID 即服务器进程），监听随机空闲回环端口并使用随机令牌；配置目录都在临时
  目录中；环境中去掉 CI、papermill 与无界面开关；服务的是 notebook 的副本，自动保存不会改动仓库
- Chromium and chromedriver are Debian's (``/usr/bin``); the driver path is given explicitly, so Selenium Manager
  never runs and nothing is downloaded. Missing: skip with the install command, or fail under ``CI=true``.
  使用 Debian 的 Chromium 与 chromedriver，显式给出驱动路径，不会下载任何东西；缺失时跳过（CI 中失败）
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VENV = Path(os.environ.get("VENV", REPO / ".venv"))
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))                 # Debian's packages Debian 软件包
CHROMEDRIVER = Path(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
INSTALL_HINT = "sudo apt-get update && sudo apt-get install chromium chromium-driver fonts-noto-cjk"
SHOTS = REPO / "runs" / "browser"
#: Set by ``make browser-test``; without it these tests skip (they take minutes). 由 make browser-test 设置
ENABLE_ENV = "UNET_COURSE_BROWSER_TEST"
# What CI, papermill and headless runs set: the student's kernel has none of them. 学生的内核中没有这些变量
_REMOVED_ENV = ("CI", "UNET_COURSE_HEADLESS", "UNET_COURSE_QUIET", "WANDB_MODE", "MPLBACKEND", "PYTEST_CURRENT_TEST")
# Isolated JupyterLab settings: no news or update checks (no traffic), every cell rendered (no windowing).
# 独立的 JupyterLab 设置：不获取新闻、不检查更新，渲染所有单元格
_LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                       "checkForUpdates": False},
    "@jupyterlab/extensionmanager-extension/plugin.jupyterlab-settings": {"enabled": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


def _missing_browser(what: str) -> None:
    msg = f"{what}. Install Chromium from Debian's packages: {INSTALL_HINT}"
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(msg)
    pytest.skip(msg)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _lab_env(tmp: Path) -> dict[str, str]:
    """The server's (and so the kernel's) environment. 服务器（也即内核）的环境变量"""
    env = {k: v for k, v in os.environ.items()
           if k not in _REMOVED_ENV and not k.startswith(("PAPERMILL", "JUPYTER"))}
    for name in ("config", "data", "runtime", "settings", "workspaces", "ipython"):
        (tmp / name).mkdir(parents=True, exist_ok=True)
    env.update(
        JUPYTER_CONFIG_DIR=str(tmp / "config"), JUPYTER_DATA_DIR=str(tmp / "data"),
        JUPYTER_RUNTIME_DIR=str(tmp / "runtime"), JUPYTERLAB_SETTINGS_DIR=str(tmp / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(tmp / "workspaces"), IPYTHONDIR=str(tmp / "ipython"),
        JUPYTER_PATH=str(VENV / "share" / "jupyter"),            # the python3 kernelspec of .venv comes first
        PYTHONPATH=os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
    )
    env.setdefault("UNET_COURSE_DATA", str(REPO.parent / "shared" / "data"))
    for rel, value in _LAB_SETTINGS.items():
        path = tmp / "settings" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))
    return env


class Lab:
    """A running JupyterLab server: ``url(path)``, ``api(path)``, ``stop()``. 运行中的 JupyterLab 服务器"""

    def __init__(self, tmp: Path) -> None:
        binary = VENV / "bin" / "jupyter-lab"
        if not binary.exists():
            pytest.fail(f"{binary} not found: run `make install` first.")
        self.root = tmp / "root"
        shutil.copytree(REPO / "notebooks", self.root / "notebooks", ignore=shutil.ignore_patterns("runs"))
        self.port, self.token = _free_port(), secrets.token_hex(24)
        self.log = (tmp / "jupyterlab.log").open("w")
        self.proc = subprocess.Popen(
            [str(binary), "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}",
             "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
             f"--ServerApp.root_dir={self.root}", "--LabApp.expose_app_in_browser=True",
             "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
             "--LabApp.extension_manager=readonly", *(["--allow-root"] if os.geteuid() == 0 else [])],
            env=_lab_env(tmp), cwd=self.root, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_ready(timeout=90)

    def url(self, path: str) -> str:
        sep = "&" if "?" in path else "?"
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}{sep}token={self.token}"

    def api(self, path: str, method: str = "GET") -> object:
        req = urllib.request.Request(self.url(f"api/{path}"), method=method)
        with urllib.request.urlopen(req, timeout=20) as resp:    # 127.0.0.1 only 只访问本机
            body = resp.read()
        return json.loads(body) if body else None

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"jupyter-lab exited with {self.proc.returncode}; log: {self.log.name}")
            try:
                self.api("status")
                return
            except OSError:
                time.sleep(0.5)
        self.stop()
        pytest.fail(f"jupyter-lab did not answer on 127.0.0.1:{self.port} within {timeout:.0f} s; "
                    f"log: {self.log.name}")

    def stop(self) -> None:
        """SIGTERM the server (it shuts its kernels down), then SIGKILL its process group. 停止服务器及其内核"""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)                 # kernels left behind, by our group id
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait(timeout=10)
        self.log.close()
