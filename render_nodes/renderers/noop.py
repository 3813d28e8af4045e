"""Built-in renderer that does no work: every frame is reported done at once, nothing is written.

A node runs the ``noop`` profile in-process (see ``render_nodes.task``); this module is the same
behaviour as a process, for a node asked to run it through its argv.
"""

from __future__ import annotations

import sys

from render_nodes.renderers.common import base_parser


def main(argv: list[str] | None = None) -> int:
    args = base_parser("Do nothing for each frame.").parse_args(argv)
    for frame in range(args.first, args.last + 1):
        sys.stdout.write(f"frame {frame} done -\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
