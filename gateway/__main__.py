import sys

from gateway.service import main

sys.exit(main())
