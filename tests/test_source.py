"""show_source: the notebooks display the package's own code, with no machine paths.
show_source：notebook 显示包内真实代码，不含本机路径
"""

from __future__ import annotations

import pytest

from unet_course.errors import ConfigError
from unet_course.model import Down, UNet
from unet_course.training import train_one_epoch
from unet_course.viz import show_source


def test_show_source_returns_the_real_code_and_a_relative_title():
    src = show_source(UNet.forward)
    assert src.title == "unet_course/model/unet.py · UNet.forward"
    assert src.code.startswith("def forward")              # dedented 已去除缩进
    assert "/work" not in repr(src) and "/root" not in repr(src)
    html = src._repr_html_()
    assert "<span" in html and "forward" in html            # highlighted 已高亮
    assert show_source(train_one_epoch).title.endswith("training/loop.py · train_one_epoch")


def test_show_source_start_and_stop_cut_the_lines():
    full = show_source(Down)
    part = show_source(Down, start="def forward", stop="return")
    assert part.code.startswith("def forward") and part.code.splitlines()[-1].strip().startswith("return")
    assert len(part.code) < len(full.code) and part.first_line > full.first_line
    with pytest.raises(ConfigError, match="does not occur"):
        show_source(Down, start="no such text")


def test_show_source_refuses_builtins():
    with pytest.raises(ConfigError, match="no Python source"):
        show_source(len)
