"""Built-in renderer for tests and benchmarks: waits per frame, may fail on purpose.

Writes a small text file per frame. ``--fail-frames`` lists frames that always fail;
``--fail-rate`` makes any frame fail with that chance. A failure exits with code 3.
"""

from __future__ import annotations

import random
import sys

from render_nodes.renderers.common import (
    Orphaned,
    base_parser,
    check_parent,
    fail,
    frame_path,
    report_done,
    sleep_watching_parent,
)

FAIL_EXIT = 3


def parse_frame_list(text: str) -> set[int]:
    """'3, 7,9' to {3, 7, 9}; empty text is no frames."""
    out = set()
    for part in text.split(","):
        if part.strip():
            out.add(int(part.strip()))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = base_parser("Wait a while per frame; fail on request.")
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--fail-rate", type=float, default=0.0)
    parser.add_argument("--fail-frames", default="")
    args = parser.parse_args(argv)
    try:
        failing = parse_frame_list(args.fail_frames)
    except ValueError:
        return fail(f"--fail-frames {args.fail_frames!r} is not a comma list of frame numbers", 2)
    if not 0 <= args.seconds <= 3600 or not 0 <= args.fail_rate <= 1:
        return fail("seconds must be within 0..3600 and fail-rate within 0..1", 2)
    try:
        args.output.mkdir(parents=True, exist_ok=True)
        for frame in range(args.first, args.last + 1):
            if args.seconds:
                sleep_watching_parent(args.seconds)
            check_parent()
            if frame in failing or (args.fail_rate and random.random() < args.fail_rate):
                return fail(f"frame {frame} failed on purpose", FAIL_EXIT)
            path = frame_path(args.output, frame, ".txt")
            path.write_text(f"frame {frame} slept {args.seconds}s\n", encoding="utf-8")
            report_done(frame, path)
    except OSError as exc:
        return fail(f"cannot write frames: {exc.strerror or exc}")
    except Orphaned:
        return fail("the render node is gone; stopping", 4)
    return 0


if __name__ == "__main__":
    sys.exit(main())
