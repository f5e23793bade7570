"""``python -m physgen.cli``: the same as the ``physgen`` console script."""

import sys

from physgen.cli import main

sys.exit(main())
