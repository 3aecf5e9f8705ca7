"""``python -m tb.bench``: see :mod:`tb.bench`."""

import sys

from tb.bench import main

sys.exit(main())
