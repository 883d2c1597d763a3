//! Helpers that read typed fields out of YAML nodes, with errors naming the line.

use crate::yaml::{Error, Node, Value};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

pub(crate) fn fail<T>(node: &Node, message: impl Into<String>) -> Result<T, Error> {
    Err(Error {
        line: node.line,
        message: message.into(),
    })
}

/// Checks that `node` is a mapping.
pub(crate) fn map<'a>(node: &'a Node, what: &str) -> Result<&'a [(String, Node)], Error> {
    match &node.value {
        Value::Map(entries) => Ok(entries),
        _ => fail(node, format!("{what} must be a mapping")),
    }
}

/// The items of a sequence field; absent or null is empty.
pub(crate) fn seq<'a>(node: &'a Node, key: &str) -> Result<&'a [Node], Error> {
    match node.get(key).map(|n| (n, &n.value)) {
        None | Some((_, Value::Null)) => Ok(&[]),
        Some((_, Value::Seq(items))) => Ok(items),
        Some((n, _)) => fail(n, format!("`{key}` must be a sequence")),
    }
}

/// An optional text field (a scalar of any kind).
pub(crate) fn text(node: &Node, key: &str) -> Result<Option<String>, Error> {
    match node.get(key) {
        None => Ok(None),
        Some(n) => match &n.value {
            Value::Null => Ok(None),
            Value::Scalar { text, .. } => Ok(Some(text.clone())),
            _ => fail(n, format!("`{key}` must be a scalar")),
        },
    }
}

/// A required text field.
pub(crate) fn required(node: &Node, key: &str, what: &str) -> Result<String, Error> {
    match text(node, key)? {
        Some(t) if !t.is_empty() => Ok(t),
        _ => fail(node, format!("{what} has no `{key}`")),
    }
}

/// An optional field parsed with `FromStr` (numbers may be written quoted, as older EdgeX
/// profiles do).
pub(crate) fn parsed<T: core::str::FromStr>(node: &Node, key: &str) -> Result<Option<T>, Error> {
    match text(node, key)? {
        None => Ok(None),
        Some(t) if t.is_empty() => Ok(None),
        Some(t) => match t.trim().parse() {
            Ok(v) => Ok(Some(v)),
            Err(_) => fail(
                node.get(key).unwrap_or(node),
                format!("`{key}`: `{t}` is not a valid value"),
            ),
        },
    }
}

/// An optional boolean (`true`/`false`, any case, quoted or not).
pub(crate) fn boolean(node: &Node, key: &str) -> Result<Option<bool>, Error> {
    match text(node, key)? {
        None => Ok(None),
        Some(t) => match t.to_ascii_lowercase().as_str() {
            "true" => Ok(Some(true)),
            "false" => Ok(Some(false)),
            _ => fail(
                node.get(key).unwrap_or(node),
                format!("`{key}`: `{t}` is not true or false"),
            ),
        },
    }
}

/// A sequence of scalars as text.
pub(crate) fn strings(node: &Node, key: &str) -> Result<Vec<String>, Error> {
    seq(node, key)?
        .iter()
        .map(|n| match n.as_str() {
            Some(t) => Ok(t.to_string()),
            None => fail(n, format!("`{key}` items must be scalars")),
        })
        .collect()
}

/// An optional unsigned integer, decimal or `0x` hexadecimal.
pub(crate) fn uint(node: &Node, key: &str) -> Result<Option<u64>, Error> {
    match text(node, key)? {
        None => Ok(None),
        Some(t) => {
            let t = t.trim();
            let value = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
                Some(hex) => u64::from_str_radix(hex, 16).ok(),
                None => t.parse().ok(),
            };
            match value {
                Some(v) => Ok(Some(v)),
                None => fail(
                    node.get(key).unwrap_or(node),
                    format!("`{key}`: `{t}` is not an unsigned integer"),
                ),
            }
        }
    }
}
