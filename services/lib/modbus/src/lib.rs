//! A Modbus TCP client codec, sans-IO: the caller moves bytes, this crate builds requests and
//! checks responses.
//!
//! ```text
//! MBAP header: transaction id (2) | protocol id = 0 (2) | length = 1 + PDU (2) | unit id (1)
//! PDU:         function code (1) | data (up to 252)
//! ```
//!
//! The server is a peer on the network and may send anything: a frame cut short, a length field
//! that lies, another transaction's answer, another unit's, another function's, an exception,
//! a byte count that does not match what was asked, a write echo that differs from the write.
//! [`frame_len`] finds where a frame ends (or says the stream is broken) and [`decode`] checks
//! a frame against the request it answers; every failure is an [`Error`], never a panic.

#![no_std]
#![warn(missing_docs)]

extern crate alloc;

use alloc::vec::Vec;
use core::fmt;

/// Bytes in the MBAP header, the unit id included.
pub const MBAP_LEN: usize = 7;
/// The largest frame: header (7) + PDU (253), less the unit id counted in both.
pub const MAX_FRAME: usize = 260;

/// Modbus' four primary tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    /// Read-write bits (FC1 read, FC5/FC15 write).
    Coils,
    /// Read-only bits (FC2).
    DiscreteInputs,
    /// Read-only registers (FC4).
    InputRegisters,
    /// Read-write registers (FC3 read, FC6/FC16 write).
    HoldingRegisters,
}

impl Table {
    /// Whether the table holds bits rather than 16-bit registers.
    pub fn is_bits(self) -> bool {
        matches!(self, Table::Coils | Table::DiscreteInputs)
    }

    /// Whether clients may write it.
    pub fn is_writable(self) -> bool {
        matches!(self, Table::Coils | Table::HoldingRegisters)
    }
}

/// A request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Read `count` items of `table` from `address` (FC1, FC2, FC3 or FC4).
    Read {
        /// The table.
        table: Table,
        /// First item.
        address: u16,
        /// How many (bits: 1..=2000, registers: 1..=125).
        count: u16,
    },
    /// FC5.
    WriteCoil {
        /// The coil.
        address: u16,
        /// On or off.
        value: bool,
    },
    /// FC6.
    WriteRegister {
        /// The register.
        address: u16,
        /// Its new value.
        value: u16,
    },
    /// FC15 (1..=1968 coils).
    WriteCoils {
        /// First coil.
        address: u16,
        /// Values.
        values: Vec<bool>,
    },
    /// FC16 (1..=123 registers).
    WriteRegisters {
        /// First register.
        address: u16,
        /// Values.
        values: Vec<u16>,
    },
}

impl Request {
    /// The function code.
    pub fn function(&self) -> u8 {
        match self {
            Request::Read { table, .. } => match table {
                Table::Coils => 1,
                Table::DiscreteInputs => 2,
                Table::HoldingRegisters => 3,
                Table::InputRegisters => 4,
            },
            Request::WriteCoil { .. } => 5,
            Request::WriteRegister { .. } => 6,
            Request::WriteCoils { .. } => 15,
            Request::WriteRegisters { .. } => 16,
        }
    }
}

/// A checked response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// Bits read (exactly as many as asked).
    Bits(Vec<bool>),
    /// Registers read (exactly as many as asked).
    Registers(Vec<u16>),
    /// The write was acknowledged with a matching echo.
    Written,
}

/// A Modbus exception code from the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exception(pub u8);

impl fmt::Display for Exception {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.0 {
            1 => "illegal function",
            2 => "illegal data address",
            3 => "illegal data value",
            4 => "server device failure",
            5 => "acknowledge",
            6 => "server device busy",
            8 => "memory parity error",
            10 => "gateway path unavailable",
            11 => "gateway target device failed to respond",
            _ => "unknown exception",
        };
        write!(f, "exception {} ({name})", self.0)
    }
}

/// What is wrong with a request or a response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// The request asks for an impossible count (0 or beyond the protocol's limit) or a range
    /// past address 65535.
    BadRequest(&'static str),
    /// The MBAP protocol id is not 0: the stream is not Modbus (or lost sync).
    Protocol(u16),
    /// The MBAP length is below 2 or above 254: the stream cannot be framed any more.
    Length(u16),
    /// The answer belongs to another transaction.
    Transaction {
        /// What was sent.
        expected: u16,
        /// What came back.
        got: u16,
    },
    /// The answer comes from another unit.
    Unit {
        /// What was sent.
        expected: u8,
        /// What came back.
        got: u8,
    },
    /// The answer is for another function.
    Function {
        /// What was sent.
        expected: u8,
        /// What came back.
        got: u8,
    },
    /// The server answered with an exception.
    Exception(Exception),
    /// The PDU is shorter or longer than its function requires, or its byte count disagrees
    /// with the request or the frame.
    Malformed(&'static str),
    /// A write's echo differs from the write.
    Echo,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadRequest(m) => write!(f, "bad request: {m}"),
            Error::Protocol(p) => write!(f, "protocol id {p} is not Modbus (0)"),
            Error::Length(l) => write!(f, "MBAP length {l} out of 2..=254"),
            Error::Transaction { expected, got } => {
                write!(f, "transaction id {got}, expected {expected}")
            }
            Error::Unit { expected, got } => write!(f, "unit id {got}, expected {expected}"),
            Error::Function { expected, got } => {
                write!(f, "function code {got}, expected {expected}")
            }
            Error::Exception(e) => write!(f, "{e}"),
            Error::Malformed(m) => write!(f, "malformed response: {m}"),
            Error::Echo => write!(f, "write echo differs from the write"),
        }
    }
}

fn check_range(address: u16, count: usize, max: usize) -> Result<(), Error> {
    if count == 0 || count > max {
        return Err(Error::BadRequest("count out of range"));
    }
    if usize::from(address) + count > 0x1_0000 {
        return Err(Error::BadRequest("range past address 65535"));
    }
    Ok(())
}

/// Packs bits LSB first, as Modbus does.
fn pack_bits(values: &[bool]) -> Vec<u8> {
    let mut out = alloc::vec![0u8; values.len().div_ceil(8)];
    for (i, &v) in values.iter().enumerate() {
        if v {
            out[i / 8] |= 1 << (i % 8);
        }
    }
    out
}

/// Builds the frame for `request` with transaction id `transaction` to unit `unit`.
pub fn encode(transaction: u16, unit: u8, request: &Request) -> Result<Vec<u8>, Error> {
    let mut pdu = Vec::with_capacity(8);
    pdu.push(request.function());
    match request {
        Request::Read {
            table,
            address,
            count,
        } => {
            let max = if table.is_bits() { 2000 } else { 125 };
            check_range(*address, usize::from(*count), max)?;
            pdu.extend_from_slice(&address.to_be_bytes());
            pdu.extend_from_slice(&count.to_be_bytes());
        }
        Request::WriteCoil { address, value } => {
            pdu.extend_from_slice(&address.to_be_bytes());
            pdu.extend_from_slice(if *value { &[0xff, 0] } else { &[0, 0] });
        }
        Request::WriteRegister { address, value } => {
            pdu.extend_from_slice(&address.to_be_bytes());
            pdu.extend_from_slice(&value.to_be_bytes());
        }
        Request::WriteCoils { address, values } => {
            check_range(*address, values.len(), 1968)?;
            pdu.extend_from_slice(&address.to_be_bytes());
            pdu.extend_from_slice(&(values.len() as u16).to_be_bytes());
            let bytes = pack_bits(values);
            pdu.push(bytes.len() as u8);
            pdu.extend_from_slice(&bytes);
        }
        Request::WriteRegisters { address, values } => {
            check_range(*address, values.len(), 123)?;
            pdu.extend_from_slice(&address.to_be_bytes());
            pdu.extend_from_slice(&(values.len() as u16).to_be_bytes());
            pdu.push((values.len() * 2) as u8);
            for v in values {
                pdu.extend_from_slice(&v.to_be_bytes());
            }
        }
    }
    let mut frame = Vec::with_capacity(MBAP_LEN + pdu.len());
    frame.extend_from_slice(&transaction.to_be_bytes());
    frame.extend_from_slice(&[0, 0]);
    frame.extend_from_slice(&(pdu.len() as u16 + 1).to_be_bytes());
    frame.push(unit);
    frame.extend_from_slice(&pdu);
    Ok(frame)
}

/// How long the frame at the start of `buffer` is: `Ok(None)` until its header has arrived,
/// an error if the header cannot be Modbus (the connection should then be dropped: there is
/// no way to find the next frame).
pub fn frame_len(buffer: &[u8]) -> Result<Option<usize>, Error> {
    if buffer.len() < 6 {
        return Ok(None);
    }
    let protocol = u16::from_be_bytes([buffer[2], buffer[3]]);
    if protocol != 0 {
        return Err(Error::Protocol(protocol));
    }
    let length = u16::from_be_bytes([buffer[4], buffer[5]]);
    if !(2..=254).contains(&length) {
        return Err(Error::Length(length));
    }
    Ok(Some(6 + usize::from(length)))
}

/// The transaction id of a complete frame (to skip late answers to abandoned requests).
pub fn transaction_of(frame: &[u8]) -> Option<u16> {
    (frame.len() >= 2).then(|| u16::from_be_bytes([frame[0], frame[1]]))
}

/// Checks the complete `frame` (as delimited by [`frame_len`]) against the request it should
/// answer and returns its content.
pub fn decode(
    frame: &[u8],
    transaction: u16,
    unit: u8,
    request: &Request,
) -> Result<Response, Error> {
    let Some(len) = frame_len(frame)? else {
        return Err(Error::Malformed("shorter than the MBAP header"));
    };
    if frame.len() != len {
        return Err(Error::Malformed(
            "frame length differs from the MBAP length",
        ));
    }
    let got = u16::from_be_bytes([frame[0], frame[1]]);
    if got != transaction {
        return Err(Error::Transaction {
            expected: transaction,
            got,
        });
    }
    if frame[6] != unit {
        return Err(Error::Unit {
            expected: unit,
            got: frame[6],
        });
    }
    let pdu = &frame[MBAP_LEN..];
    let function = request.function();
    if pdu[0] == function | 0x80 {
        return match pdu {
            [_, code] => Err(Error::Exception(Exception(*code))),
            _ => Err(Error::Malformed("exception of the wrong length")),
        };
    }
    if pdu[0] != function {
        return Err(Error::Function {
            expected: function,
            got: pdu[0],
        });
    }
    let data = &pdu[1..];
    match request {
        Request::Read { table, count, .. } => {
            let Some((&byte_count, values)) = data.split_first() else {
                return Err(Error::Malformed("no byte count"));
            };
            let count = usize::from(*count);
            let expected = if table.is_bits() {
                count.div_ceil(8)
            } else {
                count * 2
            };
            if usize::from(byte_count) != values.len() {
                return Err(Error::Malformed("byte count differs from the frame"));
            }
            if values.len() != expected {
                return Err(Error::Malformed("byte count differs from the request"));
            }
            if table.is_bits() {
                Ok(Response::Bits(
                    (0..count)
                        .map(|i| values[i / 8] & (1 << (i % 8)) != 0)
                        .collect(),
                ))
            } else {
                Ok(Response::Registers(
                    values
                        .chunks_exact(2)
                        .map(|w| u16::from_be_bytes([w[0], w[1]]))
                        .collect(),
                ))
            }
        }
        Request::WriteCoil { address, value } => {
            let mut echo = [0u8; 4];
            echo[..2].copy_from_slice(&address.to_be_bytes());
            echo[2] = if *value { 0xff } else { 0 };
            check_echo(data, &echo)
        }
        Request::WriteRegister { address, value } => {
            let mut echo = [0u8; 4];
            echo[..2].copy_from_slice(&address.to_be_bytes());
            echo[2..].copy_from_slice(&value.to_be_bytes());
            check_echo(data, &echo)
        }
        Request::WriteCoils { address, values } => {
            check_echo(data, &echo_of(*address, values.len()))
        }
        Request::WriteRegisters { address, values } => {
            check_echo(data, &echo_of(*address, values.len()))
        }
    }
}

fn echo_of(address: u16, count: usize) -> [u8; 4] {
    let mut echo = [0u8; 4];
    echo[..2].copy_from_slice(&address.to_be_bytes());
    echo[2..].copy_from_slice(&(count as u16).to_be_bytes());
    echo
}

fn check_echo(data: &[u8], echo: &[u8; 4]) -> Result<Response, Error> {
    if data.len() != 4 {
        return Err(Error::Malformed("write answer is not 4 bytes"));
    }
    if data != echo {
        return Err(Error::Echo);
    }
    Ok(Response::Written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    const READ_HR: Request = Request::Read {
        table: Table::HoldingRegisters,
        address: 1,
        count: 2,
    };

    fn frame(tid: u16, unit: u8, pdu: &[u8]) -> Vec<u8> {
        let mut f = tid.to_be_bytes().to_vec();
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(&(pdu.len() as u16 + 1).to_be_bytes());
        f.push(unit);
        f.extend_from_slice(pdu);
        f
    }

    #[test]
    fn requests_encode_as_the_spec_says() {
        assert_eq!(
            encode(0x1234, 9, &READ_HR).unwrap(),
            [0x12, 0x34, 0, 0, 0, 6, 9, 3, 0, 1, 0, 2]
        );
        assert_eq!(
            encode(
                1,
                1,
                &Request::WriteCoil {
                    address: 5,
                    value: true
                }
            )
            .unwrap()[7..],
            [5, 0, 5, 0xff, 0]
        );
        assert_eq!(
            encode(
                1,
                1,
                &Request::WriteCoils {
                    address: 0,
                    values: vec![true, false, true, true, false, false, false, false, true]
                }
            )
            .unwrap()[7..],
            [15, 0, 0, 0, 9, 2, 0b0000_1101, 1]
        );
        assert_eq!(
            encode(
                1,
                1,
                &Request::WriteRegisters {
                    address: 2,
                    values: vec![0xabcd, 1]
                }
            )
            .unwrap()[7..],
            [16, 0, 2, 0, 2, 4, 0xab, 0xcd, 0, 1]
        );
    }

    #[test]
    fn bad_requests_are_refused() {
        for r in [
            Request::Read {
                table: Table::Coils,
                address: 0,
                count: 0,
            },
            Request::Read {
                table: Table::InputRegisters,
                address: 0,
                count: 126,
            },
            Request::Read {
                table: Table::HoldingRegisters,
                address: 65535,
                count: 2,
            },
            Request::WriteRegisters {
                address: 0,
                values: vec![0; 124],
            },
            Request::WriteCoils {
                address: 0,
                values: vec![],
            },
        ] {
            assert!(
                matches!(encode(1, 1, &r), Err(Error::BadRequest(_))),
                "{r:?}"
            );
        }
    }

    #[test]
    fn good_responses_decode() {
        let f = frame(7, 1, &[3, 4, 0xff, 0x29, 0, 0xdc]);
        assert_eq!(frame_len(&f).unwrap(), Some(f.len()));
        assert_eq!(
            decode(&f, 7, 1, &READ_HR).unwrap(),
            Response::Registers(vec![0xff29, 0x00dc])
        );
        let coils = Request::Read {
            table: Table::Coils,
            address: 0,
            count: 10,
        };
        let f = frame(1, 1, &[1, 2, 0b1000_0001, 0b10]);
        assert_eq!(
            decode(&f, 1, 1, &coils).unwrap(),
            Response::Bits(vec![
                true, false, false, false, false, false, false, true, false, true
            ])
        );
        let w = Request::WriteRegister {
            address: 1,
            value: 225,
        };
        assert_eq!(
            decode(&frame(2, 1, &[6, 0, 1, 0, 225]), 2, 1, &w).unwrap(),
            Response::Written
        );
    }

    #[test]
    fn hostile_responses_are_errors() {
        let w = Request::WriteRegister {
            address: 1,
            value: 225,
        };
        let cases: Vec<(Vec<u8>, &Request, Error)> = vec![
            (
                frame(8, 1, &[3, 4, 0, 0, 0, 0]),
                &READ_HR,
                Error::Transaction {
                    expected: 7,
                    got: 8,
                },
            ),
            (
                frame(7, 2, &[3, 4, 0, 0, 0, 0]),
                &READ_HR,
                Error::Unit {
                    expected: 1,
                    got: 2,
                },
            ),
            (
                frame(7, 1, &[4, 4, 0, 0, 0, 0]),
                &READ_HR,
                Error::Function {
                    expected: 3,
                    got: 4,
                },
            ),
            (
                frame(7, 1, &[0x83, 2]),
                &READ_HR,
                Error::Exception(Exception(2)),
            ),
            (
                frame(7, 1, &[0x83]),
                &READ_HR,
                Error::Malformed("exception of the wrong length"),
            ),
            (
                frame(7, 1, &[3]),
                &READ_HR,
                Error::Malformed("no byte count"),
            ),
            (
                frame(7, 1, &[3, 4, 0, 0]),
                &READ_HR,
                Error::Malformed("byte count differs from the frame"),
            ),
            (
                frame(7, 1, &[3, 2, 0, 0]),
                &READ_HR,
                Error::Malformed("byte count differs from the request"),
            ),
            (
                frame(7, 1, &[3, 6, 0, 0, 0, 0, 0, 0]),
                &READ_HR,
                Error::Malformed("byte count differs from the request"),
            ),
            (frame(7, 1, &[6, 0, 1, 0, 226]), &w, Error::Echo),
            (
                frame(7, 1, &[6, 0, 1, 0]),
                &w,
                Error::Malformed("write answer is not 4 bytes"),
            ),
        ];
        for (f, r, e) in cases {
            assert_eq!(decode(&f, 7, 1, r), Err(e.clone()), "{f:?}");
            assert!(!alloc::format!("{e}").is_empty());
        }
        // A frame cut short, or one whose MBAP length lies.
        let mut f = frame(7, 1, &[3, 4, 0, 0, 0, 0]);
        f.pop();
        assert!(matches!(
            decode(&f, 7, 1, &READ_HR),
            Err(Error::Malformed(_))
        ));
        assert_eq!(frame_len(&[0, 1, 0, 0, 0]), Ok(None));
        assert_eq!(frame_len(&[0, 1, 0, 1, 0, 6]), Err(Error::Protocol(1)));
        assert_eq!(frame_len(&[0, 1, 0, 0, 0, 1]), Err(Error::Length(1)));
        assert_eq!(frame_len(&[0, 1, 0, 0, 1, 0]), Err(Error::Length(256)));
        assert!(matches!(
            decode(&[0, 7, 0, 0], 7, 1, &READ_HR),
            Err(Error::Malformed(_))
        ));
    }

    #[test]
    fn random_frames_never_panic() {
        let mut seed = 0x9e37_79b9u32;
        let requests = [
            READ_HR,
            Request::Read {
                table: Table::Coils,
                address: 0,
                count: 9,
            },
            Request::WriteCoil {
                address: 0,
                value: true,
            },
            Request::WriteRegisters {
                address: 0,
                values: vec![1, 2],
            },
        ];
        for _ in 0..20_000 {
            let mut f = Vec::new();
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let n = seed % 20;
            for i in 0..n {
                f.push((seed.rotate_left(i) & 0xff) as u8 % 9);
            }
            if let Ok(Some(len)) = frame_len(&f) {
                if len <= f.len() {
                    for r in &requests {
                        let _ = decode(&f[..len], 0, 0, r);
                    }
                }
            }
            for r in &requests {
                let _ = decode(&f, 0, 0, r);
            }
        }
    }
}
