"""``python -m render_nodes``: run a render node."""

import sys

from render_nodes.cli import main

sys.exit(main())
