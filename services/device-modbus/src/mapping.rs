//! EdgeX's device-modbus mapping of a device resource to Modbus: the resource's `attributes`
//! (`primaryTable`, `startingAddress`, `rawType`, `isByteSwap`, `isWordSwap`) choose the table,
//! the function codes, how many registers to read and how their bytes make a value.
//!
//! - `COILS` (FC1 read, FC5 write), `DISCRETES_INPUTS` (FC2), `INPUT_REGISTERS` (FC4),
//!   `HOLDING_REGISTERS` (FC3 read, FC6 write of one register, FC16 of several).
//! - Registers: `Int16`/`Uint16` take one, `Int32`/`Uint32`/`Float32` two, `Int64`/`Uint64`/
//!   `Float64` four; `rawType` (e.g. `INT16` under a `Float32` resource) reads that type and
//!   converts it, before the profile's `scale`/`offset`.
//! - Registers are big-endian words, most significant word first; `isByteSwap` swaps the two
//!   bytes of each word, `isWordSwap` swaps the words of a 32-bit value (EdgeX applies both to
//!   32-bit values only; lichen does the same and ignores them for 16-bit values, while for
//!   64-bit values word swap reverses the four words).
//!
//! The profile is the user's: a missing or unknown attribute is an error naming its line.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use edgex::profile::{DeviceResource, ValueType};
use edgex::value::{self, Value, ValueError};
use modbus::{Request, Response, Table};

/// How values are stored in the device's registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawType {
    /// A coil or discrete input.
    Bit,
    /// 16-bit signed.
    Int16,
    /// 16-bit unsigned.
    Uint16,
    /// 32-bit signed.
    Int32,
    /// 32-bit unsigned.
    Uint32,
    /// IEEE 754 single.
    Float32,
    /// 64-bit signed.
    Int64,
    /// 64-bit unsigned.
    Uint64,
    /// IEEE 754 double.
    Float64,
}

impl RawType {
    /// Registers one value takes (bits: one coil).
    pub fn registers(self) -> u16 {
        match self {
            RawType::Bit | RawType::Int16 | RawType::Uint16 => 1,
            RawType::Int32 | RawType::Uint32 | RawType::Float32 => 2,
            RawType::Int64 | RawType::Uint64 | RawType::Float64 => 4,
        }
    }

    fn from_attribute(name: &str) -> Option<RawType> {
        Some(match name.to_ascii_uppercase().as_str() {
            "INT16" => RawType::Int16,
            "UINT16" => RawType::Uint16,
            "INT32" => RawType::Int32,
            "UINT32" => RawType::Uint32,
            "FLOAT32" => RawType::Float32,
            "INT64" => RawType::Int64,
            "UINT64" => RawType::Uint64,
            "FLOAT64" => RawType::Float64,
            _ => return None,
        })
    }

    fn from_value_type(t: ValueType) -> Option<RawType> {
        Some(match t {
            ValueType::Bool => RawType::Bit,
            ValueType::Int16 | ValueType::Int8 => RawType::Int16,
            ValueType::Uint16 | ValueType::Uint8 => RawType::Uint16,
            ValueType::Int32 => RawType::Int32,
            ValueType::Uint32 => RawType::Uint32,
            ValueType::Float32 => RawType::Float32,
            ValueType::Int64 => RawType::Int64,
            ValueType::Uint64 => RawType::Uint64,
            ValueType::Float64 => RawType::Float64,
            _ => return None,
        })
    }
}

/// Where and how one resource lives in a Modbus device.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    /// The resource name.
    pub name: String,
    /// The table.
    pub table: Table,
    /// First coil or register (0-based).
    pub address: u16,
    /// How the registers hold the value.
    pub raw: RawType,
    /// `isByteSwap`.
    pub byte_swap: bool,
    /// `isWordSwap`.
    pub word_swap: bool,
}

/// A profile error naming the line.
fn at_line(resource: &DeviceResource, key: &str, message: String) -> String {
    match resource.attribute_node(key) {
        Some(node) => format!(
            "line {}: resource `{}`: {message}",
            node.line, resource.name
        ),
        None => format!("resource `{}`: {message}", resource.name),
    }
}

fn flag(resource: &DeviceResource, key: &str) -> Result<bool, String> {
    match resource.attribute(key) {
        None => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
        Some(v) => Err(at_line(
            resource,
            key,
            format!("`{key}`: `{v}` is not true or false"),
        )),
    }
}

impl Point {
    /// Reads a resource's Modbus attributes.
    pub fn of(resource: &DeviceResource) -> Result<Point, String> {
        let table = match resource.attribute("primaryTable") {
            Some(t) => match t.to_ascii_uppercase().as_str() {
                "COILS" => Table::Coils,
                "DISCRETES_INPUTS" | "DISCRETE_INPUTS" => Table::DiscreteInputs,
                "INPUT_REGISTERS" => Table::InputRegisters,
                "HOLDING_REGISTERS" => Table::HoldingRegisters,
                _ => {
                    return Err(at_line(
                        resource,
                        "primaryTable",
                        format!("`primaryTable`: `{t}` is not COILS, DISCRETES_INPUTS, INPUT_REGISTERS or HOLDING_REGISTERS"),
                    ))
                }
            },
            None => return Err(format!("resource `{}` has no `primaryTable` attribute", resource.name)),
        };
        let address = match resource.attribute("startingAddress") {
            Some(a) => a.trim().parse::<u16>().map_err(|_| {
                at_line(
                    resource,
                    "startingAddress",
                    format!("`startingAddress`: `{a}` is not 0..=65535"),
                )
            })?,
            None => {
                return Err(format!(
                    "resource `{}` has no `startingAddress` attribute",
                    resource.name
                ))
            }
        };
        let value_type = resource.properties.value_type;
        let raw = match resource.attribute("rawType") {
            Some(r) => RawType::from_attribute(r).ok_or_else(|| {
                at_line(
                    resource,
                    "rawType",
                    format!("`rawType`: `{r}` is not a Modbus raw type"),
                )
            })?,
            None => RawType::from_value_type(value_type).ok_or_else(|| {
                format!(
                    "resource `{}`: {} values are not supported over Modbus",
                    resource.name,
                    value_type.name()
                )
            })?,
        };
        if table.is_bits() != (raw == RawType::Bit) {
            return Err(format!(
                "resource `{}`: {} values do not fit {:?}",
                resource.name,
                value_type.name(),
                table
            ));
        }
        if usize::from(address) + usize::from(raw.registers()) > 0x1_0000 {
            return Err(at_line(
                resource,
                "startingAddress",
                "the value runs past address 65535".into(),
            ));
        }
        Ok(Point {
            name: resource.name.clone(),
            table,
            address,
            raw,
            byte_swap: flag(resource, "isByteSwap")?,
            word_swap: flag(resource, "isWordSwap")?,
        })
    }

    /// The request that reads this point.
    pub fn read_request(&self) -> Request {
        Request::Read {
            table: self.table,
            address: self.address,
            count: self.raw.registers(),
        }
    }

    /// The raw value in a checked response to [`Point::read_request`].
    pub fn decode(&self, response: &Response) -> Result<Value, String> {
        match (self.raw, response) {
            (RawType::Bit, Response::Bits(bits)) if bits.len() == 1 => Ok(Value::Bool(bits[0])),
            (raw, Response::Registers(regs)) if regs.len() == usize::from(raw.registers()) => {
                let bytes = self.swap(regs.iter().flat_map(|r| r.to_be_bytes()).collect());
                Ok(from_be(raw, &bytes))
            }
            _ => Err(format!(
                "`{}`: response does not match the request",
                self.name
            )),
        }
    }

    /// The request that writes the raw value `v` (after the profile's inverse transforms).
    pub fn write_request(&self, v: &Value) -> Result<Request, ValueError> {
        if !self.table.is_writable() {
            return Err(ValueError::Unsupported(format!(
                "{:?} are read-only",
                self.table
            )));
        }
        if self.raw == RawType::Bit {
            let on = match value::coerce(ValueType::Bool, v.clone())? {
                Value::Bool(b) => b,
                _ => unreachable!("coerce to Bool gives a Bool"),
            };
            return Ok(Request::WriteCoil {
                address: self.address,
                value: on,
            });
        }
        let bytes = self.swap(to_be(self.raw, v)?);
        let values: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|w| u16::from_be_bytes([w[0], w[1]]))
            .collect();
        Ok(if values.len() == 1 {
            Request::WriteRegister {
                address: self.address,
                value: values[0],
            }
        } else {
            Request::WriteRegisters {
                address: self.address,
                values,
            }
        })
    }

    /// Applies `isByteSwap` and `isWordSwap` (each is its own inverse).
    fn swap(&self, mut bytes: Vec<u8>) -> Vec<u8> {
        if bytes.len() < 4 {
            return bytes;
        }
        if self.byte_swap {
            for w in bytes.chunks_exact_mut(2) {
                w.swap(0, 1);
            }
        }
        if self.word_swap {
            let words: Vec<[u8; 2]> = bytes.chunks_exact(2).rev().map(|w| [w[0], w[1]]).collect();
            bytes = words.concat();
        }
        bytes
    }
}

fn from_be(raw: RawType, b: &[u8]) -> Value {
    let mut eight = [0u8; 8];
    eight[8 - b.len()..].copy_from_slice(b);
    let u = u64::from_be_bytes(eight);
    match raw {
        RawType::Bit => Value::Bool(u != 0),
        RawType::Int16 => Value::Int(i64::from(u as u16 as i16)),
        RawType::Int32 => Value::Int(i64::from(u as u32 as i32)),
        RawType::Int64 => Value::Int(u as i64),
        RawType::Uint16 | RawType::Uint32 | RawType::Uint64 => Value::Uint(u),
        RawType::Float32 => Value::Float(f64::from(f32::from_bits(u as u32))),
        RawType::Float64 => Value::Float(f64::from_bits(u)),
    }
}

/// Rounds to the nearest integer (a written 22.5 with scale 0.1 is 224.99999999999997).
fn round(f: f64) -> f64 {
    if f >= 0.0 {
        (f + 0.5) as i128 as f64
    } else {
        (f - 0.5) as i128 as f64
    }
}

fn to_be(raw: RawType, v: &Value) -> Result<Vec<u8>, ValueError> {
    let integer = |t: ValueType| -> Result<Value, ValueError> {
        let v = match v {
            Value::Float(f) if f.is_finite() => Value::Float(round(*f)),
            other => other.clone(),
        };
        value::coerce(t, v)
    };
    let bits = |v: Value| match v {
        Value::Int(i) => i as u64,
        Value::Uint(u) => u,
        _ => 0,
    };
    Ok(match raw {
        RawType::Int16 => (bits(integer(ValueType::Int16)?) as u16)
            .to_be_bytes()
            .to_vec(),
        RawType::Uint16 => (bits(integer(ValueType::Uint16)?) as u16)
            .to_be_bytes()
            .to_vec(),
        RawType::Int32 => (bits(integer(ValueType::Int32)?) as u32)
            .to_be_bytes()
            .to_vec(),
        RawType::Uint32 => (bits(integer(ValueType::Uint32)?) as u32)
            .to_be_bytes()
            .to_vec(),
        RawType::Int64 => bits(integer(ValueType::Int64)?).to_be_bytes().to_vec(),
        RawType::Uint64 => bits(integer(ValueType::Uint64)?).to_be_bytes().to_vec(),
        RawType::Float32 => match value::coerce(ValueType::Float32, v.clone())? {
            Value::Float(f) => (f as f32).to_bits().to_be_bytes().to_vec(),
            _ => unreachable!("coerce to Float32 gives a Float"),
        },
        RawType::Float64 => match value::coerce(ValueType::Float64, v.clone())? {
            Value::Float(f) => f.to_bits().to_be_bytes().to_vec(),
            _ => unreachable!("coerce to Float64 gives a Float"),
        },
        RawType::Bit => return Err(ValueError::Unsupported("bits are written as coils".into())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use edgex::DeviceProfile;

    fn profile(text: &str) -> DeviceProfile {
        DeviceProfile::parse(text).unwrap()
    }

    #[test]
    fn thermostat_points() {
        let p = profile(include_str!(
            "../../lib/edgex/profiles/modbus-thermostat.yaml"
        ));
        let t = Point::of(p.resource("Temperature").unwrap()).unwrap();
        assert_eq!(
            (t.table, t.address, t.raw),
            (Table::HoldingRegisters, 0, RawType::Int16)
        );
        let raw = t.decode(&Response::Registers(vec![0xff29])).unwrap();
        assert_eq!(raw, Value::Int(-215));
        let r = p.resource("Temperature").unwrap();
        let v = value::transform_read(&r.properties, raw).unwrap();
        assert_eq!(value::format_value(r.properties.value_type, &v), "-21.5");
        let s = p.resource("Setpoint").unwrap();
        let sp = Point::of(s).unwrap();
        let raw = value::parse_write(&s.properties, "22.5").unwrap();
        assert_eq!(
            sp.write_request(&raw).unwrap(),
            Request::WriteRegister {
                address: 1,
                value: 225
            }
        );
        let raw = value::parse_write(&s.properties, "5").unwrap();
        assert!(value::parse_write(&s.properties, "36").is_err());
        assert!(sp.write_request(&raw).is_ok());
        let sw = Point::of(p.resource("Switch").unwrap()).unwrap();
        assert_eq!(
            sw.write_request(&Value::Bool(true)).unwrap(),
            Request::WriteCoil {
                address: 0,
                value: true
            }
        );
        assert_eq!(
            sw.decode(&Response::Bits(vec![true])).unwrap(),
            Value::Bool(true)
        );
        let alarm = Point::of(p.resource("Alarm").unwrap()).unwrap();
        assert!(alarm.write_request(&Value::Bool(true)).is_err());
    }

    #[test]
    fn byte_and_word_orders() {
        let p = profile(include_str!("../../lib/edgex/profiles/modbus-swap.yaml"));
        // 0x11223344 = 287454020 stored four ways.
        let cases = [
            ("EnergyABCD", [0x1122, 0x3344]),
            ("EnergyCDAB", [0x3344, 0x1122]),
            ("EnergyBADC", [0x2211, 0x4433]),
            ("EnergyDCBA", [0x4433, 0x2211]),
        ];
        for (name, regs) in cases {
            let point = Point::of(p.resource(name).unwrap()).unwrap();
            assert_eq!(
                point.decode(&Response::Registers(regs.to_vec())).unwrap(),
                Value::Uint(0x1122_3344),
                "{name}"
            );
            assert_eq!(
                point.write_request(&Value::Uint(0x1122_3344)).unwrap(),
                Request::WriteRegisters {
                    address: point.address,
                    values: regs.to_vec()
                },
                "{name}"
            );
        }
        let power = p.resource("Power").unwrap();
        let point = Point::of(power).unwrap();
        let regs = 100.0f32.to_bits();
        let raw = point
            .decode(&Response::Registers(vec![(regs >> 16) as u16, regs as u16]))
            .unwrap();
        assert_eq!(
            value::transform_read(&power.properties, raw).unwrap(),
            Value::Float(98.5)
        );
        let status = p.resource("Status").unwrap();
        let raw = Point::of(status)
            .unwrap()
            .decode(&Response::Registers(vec![0x0ab5]))
            .unwrap();
        assert_eq!(
            value::transform_read(&status.properties, raw).unwrap(),
            Value::Uint(0xb)
        );
    }

    #[test]
    fn bad_attributes_name_the_line() {
        let base = "name: P\ndeviceResources:\n  - name: A\n    attributes: { primaryTable: \"HOLDING_REGISTERS\", startingAddress: 0 }\n    properties: { valueType: Int32, readWrite: R }\n";
        let cases = [
            (
                base.replace("HOLDING_REGISTERS", "SOMETIMES"),
                "line 4",
                "SOMETIMES",
            ),
            (
                base.replace("startingAddress: 0", "startingAddress: 70000"),
                "line 4",
                "70000",
            ),
            (
                base.replace("startingAddress: 0", "startingAddress: 65535"),
                "line 4",
                "past address",
            ),
            (
                base.replace("startingAddress: 0", "startingAddress: 0, rawType: INT12"),
                "line 4",
                "INT12",
            ),
            (
                base.replace(
                    "startingAddress: 0",
                    "startingAddress: 0, isWordSwap: maybe",
                ),
                "line 4",
                "maybe",
            ),
            (
                base.replace("HOLDING_REGISTERS", "COILS"),
                "resource `A`",
                "do not fit",
            ),
            (
                base.replace(", startingAddress: 0", ""),
                "resource `A`",
                "startingAddress",
            ),
            (
                base.replace("Int32", "String"),
                "resource `A`",
                "not supported",
            ),
        ];
        for (text, line, what) in cases {
            let p = profile(&text);
            let e = Point::of(&p.device_resources[0]).unwrap_err();
            assert!(e.contains(line) && e.contains(what), "{e}");
        }
    }

    #[test]
    fn mismatched_responses_are_errors() {
        let p = profile(include_str!("../../lib/edgex/profiles/modbus-swap.yaml"));
        let point = Point::of(p.resource("EnergyABCD").unwrap()).unwrap();
        assert!(point.decode(&Response::Registers(vec![1])).is_err());
        assert!(point.decode(&Response::Bits(vec![true, true])).is_err());
        assert!(point.decode(&Response::Written).is_err());
        assert!(point.write_request(&Value::Int(-1)).is_err());
    }
}
