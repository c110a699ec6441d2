//! Plain paths (`.`, `.user`, `.a.b`) picked straight out of a record's JSON bytes,
//! without building a jaq value for the whole record.
//!
//! [`pick`] is a fast path that is allowed to give up: it answers only when it is sure
//! to agree with [`parse_value`] followed by the path's jq filter. It validates the
//! whole document as strict JSON (UTF-8, syntax, nesting at most [`MAX_JSON_DEPTH`]),
//! which jaq's reader also accepts, and gives up (`None`) on anything else: invalid or
//! too deep documents, jaq's extensions (comments, `NaN`, `+1`, `007`, byte strings),
//! surrogate escapes (jaq refuses lone ones), and a path that jq would fail on (indexing a number, a string or an array). The
//! caller then takes the general path, which gives the record's value or error as
//! before. Picked values are the raw JSON text of the value, which jaq parses to the
//! same value as the corresponding part of the whole document.

use std::borrow::Cow;

use super::{ExprError, MAX_JSON_DEPTH, Val, key_bytes, val_to_json};

/// A jq filter that is a chain of field names: `.` (no fields), `.user`, `.a.b`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlainPath {
    fields: Vec<Box<[u8]>>,
}

impl PlainPath {
    /// The plain path a jq source stands for, or `None` when it is anything else.
    /// Fields are jq identifiers (`[A-Za-z_][A-Za-z0-9_]*`) with no space between.
    pub fn parse(source: &str) -> Option<PlainPath> {
        let s = source.trim();
        if s == "." {
            return Some(PlainPath { fields: Vec::new() });
        }
        let mut fields = Vec::new();
        for part in s.strip_prefix('.')?.split('.') {
            let mut chars = part.chars();
            let first = chars.next()?;
            if !(first.is_ascii_alphabetic() || first == '_')
                || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return None;
            }
            fields.push(part.as_bytes().into());
        }
        Some(PlainPath { fields })
    }

    /// The field names, outermost first.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.fields
            .iter()
            .map(|f| std::str::from_utf8(f).unwrap_or_default())
    }
}

/// What a plain path picked from a document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Picked<'a> {
    /// A field on the way was missing or null: jq gives `null`.
    Null,
    /// The raw JSON text of the value (no surrounding whitespace).
    Json(&'a [u8]),
}

impl<'a> Picked<'a> {
    /// The text of a string value that has no escapes, without its quotes.
    fn plain_str(&self) -> Option<&'a [u8]> {
        match self {
            Picked::Json([b'"', inner @ .., b'"']) if !inner.contains(&b'\\') => Some(inner),
            _ => None,
        }
    }

    /// The jaq value (what the path's jq filter gives on the parsed document).
    pub fn to_val(&self) -> Result<Val, ExprError> {
        match self {
            Picked::Null => Ok(Val::Null),
            Picked::Json(text) => {
                jaq_json::read::parse_single(text).map_err(|e| super::not_json(text, &e))
            }
        }
    }

    /// [`key_bytes`] of the value: a string's own bytes (borrowed when it has no
    /// escapes), any other value's compact JSON.
    pub fn key(&self) -> Result<Cow<'a, [u8]>, ExprError> {
        match self.plain_str() {
            Some(s) => Ok(Cow::Borrowed(s)),
            None => Ok(Cow::Owned(key_bytes(&self.to_val()?))),
        }
    }

    /// [`val_to_json`] of the value.
    pub fn to_json(&self) -> Result<serde_json::Value, ExprError> {
        match self.plain_str().map(std::str::from_utf8) {
            Some(Ok(s)) => Ok(serde_json::Value::String(s.to_owned())),
            _ => val_to_json(&self.to_val()?),
        }
    }
}

/// What a path has found so far while the document is scanned.
#[derive(Clone, Copy)]
enum Found {
    Null,
    Span(usize, usize),
    /// jq would fail (index a value that is neither an object nor null).
    Fails,
}

/// Validates `json` and picks every path's value, or `None` when the general path
/// must decide (see the module documentation). At most 64 paths.
pub fn pick<'a, const N: usize>(json: &'a [u8], paths: [&PlainPath; N]) -> Option<[Picked<'a>; N]> {
    const { assert!(N <= 64) };
    std::str::from_utf8(json).ok()?;
    let mut s = Scanner {
        b: json,
        i: 0,
        paths: &paths,
        found: [Found::Null; N],
    };
    s.ws();
    let start = s.i;
    let first = s.peek()?;
    let mut nested = 0u64;
    for (t, p) in paths.iter().enumerate() {
        if !p.fields.is_empty() {
            nested |= 1 << t;
            s.found[t] = Scanner::<N>::entered(first);
        }
    }
    s.value(0, nested)?;
    let end = s.i;
    s.ws();
    if s.i != json.len() {
        return None;
    }
    let mut out = [Picked::Null; N];
    for (t, p) in paths.iter().enumerate() {
        out[t] = if p.fields.is_empty() {
            Picked::Json(&json[start..end])
        } else {
            match s.found[t] {
                Found::Null => Picked::Null,
                Found::Span(a, b) => Picked::Json(&json[a..b]),
                Found::Fails => return None,
            }
        };
    }
    Some(out)
}

/// Whether the inside of a JSON string with escapes (already checked by the scanner,
/// so every escape is complete and no surrogate) spells `want`.
fn unescaped_eq(raw: &[u8], want: &[u8]) -> bool {
    let (mut i, mut j) = (0, 0);
    let mut buf = [0u8; 4];
    while let Some(&c) = raw.get(i) {
        let ch = if c == b'\\' {
            let e = raw.get(i + 1).copied().unwrap_or_default();
            i += 2;
            match e {
                b'b' => '\u{8}',
                b'f' => '\u{c}',
                b'n' => '\n',
                b'r' => '\r',
                b't' => '\t',
                b'u' => {
                    let hex = raw.get(i..i + 4).and_then(|h| std::str::from_utf8(h).ok());
                    i += 4;
                    match hex
                        .and_then(|h| u32::from_str_radix(h, 16).ok())
                        .and_then(char::from_u32)
                    {
                        Some(ch) => ch,
                        None => return false,
                    }
                }
                other => char::from(other),
            }
        } else {
            i += 1;
            if want.get(j) != Some(&c) {
                return false;
            }
            j += 1;
            continue;
        };
        let enc = ch.encode_utf8(&mut buf).as_bytes();
        if !want.get(j..).is_some_and(|w| w.starts_with(enc)) {
            return false;
        }
        j += enc.len();
    }
    j == want.len()
}

/// A strict JSON scanner that records where the paths' values are.
struct Scanner<'a, 'p, const N: usize> {
    b: &'a [u8],
    i: usize,
    paths: &'p [&'p PlainPath; N],
    found: [Found; N],
}

impl<const N: usize> Scanner<'_, '_, N> {
    /// What indexing a value that starts with `first` gives before its fields are seen.
    fn entered(first: u8) -> Found {
        match first {
            b'{' | b'n' => Found::Null,
            _ => Found::Fails,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    /// A value at nesting `depth`; `on` holds the paths that have matched every field
    /// down to here (only ever non-zero at objects reached through objects).
    fn value(&mut self, depth: usize, on: u64) -> Option<()> {
        match self.peek()? {
            b'{' => self.object(depth + 1, on),
            b'[' => self.array(depth + 1),
            b'"' => self.string().map(|_| ()),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        self.b.get(self.i..)?.starts_with(word).then(|| {
            self.i += word.len();
        })
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    fn number(&mut self) -> Option<()> {
        let _ = self.eat(b'-');
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => self.digits()?,
            _ => return None,
        }
        if self.eat(b'.').is_some() {
            self.digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            self.digits()?;
        }
        Some(())
    }

    fn digits(&mut self) -> Option<()> {
        let start = self.i;
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
        (self.i > start).then_some(())
    }

    /// A string; returns whether it has escapes. No raw control characters, and no
    /// surrogate escapes at all (jaq refuses lone ones; pairs are rare enough to leave
    /// to the general path).
    fn string(&mut self) -> Option<bool> {
        self.eat(b'"')?;
        let mut escaped = false;
        loop {
            self.skip_plain();
            let c = self.peek()?;
            self.i += 1;
            match c {
                b'"' => return Some(escaped),
                b'\\' => {
                    escaped = true;
                    let e = self.peek()?;
                    self.i += 1;
                    match e {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                        b'u' => {
                            let hex = self.b.get(self.i..self.i + 4)?;
                            let hex = std::str::from_utf8(hex).ok()?;
                            let u = u16::from_str_radix(hex, 16).ok()?;
                            if !hex.bytes().all(|h| h.is_ascii_hexdigit())
                                || (0xD800..=0xDFFF).contains(&u)
                            {
                                return None;
                            }
                            self.i += 4;
                        }
                        _ => return None,
                    }
                }
                0..=0x1f => return None,
                _ => {}
            }
        }
    }

    /// Enters an array or object at nesting `depth`; true when it closes at once.
    fn open(&mut self, depth: usize, close: u8) -> Option<bool> {
        if depth > MAX_JSON_DEPTH {
            return None;
        }
        self.i += 1;
        self.ws();
        Some(self.eat(close).is_some())
    }

    /// After an element: true at the closing bracket, false after a comma.
    fn closes(&mut self, close: u8) -> Option<bool> {
        self.ws();
        let c = self.peek()?;
        self.i += 1;
        match c {
            b',' => {
                self.ws();
                Some(false)
            }
            _ if c == close => Some(true),
            _ => None,
        }
    }

    /// Skips string bytes that need no look, eight at a time: stops at the first `"`,
    /// `\` or control character (or eight bytes before the end of the document).
    fn skip_plain(&mut self) {
        const ONES: u64 = u64::from_le_bytes([1; 8]);
        const HIGH: u64 = ONES << 7;
        // The high bit of each byte of `w` below `n` (n <= 0x80). A borrow can also
        // flag a byte above a flagged one, so only the lowest flag is exact.
        let below = |w: u64, n: u8| w.wrapping_sub(ONES * u64::from(n)) & !w & HIGH;
        while let Some(chunk) = self.b.get(self.i..self.i + 8) {
            let w = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
            let special = below(w ^ (ONES * u64::from(b'"')), 1)
                | below(w ^ (ONES * u64::from(b'\\')), 1)
                | below(w, 0x20);
            if special != 0 {
                self.i += (special.trailing_zeros() / 8) as usize;
                return;
            }
            self.i += 8;
        }
    }

    fn array(&mut self, depth: usize) -> Option<()> {
        if self.open(depth, b']')? {
            return Some(());
        }
        loop {
            self.value(depth, 0)?;
            if self.closes(b']')? {
                return Some(());
            }
        }
    }

    /// An object at nesting `depth`: the paths in `on` have matched `depth - 1` fields.
    fn object(&mut self, depth: usize, on: u64) -> Option<()> {
        if self.open(depth, b'}')? {
            return Some(());
        }
        let level = depth - 1;
        loop {
            let key_start = self.i + 1;
            let escaped = self.string()?;
            let key = &self.b[key_start..self.i - 1];
            // Which paths this member continues (`deeper`) or ends (`here`).
            let (mut deeper, mut here) = (0u64, 0u64);
            if on != 0 {
                let is = |f: &[u8]| match escaped {
                    false => f == key,
                    true => unescaped_eq(key, f),
                };
                for (t, p) in self.paths.iter().enumerate() {
                    if on & (1 << t) != 0 && p.fields.get(level).is_some_and(|f| is(f)) {
                        if p.fields.len() == level + 1 {
                            here |= 1 << t;
                        } else {
                            deeper |= 1 << t;
                        }
                    }
                }
            }
            self.ws();
            self.eat(b':')?;
            self.ws();
            let start = self.i;
            if deeper != 0 {
                // A later member with the same name replaces this one, as in jaq's
                // objects: what is found below starts over.
                let entered = Self::entered(self.peek()?);
                for t in 0..N {
                    if deeper & (1 << t) != 0 {
                        self.found[t] = entered;
                    }
                }
            }
            self.value(depth, deeper)?;
            for t in 0..N {
                if here & (1 << t) != 0 {
                    self.found[t] = Found::Span(start, self.i);
                }
            }
            if self.closes(b'}')? {
                return Some(());
            }
        }
    }
}

#[cfg(test)]
mod tests;
