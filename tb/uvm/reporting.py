"""pyuvm's component loggers, forgotten by the logging manager once their test has ended.

pyuvm gives every component a logger of its own, named after the component and its id
(``uvm.<full name><id>``, ``uvm_object.get_initial_logger_name``), and sets its level when
the component is made. The logging manager keeps every logger it ever made, and
``Logger.setLevel`` clears the cache of each of them, so building a test's environment
(about 130 components, ports and exports included) cost more with every test the process
had run before: after the 13 tests of a regression seed the manager held some 1,850 such
loggers, and the level settings took 0.6 s of the seed. Forgetting a finished test's loggers
keeps the manager's set bounded by one test's environment.
"""

from __future__ import annotations

import logging

#: the logger pyuvm's component loggers hang below (``pyuvm._s05_base_classes``)
UVM_LOGGER = "uvm"


def release_component_loggers() -> int:
    """Forget every logger below :data:`UVM_LOGGER` (and the placeholders of their dotted
    names): call it when no component of the test that made them logs any more. A component
    still holding its logger can log through it as before (its parent stays the ``uvm``
    logger); the manager just no longer lists it. Returns how many names were forgotten."""
    registry = logging.Logger.manager.loggerDict
    prefix = UVM_LOGGER + "."
    names = [name for name in registry if name.startswith(prefix)]
    for name in names:
        del registry[name]
    return len(names)
