"""Fixtures of the browser test: ``lab`` (a JupyterLab server) and ``driver`` (headless Chromium).
浏览器测试的夹具：lab（JupyterLab 服务器）与 driver（无界面 Chromium）

See :mod:`browser_lab` for how they are isolated from the user's settings and from the network.
"""

from __future__ import annotations

import os
import sys

import pytest

from .browser_lab import CHROMEDRIVER, CHROMIUM, ENABLE_ENV, SHOTS, Lab, _missing_browser


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory):
    if not os.environ.get(ENABLE_ENV):
        pytest.skip(f"the JupyterLab browser test runs with `make browser-test` ({ENABLE_ENV}=1)")
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.exists():
            _missing_browser(f"{path} not found")
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.fail("selenium is not installed: run `make install` (it is in the dev extra).")
    server = Lab(tmp_path_factory.mktemp("jupyterlab"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def driver(lab: Lab, tmp_path_factory: pytest.TempPathFactory):
    """Headless Chromium through Debian's chromedriver; only 127.0.0.1 resolves. 只能访问本机的无界面 Chromium"""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tmp_path_factory.mktemp("chromium")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000", "--no-first-run", "--disable-extensions", "--disable-sync",
                "--disable-background-networking", "--disable-component-update", "--disable-default-apps",
                "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1", f"--user-data-dir={profile}"):
        options.add_argument(arg)
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(profile / "chromedriver.log"))
    try:
        browser = webdriver.Chrome(service=service, options=options)
    except Exception as exc:  # a broken install: say how to fix it  安装损坏时给出修复方法
        _missing_browser(f"Chromium did not start ({type(exc).__name__}: {str(exc).strip()[:300]})")
    browser.set_page_load_timeout(60)
    browser.set_script_timeout(60)
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        yield browser
    finally:
        browser.quit()


def pytest_report_header(config: pytest.Config) -> str:
    return f"browser test: chromium {'found' if CHROMIUM.exists() else 'missing'}; python {sys.executable}"
