"""The cocotb test modules, one simulator run each; :mod:`tb.tools.runner` discovers every
``test_*.py`` here."""
