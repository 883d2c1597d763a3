//! The 16550 UART at COM1, polled: the console under QEMU.

use crate::arch::cpu::{inb, outb};

const COM1: u16 = 0x3f8;
const THR: u16 = 0; // transmit holding register (DLAB = 0)
const IER: u16 = 1; // interrupt enable (DLAB = 0)
const DLL: u16 = 0; // divisor latch low (DLAB = 1)
const DLM: u16 = 1; // divisor latch high (DLAB = 1)
const FCR: u16 = 2; // FIFO control
const LCR: u16 = 3; // line control
const MCR: u16 = 4; // modem control
const LSR: u16 = 5; // line status
const LSR_DATA_READY: u8 = 1 << 0;
const LSR_THR_EMPTY: u8 = 1 << 5;
/// Bytes the transmit FIFO takes once it is empty.
const FIFO_DEPTH: usize = 16;

/// Programs 115200 8N1 with FIFOs on and interrupts off.
pub fn init() {
    // SAFETY: COM1's registers; nothing else drives this UART.
    unsafe {
        outb(COM1 + IER, 0);
        outb(COM1 + LCR, 0x80);
        outb(COM1 + DLL, 1);
        outb(COM1 + DLM, 0);
        outb(COM1 + LCR, 0x03);
        outb(COM1 + FCR, 0xc7);
        outb(COM1 + MCR, 0x03);
    }
}

/// Writes bytes, a FIFO-full at a time.
pub fn write(bytes: &[u8]) {
    for chunk in bytes.chunks(FIFO_DEPTH) {
        // SAFETY: reading LSR and writing THR only move console data.
        unsafe {
            while inb(COM1 + LSR) & LSR_THR_EMPTY == 0 {
                core::hint::spin_loop();
            }
            for &b in chunk {
                outb(COM1 + THR, b);
            }
        }
    }
}

/// Reads one received byte, if any.
pub fn read_byte() -> Option<u8> {
    // SAFETY: reading LSR and RBR only consume console input.
    unsafe { (inb(COM1 + LSR) & LSR_DATA_READY != 0).then(|| inb(COM1 + THR)) }
}
