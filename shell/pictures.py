"""Frames as pictures: thumbnails decoded with care, a contact sheet, and drawing in a terminal.

A terminal gets the kitty or iTerm2 image protocol when it says it is one of them (and not inside
tmux, which does not pass images on); anything else gets Unicode half blocks in 24-bit colour
(each character cell two pixels: ``▀`` in the top one's colour on the bottom one's), which works in
any modern terminal and in tmux. Sixel is not used: a terminal says it supports it only when asked,
and asking needs a round trip with the terminal that a piped or scripted shell cannot make.
"""

from __future__ import annotations

import base64
import io
import os

from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

MAX_SIDE = 1024  # a thumbnail larger than this is not one a node made: left out
TILE = 160  # a contact sheet's tile width in pixels
GAP = 6
LABEL = 14
TITLE = 22
BLOCK_TILE = 24  # terminal columns per thumbnail in a grid of half blocks
BLOCK_SINGLE = 80


def decode_all(pngs: dict[int, bytes]) -> dict[int, Image.Image]:
    """Frame -> RGB image, in frame order; a thumbnail that is no small PNG is left out."""
    out: dict[int, Image.Image] = {}
    for frame in sorted(pngs):
        image = decode(pngs[frame])
        if image is not None:
            out[frame] = image
    return out


def decode(data: bytes) -> Image.Image | None:
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
            if max(image.size) > MAX_SIDE or min(image.size) < 1:
                return None  # checked before the pixels are decoded
            image.load()
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError, SyntaxError):
        return None


def _ascii(text: str) -> str:
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in text)


def contact_sheet(images: dict[int, Image.Image], title: str, *, columns: int = 4) -> Image.Image:
    """Thumbnails in a grid, each with its frame number under it, the title above them all."""
    frames = sorted(images)
    per_row = max(1, min(columns, len(frames)))
    tile_h = max(max(round(im.height * TILE / im.width), 1) for im in images.values())
    rows = (len(frames) + per_row - 1) // per_row
    width = GAP + per_row * (TILE + GAP)
    height = TITLE + GAP + rows * (tile_h + LABEL + GAP)
    sheet = Image.new("RGB", (width, height), (24, 24, 28))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    draw.text((GAP, 5), _ascii(title)[:80], fill=(235, 235, 235), font=font)
    for i, frame in enumerate(frames):
        image = images[frame]
        tile = image.resize((TILE, max(round(image.height * TILE / image.width), 1)))
        x = GAP + (i % per_row) * (TILE + GAP)
        y = TITLE + GAP + (i // per_row) * (tile_h + LABEL + GAP)
        sheet.paste(tile, (x, y))
        draw.text((x, y + tile_h + 1), f"frame {frame}", fill=(200, 200, 200), font=font)
    return sheet


def terminal_protocol() -> str:
    """``kitty``, ``iterm`` or ``blocks``: what this terminal says it can show."""
    if os.environ.get("TMUX") or os.environ.get("TERM", "").startswith(("screen", "tmux")):
        return "blocks"
    if os.environ.get("KITTY_WINDOW_ID") or os.environ.get("TERM") == "xterm-kitty":
        return "kitty"
    if os.environ.get("TERM_PROGRAM") in ("iTerm.app", "WezTerm"):
        return "iterm"
    return "blocks"


def draw(images: dict[int, Image.Image], columns: int, protocol: str, *, single: bool = False) -> list[str]:
    """Lines that draw the thumbnails fitted to ``columns``, each labelled with its frame number."""
    if protocol in ("kitty", "iterm"):
        if single:
            frame, image = next(iter(images.items()))
            return [_image_escape(image, protocol), f"frame {frame}"]
        per_row = max(1, columns // (BLOCK_TILE + 1))
        return [_image_escape(contact_sheet(images, "", columns=per_row), protocol)]
    return blocks(images, columns, single=single)


def blocks(images: dict[int, Image.Image], columns: int, *, single: bool = False) -> list[str]:
    width = max(4, min(columns, BLOCK_SINGLE if single else BLOCK_TILE))
    per_row = 1 if single else max(1, (columns + 1) // (width + 1))
    frames = sorted(images)
    lines: list[str] = []
    for start in range(0, len(frames), per_row):
        row = frames[start : start + per_row]
        drawn = [half_blocks(images[f], width) for f in row]
        height = max(len(d) for d in drawn)
        for y in range(height):
            parts = [d[y] if y < len(d) else " " * width for d in drawn]
            lines.append(" ".join(parts))
        lines.append(" ".join(f"frame {f}"[:width].ljust(width) for f in row).rstrip())
    return lines


def half_blocks(image: Image.Image, width: int) -> list[str]:
    """One image as lines of ``width`` half blocks (two pixel rows per line), colours reset at each end."""
    height = max(2, round(image.height * width / image.width))
    height += height % 2
    small = image.resize((width, height))
    pixels = small.load()
    assert pixels is not None
    lines = []
    for y in range(0, height, 2):
        cells = []
        for x in range(width):
            top = pixels[x, y]
            bottom = pixels[x, y + 1]
            cells.append(f"\x1b[38;2;{top[0]};{top[1]};{top[2]}m\x1b[48;2;{bottom[0]};{bottom[1]};{bottom[2]}m▀")  # type: ignore[index]
        lines.append("".join(cells) + "\x1b[0m")
    return lines


def _image_escape(image: Image.Image, protocol: str) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    if protocol == "iterm":
        return f"\x1b]1337;File=inline=1;size={buffer.tell()};preserveAspectRatio=1:{data}\x07"
    chunks = [data[i : i + 4096] for i in range(0, len(data), 4096)] or [""]
    out = []
    for i, chunk in enumerate(chunks):
        more = 1 if i < len(chunks) - 1 else 0
        head = "a=T,f=100," if i == 0 else ""
        out.append(f"\x1b_G{head}m={more};{chunk}\x1b\\")
    return "".join(out)
