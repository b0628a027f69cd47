# unet-course: two commands do all the set-up on a machine with only python3 and pip.
#   make course  -> create .venv, install, run the course on the synthetic default data
#   make test    -> create .venv, install, run the tests (unit tests, nbval over the notebooks, JupyterLab in Chromium)
# 两个命令完成全部准备：make course 运行课程，make test 运行测试

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: course test browser-test install notebooks listings bench lint clean help

help:
	@echo "make course     run the five course notebooks with papermill on the synthetic default data"
	@echo "make test       run the unit tests, nbval over the notebooks and the browser test"
	@echo "make browser-test  run every notebook in JupyterLab in headless Chromium (screenshots in runs/browser/)"
	@echo "make notebooks  re-execute the committed notebooks and the Kaggle launcher in place (maintainers)"
	@echo "make listings   renumber the notebooks' stored source listings after code above them moved (maintainers)"
	@echo "make bench      print the CPU benchmark as JSON"

# The stamp makes re-runs quick: pip runs again only when pyproject.toml changes.
# 时间戳文件让重复运行很快：只有 pyproject.toml 改变时才重新安装
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

install: $(STAMP)

course: $(STAMP)
	$(BIN)/python -m unet_course course

# Lint (ruff + the import-linter layers), unit tests, doctests, then nbval over the five notebooks (stored outputs
# compared after notebooks/sanitize.cfg), then the browser test.
# 先做静态检查（ruff 与导入分层），再运行单元测试、文档测试、nbval，最后运行浏览器测试
test: $(STAMP)
	$(MAKE) --no-print-directory lint
	$(BIN)/python -m pytest tests --ignore=tests/browser/test_jupyterlab.py $(PYTEST_ARGS)
	$(BIN)/python -m pytest --doctest-modules unet_course -p no:cacheprovider -q $(PYTEST_ARGS)
	env -u WANDB_MODE -u MPLBACKEND $(BIN)/python -m pytest notebooks --nbval --nbval-sanitize-with notebooks/sanitize.cfg \
		--ignore-glob='*/runs/*' $(PYTEST_ARGS)
	$(MAKE) --no-print-directory browser-test

# The student's browser: every notebook in a real JupyterLab (.venv's jupyter-lab on 127.0.0.1) in headless
# Chromium from Debian's packages. Without Chromium it prints how to install it and skips; under CI=true it fails.
# 学生的浏览器：在无界面 Chromium 的真实 JupyterLab 中运行每个 notebook；缺少 Chromium 时跳过（CI 中失败）
BROWSER_INSTALL := sudo apt-get update && sudo apt-get install chromium chromium-driver fonts-noto-cjk
CHROMIUM     ?= /usr/bin/chromium
CHROMEDRIVER ?= /usr/bin/chromedriver
browser-test: $(STAMP)
	@if [ ! -x $(CHROMIUM) ] || [ ! -x $(CHROMEDRIVER) ]; then \
		if [ "$$CI" = "true" ]; then echo "browser-test: Chromium is missing in CI: $(BROWSER_INSTALL)" >&2; exit 1; fi; \
		echo "browser-test SKIPPED: Chromium not found. Install it with: $(BROWSER_INSTALL)"; exit 0; \
	fi; \
	UNET_COURSE_BROWSER_TEST=1 VENV=$(abspath $(VENV)) CHROMIUM=$(CHROMIUM) CHROMEDRIVER=$(CHROMEDRIVER) $(BIN)/python -m pytest tests/browser -p no:cacheprovider -s $(PYTEST_ARGS)

notebooks: $(STAMP)
	$(BIN)/python -m unet_course.notebook_tools execute notebooks/*.ipynb
	$(BIN)/python -m unet_course.notebook_tools store-launcher

# After an edit moves a function that a notebook shows, only its line numbers are stale: renumber them in the
# stored outputs (nothing is executed); a listing whose code itself changed needs `make notebooks`.
# 代码上方的改动只让行号过时：在已存输出中重新编号；代码本身改变时需要 make notebooks
listings: $(STAMP)
	$(BIN)/python -m unet_course.viz notebooks/*.ipynb

bench: $(STAMP)
	$(BIN)/python -m unet_course bench

# ruff, then the import layers of pyproject.toml ([tool.importlinter]). 代码风格检查与导入分层检查
lint: $(STAMP)
	$(BIN)/ruff check unet_course tests notebooks kaggle
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) runs .pytest_cache
