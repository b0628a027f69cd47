"""The source listings stored in the notebooks match the package line for line.
notebook 中已存的源代码清单与包的代码逐行一致

The notebooks show library code with :func:`~unet_course.viz.show_source`, line numbers included. An edit above a
shown function moves it, and a listing under ``NBVAL_IGNORE_OUTPUT`` would go stale without nbval noticing; this
reads the committed outputs only (nothing is executed), so it fails in seconds and names the fix.
只读取提交的输出，不执行 notebook；行号过时时数秒内失败并给出修复方法
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from unet_course.env import REPO_ROOT
from unet_course.model import Down
from unet_course.viz import show_source
from unet_course.viz.source import locate, main, renumber_listings, stored_listings

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("0*.ipynb"))


def _cells(path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def _output(listing) -> dict:
    """A stored output as Jupyter writes it for a Source. Jupyter 为 Source 保存的输出"""
    return {"output_type": "execute_result",
            "data": {"text/plain": repr(listing), "text/html": listing._repr_html_()}}


def test_every_stored_listing_is_where_its_code_is_now():
    listings = {path.name: stored_listings(_cells(path)) for path in NOTEBOOKS}
    assert len(NOTEBOOKS) == 5 and sum(map(len, listings.values())) >= 10      # the course shows its code
    stale = [f"{name} cell {index}: {src.title} at line {src.first_line}, now at {locate(src)}"
             for name, found in listings.items() for index, _, src in found if locate(src) != src.first_line]
    assert not stale, "stale source listings; run `make listings` (or `make notebooks` if the code changed):\n" + \
        "\n".join(stale)


def test_renumber_fixes_a_moved_listing_and_reports_a_changed_one():
    src = show_source(Down.forward)
    moved = dataclasses.replace(src, first_line=src.first_line + 7)            # as if code above had shrunk
    edited = dataclasses.replace(src, code=src.code + "\n    return None")     # code no longer in the file
    cells = [{"cell_type": "code", "outputs": [_output(moved)]}, {"cell_type": "markdown"},
             {"cell_type": "code", "outputs": [_output(edited), {"output_type": "stream", "text": "# x"}]}]
    assert locate(moved) == src.first_line and locate(edited) is None
    count, changed = renumber_listings(cells)
    assert count == 1 and cells[0]["outputs"][0]["data"]["text/html"] == src._repr_html_()
    assert changed == [f"cell 2: the code of {src.title} (from line {src.first_line}) changed"]
    assert renumber_listings(cells) == (0, changed)                             # a second pass changes nothing


def test_the_command_refuses_a_missing_or_broken_notebook_and_changes_nothing(tmp_path, capsys):
    good = tmp_path / "good.ipynb"
    good.write_text((REPO_ROOT / "notebooks" / "05_prediction.ipynb").read_text(encoding="utf-8"), encoding="utf-8")
    before = good.read_bytes()
    broken = tmp_path / "broken.ipynb"
    broken.write_text("{not json", encoding="utf-8")
    for bad in (tmp_path / "missing.ipynb", broken):
        with pytest.raises(SystemExit) as exc:
            main([str(good), str(bad)])
        assert exc.value.code == 2
        assert f"cannot read {bad} as a notebook" in capsys.readouterr().err
    assert good.read_bytes() == before                                  # the good one was not touched either
    assert main([str(good)]) == 0                                       # and alone it goes through
