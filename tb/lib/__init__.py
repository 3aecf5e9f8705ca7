"""The testbench's library: the system builder (:mod:`tb.lib.system`) and the spec checks
shared by test modules (:mod:`tb.lib.checks`)."""
