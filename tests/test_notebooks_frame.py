"""The course frame of notebooks 01-03: sections, references, glossary, exercises, clean outputs.
notebook 01-03 的固定结构：各节、参考文献、术语表、练习与干净的输出

Reads the committed notebooks only (nothing is executed), so it is fast enough for every test run.
只读取提交的 notebook，不执行，因此每次测试都可以运行
"""

from __future__ import annotations

import json
import re

import pytest

from unet_course.env import REPO_ROOT

NOTEBOOKS = {
    "01_preprocessing.ipynb": "unet_course/data/",
    "02_architecture.ipynb": "unet_course/model/",
    "03_loss_and_mixed_precision.ipynb": "unet_course/losses.py",
}
HEADINGS = ("## Setup 环境", "## 小结 Summary", "## 练习 Exercises", "## 参考文献 References")
ABSOLUTE_PATH = re.compile(r"(?<![\w.])/(?:work|root|home|Users|tmp)/")


def _load(name: str) -> dict:
    return json.loads((REPO_ROOT / "notebooks" / name).read_text(encoding="utf-8"))


def _markdown(nb: dict) -> str:
    return "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")


def _outputs(nb: dict) -> str:
    texts = []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            text = out.get("text") or out.get("data", {}).get("text/plain", "")
            texts.append(text if isinstance(text, str) else "".join(text))
    return "\n".join(texts)


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_frame_sections_and_package_folder(name: str):
    nb = _load(name)
    md = _markdown(nb)
    for heading in HEADINGS:
        assert heading in md, f"{name} lacks {heading!r}"
    assert NOTEBOOKS[name] in "".join(nb["cells"][0]["source"]), f"{name} must name its package folder at the top"
    assert "(GLOSSARY.md)" in md, f"{name} must link the glossary"
    assert "arXiv:1505.04597" in md, f"{name} must cite the U-Net paper"
    tagged = [c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", [])]
    assert len(tagged) == 1, f"{name} needs exactly one parameters cell"


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_exercises_have_hints_solutions_and_a_checked_answer(name: str):
    nb = _load(name)
    md = _markdown(nb)
    assert md.count("<summary>Hint 提示</summary>") >= 2 and md.count("<summary>Solution 答案</summary>") >= 2
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    assert re.search(r"^answer_1 = ", code, re.M) and "assert" in code.split("answer_1 = ", 1)[1]


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_outputs_are_clean(name: str):
    nb = _load(name)
    text = _outputs(nb)
    assert not ABSOLUTE_PATH.search(text), f"{name} stores an absolute path in its outputs"
    assert "application/vnd.jupyter.widget-state+json" not in json.dumps(nb["metadata"])
    for stale in ("seed notes", "需要研究", "unet_course.engine", "CPU capability AVX2"):
        assert stale not in json.dumps(nb, ensure_ascii=False), f"{name} still mentions {stale!r}"


def test_glossary_has_the_style_terms():
    glossary = (REPO_ROOT / "notebooks" / "GLOSSARY.md").read_text(encoding="utf-8")
    for term in ("特征图", "跳跃连接", "上采样", "下采样", "转置卷积", "填充", "步幅", "轮", "批量", "混合精度",
                 "损失缩放", "学习率调度器", "检查点", "感受野", "重叠切片", "滑动窗口", "视野"):
        assert f"| {term}" in glossary or f"/ {term}" in glossary or f"{term} |" in glossary, term
