//! Reading values: EdgeX's transformations (`base`, `mask`, `shift`, `scale`, `offset`) on
//! reads, their inverse and the `minimum`/`maximum` check on writes, and the text form readings
//! carry.

use crate::profile::{ResourceProperties, ValueType};
use alloc::format;
use alloc::string::{String, ToString};
use core::fmt;

/// A value read from or written to a device.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A boolean.
    Bool(bool),
    /// A signed integer.
    Int(i64),
    /// An unsigned integer.
    Uint(u64),
    /// A floating-point number.
    Float(f64),
    /// Text.
    Text(String),
}

/// Why a value could not be transformed, parsed or checked.
#[derive(Clone, Debug, PartialEq)]
pub enum ValueError {
    /// The result does not fit the resource's value type.
    OutOfRange(String),
    /// The text is not a value of the type.
    Malformed(String),
    /// Below `minimum` or above `maximum`.
    Limit(String),
    /// The operation does not apply to the type (e.g. a mask on a string).
    Unsupported(String),
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueError::OutOfRange(m) => write!(f, "out of range: {m}"),
            ValueError::Malformed(m) => write!(f, "malformed value: {m}"),
            ValueError::Limit(m) => write!(f, "limit: {m}"),
            ValueError::Unsupported(m) => write!(f, "unsupported: {m}"),
        }
    }
}

impl Value {
    /// The value as a float (booleans are 0 and 1; text is `None`).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::Bool(b) => Some(f64::from(u8::from(b))),
            Value::Int(i) => Some(i as f64),
            Value::Uint(u) => Some(u as f64),
            Value::Float(f) => Some(f),
            Value::Text(_) => None,
        }
    }
}

/// The range of an integer type.
fn int_range(t: ValueType) -> Option<(i128, i128)> {
    use ValueType::*;
    Some(match t {
        Uint8 => (0, u8::MAX.into()),
        Uint16 => (0, u16::MAX.into()),
        Uint32 => (0, u32::MAX.into()),
        Uint64 => (0, u64::MAX.into()),
        Int8 => (i8::MIN.into(), i8::MAX.into()),
        Int16 => (i16::MIN.into(), i16::MAX.into()),
        Int32 => (i32::MIN.into(), i32::MAX.into()),
        Int64 => (i64::MIN.into(), i64::MAX.into()),
        _ => return None,
    })
}

/// Converts `v` to the resource's value type, checking its range (floats are truncated
/// toward zero when the type is an integer, as EdgeX's SDK converts them).
pub fn coerce(t: ValueType, v: Value) -> Result<Value, ValueError> {
    if let Some((lo, hi)) = int_range(t) {
        let n: i128 = match v {
            Value::Int(i) => i.into(),
            Value::Uint(u) => u.into(),
            Value::Bool(b) => b.into(),
            Value::Float(f) if f.is_finite() && f >= lo as f64 && f <= hi as f64 => f as i128,
            Value::Float(f) => return Err(ValueError::OutOfRange(format!("{f} for {}", t.name()))),
            Value::Text(_) => return Err(ValueError::Unsupported(format!("text as {}", t.name()))),
        };
        if n < lo || n > hi {
            return Err(ValueError::OutOfRange(format!("{n} for {}", t.name())));
        }
        return Ok(if lo < 0 {
            Value::Int(n as i64)
        } else {
            Value::Uint(n as u64)
        });
    }
    match t {
        ValueType::Float32 | ValueType::Float64 => match v.as_f64() {
            Some(f) if t == ValueType::Float32 && f.is_finite() && f.abs() > f32::MAX as f64 => {
                Err(ValueError::OutOfRange(format!("{f} for Float32")))
            }
            Some(f) => Ok(Value::Float(f)),
            None => Err(ValueError::Unsupported(format!("text as {}", t.name()))),
        },
        ValueType::Bool => match v {
            Value::Bool(b) => Ok(Value::Bool(b)),
            Value::Int(i) => Ok(Value::Bool(i != 0)),
            Value::Uint(u) => Ok(Value::Bool(u != 0)),
            other => Err(ValueError::Unsupported(format!("{other:?} as Bool"))),
        },
        ValueType::String => Ok(Value::Text(match v {
            Value::Text(s) => s,
            other => format_value(ValueType::Float64, &other),
        })),
        other => Err(ValueError::Unsupported(format!(
            "{} values are not handled",
            other.name()
        ))),
    }
}

/// Applies a resource's read transformations to a raw value and converts the result to its
/// value type: `base`, then `mask` and `shift` (integers), `scale`, `offset`.
pub fn transform_read(p: &ResourceProperties, raw: Value) -> Result<Value, ValueError> {
    let mut v = raw;
    if let Some(base) = p.base {
        let exponent = v
            .as_f64()
            .ok_or_else(|| ValueError::Unsupported("base on text".to_string()))?;
        v = Value::Float(libm_pow(base, exponent));
    }
    if p.mask.is_some() || p.shift.is_some() {
        let mut bits: u64 = match v {
            Value::Uint(u) => u,
            Value::Int(i) => i as u64,
            _ => {
                return Err(ValueError::Unsupported(
                    "mask and shift apply to integers".to_string(),
                ))
            }
        };
        if let Some(mask) = p.mask {
            bits &= mask;
        }
        if let Some(shift) = p.shift {
            let by = shift.unsigned_abs();
            bits = if by >= 64 {
                0
            } else if shift > 0 {
                bits << by
            } else {
                bits >> by
            };
        }
        v = match v {
            Value::Int(_) => Value::Int(bits as i64),
            _ => Value::Uint(bits),
        };
    }
    if p.scale.is_some() || p.offset.is_some() {
        let f = v
            .as_f64()
            .ok_or_else(|| ValueError::Unsupported("scale or offset on text".to_string()))?;
        v = Value::Float(f * p.scale.unwrap_or(1.0) + p.offset.unwrap_or(0.0));
    }
    coerce(p.value_type, v)
}

/// `base^exponent` for the integer exponents EdgeX profiles use (fractional exponents are
/// refused by returning NaN, which the range check then rejects).
fn libm_pow(base: f64, exponent: f64) -> f64 {
    if exponent as i64 as f64 != exponent || !(-1024.0..=1024.0).contains(&exponent) {
        return f64::NAN;
    }
    let mut result = 1.0;
    for _ in 0..(exponent as i64).unsigned_abs() {
        result *= base;
    }
    if exponent < 0.0 {
        1.0 / result
    } else {
        result
    }
}

/// Parses the text of a value of type `t` (`true`/`false`/`1`/`0` for Bool, decimal numbers
/// within the type's range, any text for String).
pub fn parse_value(t: ValueType, text: &str) -> Result<Value, ValueError> {
    let text = text.trim();
    let malformed = || ValueError::Malformed(format!("`{text}` is not a {}", t.name()));
    Ok(match t {
        ValueType::Bool => match text.to_ascii_lowercase().as_str() {
            "true" | "1" => Value::Bool(true),
            "false" | "0" => Value::Bool(false),
            _ => return Err(malformed()),
        },
        ValueType::String => Value::Text(text.to_string()),
        _ if t.is_float() => match text.parse::<f64>() {
            Ok(f) if f.is_finite() => coerce(t, Value::Float(f))?,
            _ => return Err(malformed()),
        },
        _ if t.is_integer() => match text.parse::<i128>() {
            Ok(n) if n < 0 && n >= i128::from(i64::MIN) => coerce(t, Value::Int(n as i64))?,
            Ok(n) if n >= 0 && n <= i128::from(u64::MAX) => coerce(t, Value::Uint(n as u64))?,
            Ok(n) => return Err(ValueError::OutOfRange(format!("{n} for {}", t.name()))),
            Err(_) => return Err(malformed()),
        },
        other => {
            return Err(ValueError::Unsupported(format!(
                "{} values are not handled",
                other.name()
            )))
        }
    })
}

/// Parses a written value (a command's text) for a resource, checks `minimum`/`maximum` and
/// undoes `offset` and `scale`: what is left is the raw value to send to the device.
pub fn parse_write(p: &ResourceProperties, text: &str) -> Result<Value, ValueError> {
    let value = parse_value(p.value_type, text)?;
    let text = text.trim();
    if let Some(f) = value.as_f64() {
        if let Some(min) = p.minimum {
            if f < min {
                return Err(ValueError::Limit(format!(
                    "{text} is below the minimum {min}"
                )));
            }
        }
        if let Some(max) = p.maximum {
            if f > max {
                return Err(ValueError::Limit(format!(
                    "{text} is above the maximum {max}"
                )));
            }
        }
    }
    if p.scale.is_none() && p.offset.is_none() {
        return Ok(value);
    }
    let f = value
        .as_f64()
        .ok_or_else(|| ValueError::Unsupported("scale or offset on text".to_string()))?;
    Ok(Value::Float(
        (f - p.offset.unwrap_or(0.0)) / p.scale.unwrap_or(1.0),
    ))
}

/// The text a reading carries for a value of type `t`.
pub fn format_value(t: ValueType, v: &Value) -> String {
    match v {
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Uint(u) => u.to_string(),
        Value::Float(f) if t == ValueType::Float32 => (*f as f32).to_string(),
        Value::Float(f) => f.to_string(),
        Value::Text(s) => s.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::ReadWrite;

    fn props(t: ValueType) -> ResourceProperties {
        ResourceProperties {
            value_type: t,
            read_write: ReadWrite::ReadWrite,
            units: None,
            minimum: None,
            maximum: None,
            default_value: None,
            mask: None,
            shift: None,
            scale: None,
            offset: None,
            base: None,
            media_type: None,
        }
    }

    #[test]
    fn read_transformations() {
        let mut p = props(ValueType::Float32);
        p.scale = Some(0.1);
        assert_eq!(
            transform_read(&p, Value::Int(-215)).unwrap(),
            Value::Float(-21.5)
        );
        assert_eq!(
            format_value(p.value_type, &Value::Float(-215.0 * 0.1)),
            "-21.5"
        );
        let mut p = props(ValueType::Uint16);
        p.mask = Some(0x0f0);
        p.shift = Some(-4);
        assert_eq!(
            transform_read(&p, Value::Uint(0xabc)).unwrap(),
            Value::Uint(0xb)
        );
        let mut p = props(ValueType::Int16);
        p.offset = Some(-40.0);
        assert_eq!(transform_read(&p, Value::Uint(65)).unwrap(), Value::Int(25));
        p.scale = Some(1000.0);
        assert!(matches!(
            transform_read(&p, Value::Uint(65)),
            Err(ValueError::OutOfRange(_))
        ));
        let mut p = props(ValueType::Float64);
        p.base = Some(10.0);
        assert_eq!(
            transform_read(&p, Value::Int(3)).unwrap(),
            Value::Float(1000.0)
        );
        assert!(transform_read(&props(ValueType::Uint8), Value::Int(-1)).is_err());
    }

    #[test]
    fn write_inverse_and_limits() {
        let mut p = props(ValueType::Float32);
        p.scale = Some(0.1);
        p.minimum = Some(5.0);
        p.maximum = Some(35.0);
        let raw = parse_write(&p, "22.5").unwrap().as_f64().unwrap();
        assert!((raw - 225.0).abs() < 1e-9);
        assert!(matches!(parse_write(&p, "36"), Err(ValueError::Limit(_))));
        assert!(matches!(parse_write(&p, "4.9"), Err(ValueError::Limit(_))));
        assert!(matches!(
            parse_write(&p, "warm"),
            Err(ValueError::Malformed(_))
        ));
        assert!(matches!(
            parse_write(&p, "NaN"),
            Err(ValueError::Malformed(_))
        ));
        let b = props(ValueType::Bool);
        assert_eq!(parse_write(&b, "TRUE").unwrap(), Value::Bool(true));
        assert!(parse_write(&b, "yes").is_err());
        let u = props(ValueType::Uint16);
        assert_eq!(parse_write(&u, "65535").unwrap(), Value::Uint(65535));
        assert!(matches!(
            parse_write(&u, "65536"),
            Err(ValueError::OutOfRange(_))
        ));
        assert!(parse_write(&u, "-1").is_err());
        assert!(parse_write(&props(ValueType::Binary), "x").is_err());
    }
}
