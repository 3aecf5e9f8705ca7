"""Testbench: builds the simulated system and runs cocotb/pyuvm scenarios under Verilator."""
