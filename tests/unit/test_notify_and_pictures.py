"""Notifications' escapes and the pictures of frames (pure: no servers)."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from shell import notify, pictures


def test_notification_escapes_carry_no_control_of_the_job_name() -> None:
    seq = notify.escapes("job 3 a\x07b\x1b]0;x succeeded", tmux=False)
    assert seq.startswith("\a\x1b]9;rfarm: job 3 a?b?]0?x succeeded\x1b\\")
    assert "\x1b]777;notify;rfarm;job 3 a?b?]0?x succeeded\x1b\\" in seq
    assert seq.count("\x1b") == 4  # two sequences, each opened and closed: nothing from the name
    wrapped = notify.escapes("job 1 x failed", tmux=True)
    assert wrapped.count("\x1bPtmux;") == 2
    assert notify.enabled({}) and not notify.enabled({"RFARM_NOTIFY": "off"})
    assert not notify.enabled({}, option_off=True)


def png(width: int, height: int, colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def test_half_blocks_fit_the_width_and_label_every_frame() -> None:
    images = pictures.decode_all({n: png(160, 90, (n * 20, 0, 0)) for n in range(1, 8)})
    lines = pictures.blocks(images, 80)
    per_row = (80 + 1) // (pictures.BLOCK_TILE + 1)
    assert per_row == 3
    for n in range(1, 8):
        assert any(f"frame {n}" in line for line in lines)
    drawn = [line for line in lines if "▀" in line]
    assert all(line.count("▀") <= 80 for line in drawn)
    assert "\x1b[38;2;20;0;0m" in lines[0]  # frame 1's red, in 24-bit colour
    assert drawn[0].count("\x1b[0m") == 3  # each tile resets its colours at its end


def test_one_frame_larger_keeps_its_aspect() -> None:
    image = pictures.decode(png(160, 90, (0, 0, 255)))
    assert image is not None
    lines = pictures.half_blocks(image, 80)
    assert len(lines) == 23  # 80 wide: 45 pixel rows, made even, two per line


def test_a_thumbnail_that_is_not_a_small_png_is_left_out() -> None:
    huge = png(2000, 10, (1, 2, 3))
    assert pictures.decode_all({1: b"not a png", 2: huge, 3: png(16, 9, (1, 2, 3))}).keys() == {3}


def test_contact_sheet_grid_has_every_frame() -> None:
    images = pictures.decode_all({n: png(160, 90, (0, n * 30, 0)) for n in range(1, 6)})
    sheet = pictures.contact_sheet(images, "job 4  cube\x1b[31m")
    per_row = 4
    assert sheet.width == pictures.GAP + per_row * (pictures.TILE + pictures.GAP)
    assert sheet.height == pictures.TITLE + pictures.GAP + 2 * (90 + pictures.LABEL + pictures.GAP)
    assert sheet.getpixel((pictures.GAP + 5, pictures.TITLE + pictures.GAP + 5)) == (0, 30, 0)


def test_image_protocol_only_where_the_terminal_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    mp = monkeypatch
    for var in ("TMUX", "KITTY_WINDOW_ID", "TERM_PROGRAM"):
        mp.delenv(var, raising=False)
    mp.setenv("TERM", "xterm-256color")
    assert pictures.terminal_protocol() == "blocks"
    mp.setenv("TERM", "xterm-kitty")
    assert pictures.terminal_protocol() == "kitty"
    mp.setenv("TMUX", "/tmp/x,1,0")
    assert pictures.terminal_protocol() == "blocks"
    mp.delenv("TMUX")
    mp.setenv("TERM", "xterm-256color")
    mp.setenv("TERM_PROGRAM", "iTerm.app")
    assert pictures.terminal_protocol() == "iterm"
    image = pictures.decode(png(16, 9, (1, 2, 3)))
    assert image is not None
    kitty = pictures.draw({1: image}, 80, "kitty", single=True)
    assert kitty[0].startswith("\x1b_Ga=T,f=100,m=0;") and kitty[1] == "frame 1"
    assert pictures.draw({1: image}, 80, "iterm", single=True)[0].startswith("\x1b]1337;File=inline=1;")
