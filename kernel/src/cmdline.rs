//! The kernel command line, handed to the service as `key=value` arguments.
//!
//! Words are separated by ASCII whitespace. A word is `key=value` or a bare `key` (a flag, whose
//! value is empty). A value may be double-quoted to hold spaces: `motd="hello world"`. Later
//! occurrences of a key override earlier ones. Malformed words (an empty key, an unterminated
//! quote) are reported, not silently dropped.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::str::FromStr;

/// A problem found while parsing the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// A word starts with `=`.
    EmptyKey {
        /// Byte offset of the word.
        at: usize,
    },
    /// A quoted value has no closing quote.
    UnterminatedQuote {
        /// Byte offset of the word.
        at: usize,
    },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::EmptyKey { at } => write!(f, "empty key at byte {at}"),
            ParseError::UnterminatedQuote { at } => {
                write!(f, "unterminated quote in the word at byte {at}")
            }
        }
    }
}

/// A value that did not parse as the type asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadValue {
    /// The key.
    pub key: String,
    /// The value as given.
    pub value: String,
}

impl fmt::Display for BadValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad value for `{}`: `{}`", self.key, self.value)
    }
}

/// Parsed `key=value` arguments, in command-line order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Args {
    pairs: Vec<(String, String)>,
}

impl Args {
    /// Parses a command line.
    pub fn parse(line: &str) -> Result<Args, ParseError> {
        let bytes = line.as_bytes();
        let mut pairs = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i].is_ascii_whitespace() {
                i += 1;
                continue;
            }
            let start = i;
            while i < bytes.len() && !bytes[i].is_ascii_whitespace() && bytes[i] != b'=' {
                i += 1;
            }
            let key = &line[start..i];
            if key.is_empty() {
                return Err(ParseError::EmptyKey { at: start });
            }
            let mut value = String::new();
            if i < bytes.len() && bytes[i] == b'=' {
                i += 1;
                if i < bytes.len() && bytes[i] == b'"' {
                    let close = line[i + 1..]
                        .find('"')
                        .ok_or(ParseError::UnterminatedQuote { at: start })?;
                    value.push_str(&line[i + 1..i + 1 + close]);
                    i += close + 2;
                }
                let rest = i;
                while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
                    i += 1;
                }
                value.push_str(&line[rest..i]);
            }
            pairs.retain(|(k, _): &(String, String)| k != key);
            pairs.push((String::from(key), value));
        }
        Ok(Args { pairs })
    }

    /// The value of `key`, if present (empty for a bare flag).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether `key` is present, bare or with any value other than `0`, `false` or `off`.
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some(v) if !matches!(v, "0" | "false" | "off"))
    }

    /// The value of `key` parsed as `T`; `Ok(None)` when absent, an error when malformed.
    pub fn parse_value<T: FromStr>(&self, key: &str) -> Result<Option<T>, BadValue> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| BadValue {
                key: key.into(),
                value: v.into(),
            }),
        }
    }

    /// Every argument, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Number of arguments.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether there are no arguments.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn pairs_flags_and_quotes() {
        let args = Args::parse("  a=1 verbose motd=\"hello world\"  b= path=/x=y ").unwrap();
        assert_eq!(args.get("a"), Some("1"));
        assert_eq!(args.get("verbose"), Some(""));
        assert!(args.flag("verbose"));
        assert_eq!(args.get("motd"), Some("hello world"));
        assert_eq!(args.get("b"), Some(""));
        assert_eq!(args.get("path"), Some("/x=y"));
        assert_eq!(args.get("missing"), None);
        assert_eq!(args.len(), 5);
    }

    #[test]
    fn later_keys_override_and_keep_order() {
        let args = Args::parse("x=1 y=2 x=3").unwrap();
        let all: Vec<_> = args.iter().collect();
        assert_eq!(all, [("y", "2"), ("x", "3")]);
    }

    #[test]
    fn flag_values() {
        let args = Args::parse("a=0 b=false c=off d=1 e").unwrap();
        assert!(!args.flag("a") && !args.flag("b") && !args.flag("c") && !args.flag("zz"));
        assert!(args.flag("d") && args.flag("e"));
    }

    #[test]
    fn typed_values() {
        let args = Args::parse("n=42 bad=4x2").unwrap();
        assert_eq!(args.parse_value::<u32>("n"), Ok(Some(42)));
        assert_eq!(args.parse_value::<u32>("none"), Ok(None));
        let err = args.parse_value::<u32>("bad").unwrap_err();
        assert_eq!(err.to_string(), "bad value for `bad`: `4x2`");
    }

    #[test]
    fn errors() {
        assert_eq!(Args::parse("a=1 =2"), Err(ParseError::EmptyKey { at: 4 }));
        assert_eq!(
            Args::parse("m=\"open"),
            Err(ParseError::UnterminatedQuote { at: 0 })
        );
        assert!(Args::parse("").unwrap().is_empty());
    }
}
