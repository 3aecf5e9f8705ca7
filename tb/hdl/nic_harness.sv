// Simulation harness for the Python SR-IOV NIC model.
// The device is behavioral Python (model/); this toplevel only provides the
// clock/reset timebase and a few observation signals that the testbench drives
// so that a waveform (make sim WAVES=1) shows link and interrupt activity.
`timescale 1ns/1ps
module nic_harness (
    input  logic        clk,
    input  logic        rst,
    // observation signals, driven from Python
    input  logic        link_up,
    input  logic [15:0] last_rid,
    input  logic        cfg_access,
    input  logic        msix_pulse
);
endmodule
