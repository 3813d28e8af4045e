"""Built-in renderer: a Mandelbrot or Julia zoom, one real PNG per frame.

Frame ``n`` zooms ``1.15 ** (n - 1)`` times further than ``--zoom`` into a point on the set's edge
(Mandelbrot), or turns the Julia constant a little per frame, so every frame is a different image.
"""

from __future__ import annotations

import cmath
import math
import sys

from render_nodes.renderers.common import Orphaned, base_parser, check_parent, fail, frame_path, report_done
from render_nodes.renderers.png import encode_rgb, write_atomic

CENTRE = complex(-0.743643887037151, 0.131825904205330)
ZOOM_STEP = 1.15


def palette(iterations: int) -> list[bytes]:
    """A colour (3 bytes) for every escape count; index ``iterations`` (never escaped) is black."""
    colours = []
    for n in range(iterations):
        t = n / iterations
        red = int(9 * (1 - t) * t * t * t * 255)
        green = int(15 * (1 - t) * (1 - t) * t * t * 255)
        blue = int(8.5 * (1 - t) * (1 - t) * (1 - t) * t * 255)
        colours.append(bytes((min(red, 255), min(green, 255), min(blue, 255))))
    colours.append(b"\x00\x00\x00")
    return colours


def render(kind: str, frame: int, width: int, height: int, zoom: float, iterations: int) -> list[bytes]:
    colours = palette(iterations)
    if kind == "julia":
        centre = 0j
        scale = 3.0 / (zoom * width)
        constant = cmath.rect(0.7885, 0.05 * frame)
    else:
        centre = CENTRE
        scale = 3.0 / (zoom * ZOOM_STEP ** (frame - 1) * width)
        constant = 0j
    rows = []
    for y in range(height):
        imag = centre.imag + (y - height / 2) * scale
        row = bytearray()
        for x in range(width):
            point = complex(centre.real + (x - width / 2) * scale, imag)
            z, c = (point, constant) if kind == "julia" else (0j, point)
            n = 0
            while n < iterations:
                z = z * z + c
                if z.real * z.real + z.imag * z.imag > 4.0:
                    break
                n += 1
            row += colours[n]
        rows.append(bytes(row))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = base_parser("Render a fractal zoom, one PNG per frame.")
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--height", type=int, default=120)
    parser.add_argument("--zoom", type=float, default=1.0)
    parser.add_argument("--iterations", type=int, default=48)
    parser.add_argument("--set", dest="kind", choices=("mandelbrot", "julia"), default="mandelbrot")
    args = parser.parse_args(argv)
    if not (16 <= args.width <= 2048 and 16 <= args.height <= 2048):
        return fail("width and height must be within 16..2048", 2)
    if not (8 <= args.iterations <= 1000) or not (math.isfinite(args.zoom) and args.zoom > 0):
        return fail("iterations must be within 8..1000 and zoom a positive number", 2)
    try:
        args.output.mkdir(parents=True, exist_ok=True)
        for frame in range(args.first, args.last + 1):
            check_parent()
            rows = render(args.kind, frame, args.width, args.height, args.zoom, args.iterations)
            path = frame_path(args.output, frame, ".png")
            write_atomic(path, encode_rgb(args.width, args.height, rows))
            report_done(frame, path)
    except OSError as exc:
        return fail(f"cannot write frames: {exc.strerror or exc}")
    except Orphaned:
        return fail("the render node is gone; stopping", 4)
    return 0


if __name__ == "__main__":
    sys.exit(main())
