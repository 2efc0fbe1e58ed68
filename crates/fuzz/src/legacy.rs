//! The PC's legacy port devices on a port bus at their real addresses: the
//! 16550 UART, the i8042 keyboard controller (keyboard and mouse), and the
//! RTC/CMOS. The input is a program of port reads and writes; afterwards
//! each device must still answer as its data sheet says (a scratch register
//! reads back, a controller self-test passes, a CMOS byte reads back).
//!
//! It must not know the machine's wiring beyond the port numbers.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use kite_devices::legacy::i8042::{COMMAND_PORT, DATA_PORT, I8042};
use kite_devices::legacy::uart16550::{Uart16550, COM1_PORT, UART_PORT_LEN};
use kite_devices::rtc_cmos::{CmosMemory, RtcCmos};
use kite_devices::{IoBus, MmioBus};

use crate::input::Input;
use crate::support::{add_pio, bus_access, inb, outb, Line, Sink, Window};

/// At most this many accesses per input (keeps each run short).
const MAX_OPS: usize = 4096;

/// The 16550: registers, FIFOs, divisor latch, loopback, and host input
/// pushed into its receive FIFO.
pub fn serial(data: &[u8]) {
    let io = IoBus::new();
    let mmio = MmioBus::new();
    let irq = Arc::new(Line::default());
    let out = Sink::default();
    let uart = Arc::new(Mutex::new(Uart16550::new(
        irq.clone(),
        Box::new(out.clone()),
    )));
    add_pio(&io, COM1_PORT, UART_PORT_LEN, uart.clone());
    let windows = [Window::pio(COM1_PORT, UART_PORT_LEN)];
    let mut inp = Input::new(data);
    let mut written = 0u64;
    for _ in 0..MAX_OPS {
        if inp.is_empty() {
            break;
        }
        if inp.u8() & 7 == 0 {
            let n = usize::from(inp.u8());
            let mut u = uart.lock().unwrap_or_else(|e| e.into_inner());
            let room = u.input_capacity();
            let took = u.enqueue_input(inp.bytes(n));
            assert!(
                took <= room,
                "the UART took {took} bytes with room for {room}"
            );
        } else {
            written += 1;
            bus_access(&mut inp, &io, &mmio, &windows);
        }
    }
    assert!(
        out.0.load(Ordering::Relaxed) <= written * 8,
        "the UART sent more bytes than the guest wrote"
    );
    // Still answers: leave the divisor latch and loopback, then the
    // scratch register reads back what was written.
    outb(&io, COM1_PORT + 3, 0x03);
    outb(&io, COM1_PORT + 7, 0x5a);
    assert_eq!(inb(&io, COM1_PORT + 7), 0x5a, "UART scratch register lost");
}

/// The i8042 with keyboard and mouse: controller commands, device commands
/// with their argument bytes, and host key and mouse events.
pub fn i8042(data: &[u8]) {
    let io = IoBus::new();
    let mmio = MmioBus::new();
    let kbd_irq = Arc::new(Line::default());
    let mouse_irq = Arc::new(Line::default());
    let resets = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let r = resets.clone();
    let dev = Arc::new(Mutex::new(
        I8042::new(
            Some(kbd_irq),
            Box::new(move || {
                r.fetch_add(1, Ordering::Relaxed);
            }),
        )
        .with_mouse(Some(mouse_irq)),
    ));
    let (data_port, cmd_port) = I8042::ports(&dev);
    add_pio(&io, DATA_PORT, 1, Arc::new(Mutex::new(data_port)));
    add_pio(&io, COMMAND_PORT, 1, Arc::new(Mutex::new(cmd_port)));
    let windows = [Window::pio(DATA_PORT, 1), Window::pio(COMMAND_PORT, 1)];
    let mut inp = Input::new(data);
    for _ in 0..MAX_OPS {
        if inp.is_empty() {
            break;
        }
        match inp.u8() & 15 {
            0 => {
                let code = inp.u16();
                let down = inp.bool();
                dev.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .key_event(code, down);
            }
            1 => {
                let (dx, dy, wheel) = (inp.u32() as i32, inp.u32() as i32, inp.u8() as i8);
                let b = inp.u8();
                dev.lock().unwrap_or_else(|e| e.into_inner()).mouse_event(
                    dx,
                    dy,
                    i32::from(wheel),
                    b,
                );
            }
            2 => {
                // A controller command with an argument byte.
                outb(&io, COMMAND_PORT, inp.u8());
                outb(&io, DATA_PORT, inp.u8());
            }
            _ => {
                bus_access(&mut inp, &io, &mmio, &windows);
            }
        }
    }
    // Still answers: with both ports disabled (nothing refills the output
    // buffer) the buffer drains, then the self-test (0xAA) answers 0x55.
    outb(&io, COMMAND_PORT, 0xad);
    outb(&io, COMMAND_PORT, 0xa7);
    for _ in 0..1024 {
        if inb(&io, COMMAND_PORT) & 1 == 0 {
            break;
        }
        inb(&io, DATA_PORT);
    }
    assert_eq!(
        inb(&io, COMMAND_PORT) & 1,
        0,
        "the i8042 output buffer never drains"
    );
    outb(&io, COMMAND_PORT, 0xaa);
    assert_eq!(
        inb(&io, DATA_PORT),
        0x55,
        "i8042 self-test failed after hostile input"
    );
}

/// The MC146818 RTC and CMOS: index/data pairs, the clock registers in
/// binary and BCD, 12/24-hour mode, alarms, the periodic rate, SET.
pub fn rtc_cmos(data: &[u8]) {
    let io = IoBus::new();
    let mmio = MmioBus::new();
    let irq = Arc::new(Line::default());
    let rtc = match RtcCmos::new(
        CmosMemory {
            ram_below_4g: 64 << 20,
            ram_above_4g: 0,
        },
        irq,
    ) {
        Ok(r) => r,
        Err(e) => panic!("harness setup: RTC thread: {e}"),
    };
    add_pio(&io, 0x70, 2, Arc::new(Mutex::new(rtc)));
    let windows = [Window::pio(0x70, 2)];
    let mut inp = Input::new(data);
    for _ in 0..MAX_OPS {
        if inp.is_empty() {
            break;
        }
        if inp.u8() & 3 == 0 {
            // Index then data, as a BIOS does.
            outb(&io, 0x70, inp.u8());
            if inp.bool() {
                outb(&io, 0x71, inp.u8());
            } else {
                inb(&io, 0x71);
            }
        } else {
            bus_access(&mut inp, &io, &mmio, &windows);
        }
    }
    // Still answers: a CMOS byte reads back; register D says the battery is good.
    outb(&io, 0x70, 0x40);
    outb(&io, 0x71, 0xa5);
    outb(&io, 0x70, 0x40);
    assert_eq!(inb(&io, 0x71), 0xa5, "CMOS byte lost after hostile input");
    outb(&io, 0x70, 0x0d);
    assert_eq!(inb(&io, 0x71) & 0x80, 0x80, "RTC register D lost VRT");
}
