"""``python -m tb.fuzz``: see :mod:`tb.fuzz.runner`."""

import sys

from tb.fuzz.runner import main

sys.exit(main())
