"""Runs the README's quick-start block as a cocotb test, so the documented entry points stay true."""

import re

from tb.paths import README

_README = README.read_text()
_BLOCK = re.search(r"```python\n(.*?)```", _README, re.S).group(1)
exec(compile(_BLOCK, "README.md (quick start)", "exec"), globals())  # defines the cocotb test
