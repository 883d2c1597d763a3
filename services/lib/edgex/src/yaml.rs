//! A YAML subset, enough for EdgeX's device profile and device files.
//!
//! Supported: block mappings and sequences (a sequence may sit at its key's indentation, an
//! item may start on the dash's line or below it), flow mappings and sequences (`{ a: 1 }`,
//! `[a, b]`, possibly spread over lines), plain, single- and double-quoted scalars, comments
//! and a leading `---`. Not supported, and reported as errors naming the line: tabs in
//! indentation, anchors, aliases, tags, block scalars (`|`, `>`), plain scalars folded over
//! several lines, multi-document files.
//!
//! The input is a file a user or vendor wrote: anything may be wrong with it. Every error
//! names the 1-based line it was found on; nothing panics and nesting depth is bounded.

use alloc::borrow::ToOwned;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// How deeply collections may nest (a guard against hostile input exhausting the stack).
const MAX_DEPTH: usize = 32;

/// A parse error: the line it was found on and what was wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    /// 1-based line number.
    pub line: usize,
    /// What was wrong.
    pub message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

fn err<T>(line: usize, message: impl Into<String>) -> Result<T, Error> {
    Err(Error {
        line,
        message: message.into(),
    })
}

/// A parsed value with the line it started on.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// 1-based line number where the value starts.
    pub line: usize,
    /// The value.
    pub value: Value,
}

/// A YAML value. Scalars stay text: the schema decides what they mean.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// Absent value (`~`, `null` or nothing).
    Null,
    /// A scalar; `quoted` when it was written in quotes (so `"1"` is not a number to a schema
    /// that cares).
    Scalar {
        /// The text, with escapes resolved.
        text: String,
        /// Whether it was quoted.
        quoted: bool,
    },
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in file order; keys are unique.
    Map(Vec<(String, Node)>),
}

impl Node {
    /// The value under `key` if this is a mapping that has it.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The scalar text, `None` for null and collections.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// Whether this is null.
    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }
}

/// One meaningful line: number, indentation and content without comment or trailing space.
#[derive(Clone, Debug)]
struct Line {
    number: usize,
    indent: usize,
    text: String,
}

/// Parses a whole document.
pub fn parse(input: &str) -> Result<Node, Error> {
    let lines = lines(input)?;
    if lines.is_empty() {
        return Ok(Node {
            line: 1,
            value: Value::Null,
        });
    }
    let mut parser = Parser { lines, at: 0 };
    let indent = parser.lines[0].indent;
    let node = parser.block(indent, 0)?;
    if let Some(line) = parser.lines.get(parser.at) {
        return err(line.number, "unexpected content (check the indentation)");
    }
    Ok(node)
}

/// Splits the input into meaningful lines.
fn lines(input: &str) -> Result<Vec<Line>, Error> {
    let mut out = Vec::new();
    for (i, raw) in input.lines().enumerate() {
        let number = i + 1;
        let indent = raw.len() - raw.trim_start_matches(' ').len();
        let rest = &raw[indent..];
        if rest.starts_with('\t') {
            return err(number, "tab in indentation");
        }
        let text = strip_comment(rest).trim_end();
        if text.is_empty() {
            continue;
        }
        if text == "---" || text.starts_with("--- ") {
            if !out.is_empty() {
                return err(number, "more than one document");
            }
            continue;
        }
        if text == "..." {
            break;
        }
        if text.starts_with('%') {
            return err(number, "directives are not supported");
        }
        out.push(Line {
            number,
            indent,
            text: text.to_owned(),
        });
    }
    Ok(out)
}

/// Removes a comment: `#` at the start or after a space, outside quotes.
fn strip_comment(text: &str) -> &str {
    let bytes = text.as_bytes();
    let mut quote = None;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match quote {
            Some(b'"') if c == b'\\' => i += 1,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == b'"' || c == b'\'' => quote = Some(c),
            None if c == b'#' && (i == 0 || bytes[i - 1] == b' ') => return &text[..i],
            None => {}
        }
        i += 1;
    }
    text
}

struct Parser {
    lines: Vec<Line>,
    at: usize,
}

impl Parser {
    /// Parses the block (mapping, sequence or lone scalar) at `lines[at]`, indented `indent`.
    fn block(&mut self, indent: usize, depth: usize) -> Result<Node, Error> {
        let line = self.lines[self.at].clone();
        if depth > MAX_DEPTH {
            return err(line.number, "nested too deeply");
        }
        if is_item(&line.text) {
            self.sequence(indent, depth)
        } else if split_key(&line.text, line.number)?.is_some() {
            self.mapping(indent, depth)
        } else {
            self.at += 1;
            self.inline(line.text.as_str(), line.number, depth)
        }
    }

    fn sequence(&mut self, indent: usize, depth: usize) -> Result<Node, Error> {
        let first = self.lines[self.at].number;
        let mut items = Vec::new();
        while let Some(line) = self.lines.get(self.at) {
            if line.indent < indent {
                break;
            }
            if line.indent > indent {
                return err(line.number, "unexpected indentation in a sequence");
            }
            if !is_item(&line.text) {
                break;
            }
            let number = line.number;
            let rest = line.text[1..].trim_start();
            if rest.is_empty() {
                self.at += 1;
                match self.lines.get(self.at) {
                    Some(next) if next.indent > indent => {
                        let next_indent = next.indent;
                        items.push(self.block(next_indent, depth + 1)?);
                    }
                    _ => items.push(Node {
                        line: number,
                        value: Value::Null,
                    }),
                }
            } else {
                // The item starts on the dash's line: reparse that line as if the dash were
                // spaces, so that a mapping may continue on the lines below it.
                let offset = line.text.len() - rest.len();
                let item_indent = indent + offset;
                let rest = rest.to_owned();
                let line = &mut self.lines[self.at];
                line.indent = item_indent;
                line.text = rest;
                items.push(self.block(item_indent, depth + 1)?);
            }
        }
        Ok(Node {
            line: first,
            value: Value::Seq(items),
        })
    }

    fn mapping(&mut self, indent: usize, depth: usize) -> Result<Node, Error> {
        let first = self.lines[self.at].number;
        let mut entries: Vec<(String, Node)> = Vec::new();
        while let Some(line) = self.lines.get(self.at) {
            if line.indent < indent {
                break;
            }
            let number = line.number;
            if line.indent > indent {
                return err(number, "unexpected indentation in a mapping");
            }
            if is_item(&line.text) {
                return err(number, "a sequence item where a mapping key was expected");
            }
            let Some((key, value)) = split_key(&line.text, number)? else {
                return err(number, "expected `key: value`");
            };
            if entries.iter().any(|(k, _)| *k == key) {
                return err(number, format!("duplicate key `{key}`"));
            }
            let value = value.to_owned();
            self.at += 1;
            let node = if value.is_empty() {
                match self.lines.get(self.at) {
                    Some(next)
                        if next.indent > indent
                            || (next.indent == indent && is_item(&next.text)) =>
                    {
                        let next_indent = next.indent;
                        self.block(next_indent, depth + 1)?
                    }
                    _ => Node {
                        line: number,
                        value: Value::Null,
                    },
                }
            } else {
                self.inline(&value, number, depth)?
            };
            entries.push((key, node));
        }
        Ok(Node {
            line: first,
            value: Value::Map(entries),
        })
    }

    /// Parses a value written on one line (a flow collection may continue on the next lines).
    fn inline(&mut self, text: &str, number: usize, depth: usize) -> Result<Node, Error> {
        let first = text.as_bytes()[0];
        match first {
            b'{' | b'[' => {
                let mut joined = String::from(text);
                while !balanced(&joined) {
                    let Some(next) = self.lines.get(self.at) else {
                        return err(number, "unterminated flow collection");
                    };
                    joined.push(' ');
                    joined.push_str(&next.text);
                    self.at += 1;
                }
                let mut flow = Flow {
                    text: joined.as_bytes(),
                    at: 0,
                    line: number,
                };
                let node = flow.value(depth)?;
                flow.skip_spaces();
                if flow.at != flow.text.len() {
                    return err(number, "unexpected text after a flow collection");
                }
                Ok(node)
            }
            b'&' | b'*' | b'!' => err(number, "anchors, aliases and tags are not supported"),
            b'|' | b'>' => err(number, "block scalars (`|`, `>`) are not supported"),
            b'"' | b'\'' => {
                let (value, used) = quoted(text.as_bytes(), number)?;
                if !text[used..].trim().is_empty() {
                    return err(number, "unexpected text after a quoted scalar");
                }
                let text = value;
                Ok(Node {
                    line: number,
                    value: Value::Scalar { text, quoted: true },
                })
            }
            _ => Ok(plain(text, number)),
        }
    }
}

fn is_item(text: &str) -> bool {
    text == "-" || text.starts_with("- ")
}

/// Splits `key: value` (or `key:`) outside quotes; `None` if the line has no such colon.
fn split_key(text: &str, number: usize) -> Result<Option<(String, &str)>, Error> {
    let bytes = text.as_bytes();
    if bytes[0] == b'"' || bytes[0] == b'\'' {
        let (key, used) = quoted(bytes, number)?;
        let rest = &text[used..];
        return match rest.strip_prefix(':') {
            Some(value) if value.is_empty() || value.starts_with(' ') => {
                Ok(Some((key, value.trim())))
            }
            _ => Ok(None),
        };
    }
    if matches!(bytes[0], b'{' | b'[') {
        return Ok(None);
    }
    for (i, &c) in bytes.iter().enumerate() {
        if c == b':' && (i + 1 == bytes.len() || bytes[i + 1] == b' ') {
            let key = text[..i].trim_end();
            if key.is_empty() {
                return err(number, "empty key");
            }
            return Ok(Some((key.to_owned(), text[i + 1..].trim())));
        }
    }
    Ok(None)
}

/// A plain scalar: `~`, `null` and nothing are null.
fn plain(text: &str, number: usize) -> Node {
    let text = text.trim();
    let value = if text.is_empty() || text == "~" || text == "null" || text == "Null" {
        Value::Null
    } else {
        Value::Scalar {
            text: text.to_owned(),
            quoted: false,
        }
    };
    Node {
        line: number,
        value,
    }
}

/// Whether every `{`/`[` outside quotes is closed.
fn balanced(text: &str) -> bool {
    let mut depth = 0i32;
    let mut quote = None;
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match quote {
            Some(b'"') if c == b'\\' => i += 1,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                b'"' | b'\'' => quote = Some(c),
                b'{' | b'[' => depth += 1,
                b'}' | b']' => depth -= 1,
                _ => {}
            },
        }
        i += 1;
    }
    depth <= 0 && quote.is_none()
}

/// Parses a quoted scalar at the start of `text`: its value and the bytes it used.
fn quoted(text: &[u8], number: usize) -> Result<(String, usize), Error> {
    let q = text[0];
    let mut out = Vec::new();
    let mut i = 1;
    while i < text.len() {
        let c = text[i];
        if q == b'\'' && c == b'\'' {
            if text.get(i + 1) == Some(&b'\'') {
                out.push(b'\'');
                i += 2;
                continue;
            }
            return finish(out, i + 1, number);
        }
        if q == b'"' && c == b'"' {
            return finish(out, i + 1, number);
        }
        if q == b'"' && c == b'\\' {
            let Some(&e) = text.get(i + 1) else { break };
            i += 2;
            match e {
                b'"' | b'\\' | b'/' => out.push(e),
                b'n' => out.push(b'\n'),
                b't' => out.push(b'\t'),
                b'r' => out.push(b'\r'),
                b'0' => out.push(0),
                b'u' => {
                    let hex = text
                        .get(i..i + 4)
                        .and_then(|h| core::str::from_utf8(h).ok())
                        .and_then(|h| u32::from_str_radix(h, 16).ok())
                        .and_then(char::from_u32);
                    let Some(ch) = hex else {
                        return err(number, "bad \\u escape");
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                    i += 4;
                }
                _ => return err(number, format!("unknown escape `\\{}`", e as char)),
            }
            continue;
        }
        out.push(c);
        i += 1;
    }
    err(number, "unterminated quoted scalar")
}

fn finish(out: Vec<u8>, used: usize, number: usize) -> Result<(String, usize), Error> {
    match String::from_utf8(out) {
        Ok(s) => Ok((s, used)),
        Err(_) => err(number, "invalid UTF-8 in a quoted scalar"),
    }
}

/// A flow collection being parsed.
struct Flow<'a> {
    text: &'a [u8],
    at: usize,
    line: usize,
}

impl Flow<'_> {
    fn skip_spaces(&mut self) {
        while self.text.get(self.at) == Some(&b' ') {
            self.at += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Result<Node, Error> {
        if depth > MAX_DEPTH {
            return err(self.line, "nested too deeply");
        }
        self.skip_spaces();
        match self.text.get(self.at) {
            Some(b'{') => self.collection(b'}', depth),
            Some(b'[') => self.collection(b']', depth),
            Some(b'"' | b'\'') => {
                let (text, used) = quoted(&self.text[self.at..], self.line)?;
                self.at += used;
                Ok(Node {
                    line: self.line,
                    value: Value::Scalar { text, quoted: true },
                })
            }
            Some(_) => {
                let start = self.at;
                while let Some(&c) = self.text.get(self.at) {
                    if matches!(c, b',' | b'}' | b']') {
                        break;
                    }
                    self.at += 1;
                }
                let text = core::str::from_utf8(&self.text[start..self.at]).unwrap_or("");
                Ok(plain(text, self.line))
            }
            None => err(self.line, "unterminated flow collection"),
        }
    }

    /// A key inside a flow mapping: quoted, or plain up to `:`.
    fn key(&mut self) -> Result<String, Error> {
        self.skip_spaces();
        if matches!(self.text.get(self.at), Some(b'"' | b'\'')) {
            let (key, used) = quoted(&self.text[self.at..], self.line)?;
            self.at += used;
            return Ok(key);
        }
        let start = self.at;
        while let Some(&c) = self.text.get(self.at) {
            if c == b':' || matches!(c, b',' | b'}' | b']' | b'{' | b'[') {
                break;
            }
            self.at += 1;
        }
        let key = core::str::from_utf8(&self.text[start..self.at])
            .unwrap_or("")
            .trim();
        if key.is_empty() {
            return err(self.line, "empty key in a flow mapping");
        }
        Ok(key.to_owned())
    }

    fn collection(&mut self, close: u8, depth: usize) -> Result<Node, Error> {
        self.at += 1; // the opening bracket
        let mut items = Vec::new();
        let mut entries: Vec<(String, Node)> = Vec::new();
        loop {
            self.skip_spaces();
            match self.text.get(self.at) {
                Some(&c) if c == close => {
                    self.at += 1;
                    break;
                }
                None => return err(self.line, "unterminated flow collection"),
                _ => {}
            }
            if close == b'}' {
                let key = self.key()?;
                self.skip_spaces();
                if self.text.get(self.at) != Some(&b':') {
                    return err(self.line, format!("expected `:` after `{key}`"));
                }
                self.at += 1;
                if entries.iter().any(|(k, _)| *k == key) {
                    return err(self.line, format!("duplicate key `{key}`"));
                }
                let value = self.value(depth + 1)?;
                entries.push((key, value));
            } else {
                items.push(self.value(depth + 1)?);
            }
            self.skip_spaces();
            match self.text.get(self.at) {
                Some(b',') => self.at += 1,
                Some(&c) if c == close => {}
                Some(&c) => {
                    return err(
                        self.line,
                        format!("expected `,` or `{}`, found `{}`", close as char, c as char),
                    )
                }
                None => return err(self.line, "unterminated flow collection"),
            }
        }
        let value = if close == b'}' {
            Value::Map(entries)
        } else {
            Value::Seq(items)
        };
        Ok(Node {
            line: self.line,
            value,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(node: &Node) -> &str {
        node.as_str().unwrap()
    }

    #[test]
    fn mappings_sequences_and_flow() {
        let doc = parse(
            "---\n# comment\nname: \"Simple\"  # trailing\nlabels:\n- a\n- 'b''c'\nres:\n  -\n    name: x\n    attributes:\n      { primaryTable: \"COILS\", startingAddress: 0 }\n  - name: y\n    list: [1, \"two\", [3]]\n    nested: {a: {b: c}}\nempty:\nnull: ~\n",
        )
        .unwrap();
        assert_eq!(s(doc.get("name").unwrap()), "Simple");
        let Value::Seq(labels) = &doc.get("labels").unwrap().value else {
            panic!()
        };
        assert_eq!(s(&labels[1]), "b'c");
        let Value::Seq(res) = &doc.get("res").unwrap().value else {
            panic!()
        };
        assert_eq!(res.len(), 2);
        let attrs = res[0].get("attributes").unwrap();
        assert_eq!(s(attrs.get("primaryTable").unwrap()), "COILS");
        assert_eq!(attrs.line, 11);
        assert_eq!(s(res[1].get("name").unwrap()), "y");
        let Value::Seq(list) = &res[1].get("list").unwrap().value else {
            panic!()
        };
        assert_eq!(list.len(), 3);
        assert_eq!(
            s(res[1]
                .get("nested")
                .unwrap()
                .get("a")
                .unwrap()
                .get("b")
                .unwrap()),
            "c"
        );
        assert!(doc.get("empty").unwrap().is_null());
        assert!(doc.get("null").unwrap().is_null());
    }

    #[test]
    fn multi_line_flow_and_escapes() {
        let doc = parse("a: { x: 1,\n  y: \"q\\\"\\u00e9\" }\nb: \"# not a comment\"\n").unwrap();
        assert_eq!(s(doc.get("a").unwrap().get("y").unwrap()), "q\"é");
        assert_eq!(s(doc.get("b").unwrap()), "# not a comment");
    }

    #[test]
    fn errors_name_the_line() {
        let cases: &[(&str, usize, &str)] = &[
            ("a: 1\n\tb: 2\n", 2, "tab"),
            ("a: 1\n   b: 2\n", 2, "indentation"),
            ("a: 1\na: 2\n", 2, "duplicate"),
            ("a:\n  - x\n  y: 1\n", 3, "indentation"),
            ("a: \"open\n", 1, "unterminated"),
            ("a: {x: 1\nb: 2\n", 1, "flow"),
            ("a: &anchor 1\n", 1, "anchors"),
            ("a: |\n  text\n", 1, "block scalars"),
            ("a: [1 2 x}\n", 1, "expected"),
            ("x: 1\n---\ny: 2\n", 2, "document"),
            ("a: \"\\q\"\n", 1, "escape"),
            ("a: \"x\" y\n", 1, "after a quoted"),
        ];
        for (text, line, what) in cases {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, *line, "{text:?}: {e}");
            assert!(e.message.contains(what), "{text:?}: {e}");
        }
    }

    #[test]
    fn deep_nesting_is_refused() {
        let text = alloc::format!("a: {}{}\n", "[".repeat(100), "]".repeat(100));
        assert!(parse(&text).unwrap_err().message.contains("deeply"));
        let mut text = String::new();
        for i in 0..100 {
            text.push_str(&" ".repeat(i));
            text.push_str("k:\n");
        }
        assert!(parse(&text).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut seed = 0x1234_5678u32;
        let alphabet = b" -:{}[],'\"#\n\tab1|&";
        for _ in 0..3000 {
            let mut text = String::new();
            for _ in 0..(seed % 60) {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                text.push(alphabet[seed as usize % alphabet.len()] as char);
            }
            let _ = parse(&text);
        }
    }
}
