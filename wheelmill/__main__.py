"""``python -m wheelmill``: the same as the ``wheelmill`` command."""

import sys

from wheelmill.cli import main

sys.exit(main())
