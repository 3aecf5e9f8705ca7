// Simulation harness for the Python SR-IOV NIC model.
// The device is behavioral Python (model/); this toplevel only provides the
// clock/reset timebase and observation signals that the testbench drives from
// its monitors, on events only (tb/system.py start_harness, tb/uvm/probe.py), so
// that a waveform (make sim WAVES=1) is a timeline of what crossed the link.
//
// *_pulse inputs are 1 ns pulses, one per event; *_count inputs count events;
// *_rid inputs hold the requester/routing ID (bus:dev.fn) of the last event.
`timescale 1ns/1ps
module nic_harness (
    input  logic        clk,
    input  logic        rst,
    // link and configuration
    input  logic        link_up,          // PCIe link trained (and the uplink port up)
    input  logic [15:0] last_rid,         // RID of the last observed event of any kind below
    input  logic        cfg_access,       // pulse: a configuration write crossed the link
    input  logic [8:0]  num_vfs,          // VFs enabled (NumVFs at VF Enable)
    // interrupts: one pulse per MSI-X message that reached the root complex
    input  logic        msix_pulse,
    input  logic [15:0] msix_rid,
    input  logic [7:0]  msix_vector,
    input  logic [31:0] msix_count,
    // doorbells: one pulse per TX/RX tail write (RID + BAR0 register offset + value)
    input  logic        doorbell_pulse,
    input  logic [15:0] doorbell_rid,
    input  logic [19:0] doorbell_reg,
    input  logic [15:0] doorbell_value,
    input  logic [31:0] doorbell_count,
    // DMA blocked by the IOMMU
    input  logic        dma_fault_pulse,
    input  logic [15:0] dma_fault_rid,
    input  logic [31:0] dma_fault_count,
    // resets: kind of the last one (1 VF FLR, 2 VF software reset, 3 PF reset) and its RID
    input  logic        reset_pulse,
    input  logic [7:0]  reset_kind,
    input  logic [15:0] reset_rid,
    // the embedded switch: frames that entered it, and frames it sent out of the uplink
    input  logic [31:0] frames_switched,
    input  logic [31:0] frames_to_uplink
);
    // decoded views of the RIDs, for reading the waveform
    wire [7:0] msix_bus     = msix_rid[15:8];
    wire [4:0] msix_dev     = msix_rid[7:3];
    wire [2:0] msix_fn      = msix_rid[2:0];
    wire [7:0] doorbell_bus = doorbell_rid[15:8];
    wire [4:0] doorbell_dev = doorbell_rid[7:3];
    wire [2:0] doorbell_fn  = doorbell_rid[2:0];
endmodule
