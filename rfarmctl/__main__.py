import sys

from rfarmctl.main import main

sys.exit(main())
