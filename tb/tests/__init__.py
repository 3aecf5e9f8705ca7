"""The cocotb test modules, one simulator run each; :mod:`tb.tools.runner` discovers every
``test_*.py`` here."""

import faulthandler
import os

import cocotb

#: wall seconds one simulator run of these modules may take: past it, the stack of every thread
#: goes to stderr and the simulator exits, so that a test that hangs fails (its run has no
#: results) instead of holding the suite for ever; unset or empty, no limit.  The unit suite
#: sets it (tests/conftest.py) for the simulators it starts, not for itself.
WALL_LIMIT_ENV = "NIC_SIM_WALL_LIMIT_S"

if cocotb.is_simulation and os.environ.get(WALL_LIMIT_ENV):
    faulthandler.dump_traceback_later(float(os.environ[WALL_LIMIT_ENV]), exit=True)
