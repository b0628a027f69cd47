"""The stored outputs of the five notebooks and the Kaggle launcher come from one pass on one machine.
五个 notebook 与 Kaggle 启动器的存储输出来自同一台机器上的同一次执行
"""

from __future__ import annotations

import json
from pathlib import Path

from unet_course.notebook_tools import executed_on

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("0*.ipynb"))
LAUNCHER = ROOT / "kaggle" / "unet_course_kaggle.ipynb"


def test_five_notebooks_and_the_launcher_record_the_same_machine():
    assert len(NOTEBOOKS) == 5
    records = {nb.name: json.loads(nb.read_text())["metadata"].get("unet_course", {}).get("executed_on")
               for nb in [*NOTEBOOKS, LAUNCHER]}
    missing = [name for name, rec in records.items() if not rec]
    assert not missing, f"re-execute with `make notebooks`: no executed_on in {missing}"
    first = next(iter(records.values()))
    assert set(first) == set(executed_on()), "executed_on fields changed: re-execute with `make notebooks`"
    assert all(rec == first for rec in records.values()), records     # one machine 同一台机器


def test_executed_on_names_cpu_simd_bf16_and_torch():
    facts = executed_on()
    assert facts["torch"].startswith("2.14") and isinstance(facts["native_bf16"], bool)
    assert facts["cpu"] and facts["simd"] and facts["cores"] >= 1
