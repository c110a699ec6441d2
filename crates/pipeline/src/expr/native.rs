//! Map expressions in a small subset of jq, evaluated without jaq's interpreter.
//!
//! jaq builds a boxed iterator and a value per step; for the map of a word count
//! (`ascii_downcase | scan("[a-z0-9]+") | {word: .}`) that is ~4 µs per word, most of
//! it `scan`'s match objects (offset, length, string, captures) that the expression
//! throws away. An expression within the grammar below is compiled to a few steps run
//! directly on the record's bytes, and writes its outputs as JSON bytes.
//!
//! The grammar is a pipe (`|`) of terms:
//! - `.` and plain paths (`.a.b`), on the record or on a value;
//! - literals: numbers, strings without escapes, `true`, `false`, `null`;
//! - `ascii_downcase`, `ascii_upcase`;
//! - `scan("re")` for a pattern without capture groups;
//! - as the last term only, object construction `{a: pipe, "b": pipe, c}` whose
//!   values give exactly one output each.
//!
//! The result is exactly jaq's: the same outputs, byte for byte. Whenever a record
//! takes the evaluation anywhere it cannot follow with certainty — a path into a
//! string, `ascii_downcase` on a number, text that is not UTF-8, an object value with
//! no or several outputs — it gives up ([`NativeMap::run`] returns `None`) and the
//! caller runs jaq on that record, which produces the outputs or the error jq would.

use std::borrow::Cow;

use regex_bites::bytes::Regex;

use super::{Format, PlainPath, Val, pick, to_json_bytes};

/// A map expression compiled to native steps.
#[derive(Debug)]
pub struct NativeMap {
    steps: Vec<Step>,
}

#[derive(Debug)]
enum Step {
    Identity,
    Path(PlainPath),
    Literal(Val),
    Downcase,
    Upcase,
    Scan(Scan),
    /// Fields: the key's JSON (with quotes) and the value's steps.
    Object(Vec<(Vec<u8>, Vec<Step>)>),
}

/// How `scan` finds its matches.
#[derive(Debug)]
enum Scan {
    /// `[class]+`: maximal runs of bytes in the class (for an ASCII class, runs of
    /// whole characters: bytes of a multi-byte character are all ≥ 0x80, and are in
    /// the class exactly when it is negated).
    Runs(Box<[bool; 256]>),
    Regex(Regex),
}

/// A value between steps.
enum V<'a> {
    /// The record itself, in `Format::Json`: picked from, never parsed whole.
    Record(&'a [u8]),
    Str(Cow<'a, str>),
    Json(Val),
    /// A constructed object's JSON.
    Written(&'a [u8]),
}

impl V<'_> {
    fn reborrow(&self) -> V<'_> {
        match self {
            V::Record(b) => V::Record(b),
            V::Str(s) => V::Str(Cow::Borrowed(s)),
            V::Json(v) => V::Json(v.clone()),
            V::Written(w) => V::Written(w),
        }
    }

    /// The value as a string, if it is one and is valid UTF-8.
    fn as_str(&self) -> Option<&str> {
        match self {
            V::Str(s) => Some(s),
            V::Json(Val::TStr(b)) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// Appends the value's JSON as jaq writes it; `None` for the record itself
    /// (its JSON is jaq's re-encoding, not its bytes).
    fn write(&self, out: &mut Vec<u8>) -> Option<()> {
        match self {
            V::Record(_) => return None,
            V::Str(s) => write_str(out, s),
            V::Json(v) => out.extend_from_slice(&to_json_bytes(v)),
            V::Written(w) => out.extend_from_slice(w),
        }
        Some(())
    }
}

/// A string as jaq's JSON writer writes it (same escapes).
fn write_str(out: &mut Vec<u8>, s: &str) {
    use std::io::Write;
    let bytes = s.as_bytes();
    // Most strings need no escape: copied as they are.
    if !bytes
        .iter()
        .any(|&c| c < 0x20 || c == b'"' || c == b'\\' || c == 0x7f)
    {
        out.reserve(bytes.len() + 2);
        out.push(b'"');
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let w = &mut *out;
    let written: std::io::Result<()> =
        (|| jaq_json::write_utf8!(w, bytes, |part: &[u8]| w.write_all(part)))();
    // Writing into a Vec cannot fail.
    let _ = written;
}

impl NativeMap {
    /// The native form of `source`, when it is within the grammar.
    pub fn compile(source: &str) -> Option<NativeMap> {
        let mut p = Parser {
            s: source.as_bytes(),
            i: 0,
        };
        let steps = p.pipe(true)?;
        p.ws();
        if p.i != p.s.len() {
            return None;
        }
        Some(NativeMap { steps })
    }

    /// Runs the expression on a record value, calling `out` with each output's JSON.
    /// `None`: this record needs jaq (see the module documentation); outputs already
    /// given must then be discarded.
    pub fn run(&self, value: &[u8], format: Format, out: &mut dyn FnMut(&[u8])) -> Option<()> {
        let input = match format {
            Format::Json => V::Record(value),
            Format::Text => V::Str(Cow::Borrowed(std::str::from_utf8(value).ok()?)),
        };
        let mut buf = Vec::new();
        let mut obj = Vec::new();
        eval(&self.steps, input, &mut obj, &mut |v| {
            if let V::Written(w) = v {
                out(w);
                return Some(());
            }
            buf.clear();
            v.write(&mut buf)?;
            out(&buf);
            Some(())
        })
    }
}

/// Runs `steps` on `v`. `obj` is where an object (always the last step) is built.
fn eval(
    steps: &[Step],
    v: V<'_>,
    obj: &mut Vec<u8>,
    out: &mut dyn FnMut(V<'_>) -> Option<()>,
) -> Option<()> {
    let Some((step, rest)) = steps.split_first() else {
        return out(v);
    };
    match step {
        Step::Identity => eval(rest, v, obj, out),
        Step::Path(p) => eval(rest, V::Json(path(p, &v)?), obj, out),
        Step::Literal(l) => eval(rest, V::Json(l.clone()), obj, out),
        Step::Downcase => eval(
            rest,
            V::Str(Cow::Owned(v.as_str()?.to_ascii_lowercase())),
            obj,
            out,
        ),
        Step::Upcase => eval(
            rest,
            V::Str(Cow::Owned(v.as_str()?.to_ascii_uppercase())),
            obj,
            out,
        ),
        Step::Scan(scan) => {
            let s = v.as_str()?;
            match scan {
                Scan::Runs(class) => {
                    let b = s.as_bytes();
                    let mut i = 0;
                    while i < b.len() {
                        if !class[usize::from(b[i])] {
                            i += 1;
                            continue;
                        }
                        let start = i;
                        while i < b.len() && class[usize::from(b[i])] {
                            i += 1;
                        }
                        // Runs start and end at character boundaries (see `Scan::Runs`).
                        eval(rest, V::Str(Cow::Borrowed(s.get(start..i)?)), obj, out)?;
                    }
                    Some(())
                }
                Scan::Regex(re) => {
                    for m in re.find_iter(s.as_bytes()) {
                        let found = s.get(m.start()..m.end())?;
                        eval(rest, V::Str(Cow::Borrowed(found)), obj, out)?;
                    }
                    Some(())
                }
            }
        }
        Step::Object(fields) => {
            obj.clear();
            obj.push(b'{');
            for (n, (key, value)) in fields.iter().enumerate() {
                if n > 0 {
                    obj.push(b',');
                }
                obj.extend_from_slice(key);
                obj.push(b':');
                // Exactly one output, or jaq decides (none drops the object, several
                // make one object each).
                let mut outputs = 0;
                // Field values hold no objects: the buffer below stays unused.
                eval(value, v.reborrow(), &mut Vec::new(), &mut |x| {
                    outputs += 1;
                    if outputs > 1 {
                        return None;
                    }
                    x.write(obj)
                })?;
                if outputs != 1 {
                    return None;
                }
            }
            obj.push(b'}');
            out(V::Written(obj))
        }
    }
}

/// A plain path on a value, as jq gives it: `null` through missing fields and nulls.
fn path(p: &PlainPath, v: &V<'_>) -> Option<Val> {
    match v {
        V::Record(json) => pick(json, [p])?[0].to_val().ok(),
        V::Json(val) => {
            let mut cur = val.clone();
            for f in p.fields() {
                cur = match &cur {
                    Val::Null => Val::Null,
                    Val::Obj(m) => m
                        .get(&Val::from(f.to_string()))
                        .cloned()
                        .unwrap_or(Val::Null),
                    // Indexing anything else is an error: jaq reports it.
                    _ => return None,
                };
            }
            Some(cur)
        }
        V::Str(_) | V::Written(_) => None,
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.i).copied()
    }

    fn ident(&mut self) -> Option<&str> {
        self.ws();
        let start = self.i;
        while self.i < self.s.len()
            && (self.s[self.i].is_ascii_alphanumeric() || self.s[self.i] == b'_')
        {
            self.i += 1;
        }
        let id = std::str::from_utf8(&self.s[start..self.i]).ok()?;
        match id.as_bytes().first() {
            Some(c) if c.is_ascii_alphabetic() || *c == b'_' => Some(id),
            _ => {
                self.i = start;
                None
            }
        }
    }

    /// A string literal without escapes, its text.
    fn string(&mut self) -> Option<String> {
        if !self.eat(b'"') {
            return None;
        }
        let start = self.i;
        while self.i < self.s.len() && self.s[self.i] != b'"' {
            if self.s[self.i] == b'\\' || self.s[self.i] < 0x20 {
                return None;
            }
            self.i += 1;
        }
        let text = std::str::from_utf8(&self.s[start..self.i])
            .ok()?
            .to_string();
        self.eat(b'"').then_some(text)
    }

    /// Terms joined by `|`. An object may only be the last term of the top pipe.
    fn pipe(&mut self, top: bool) -> Option<Vec<Step>> {
        let mut steps = vec![self.term(top)?];
        while self.eat(b'|') {
            if matches!(steps.last(), Some(Step::Object(_))) {
                return None;
            }
            steps.push(self.term(top)?);
        }
        Some(steps)
    }

    fn term(&mut self, objects: bool) -> Option<Step> {
        match self.peek()? {
            b'.' => {
                // `.` or a plain path; whatever follows it (`[`, `?`, `"`) is left
                // unparsed, so the expression does not qualify.
                let start = self.i;
                self.i += 1;
                while self.i < self.s.len()
                    && (self.s[self.i].is_ascii_alphanumeric()
                        || matches!(self.s[self.i], b'_' | b'.'))
                {
                    self.i += 1;
                }
                let text = std::str::from_utf8(&self.s[start..self.i]).ok()?;
                if text == "." {
                    return Some(Step::Identity);
                }
                Some(Step::Path(PlainPath::parse(text)?))
            }
            b'"' => {
                let text = self.string()?;
                Some(Step::Literal(Val::from(text)))
            }
            b'{' if objects => {
                self.i += 1;
                let mut fields: Vec<(Vec<u8>, Vec<Step>)> = Vec::new();
                loop {
                    let (name, shorthand) = if self.peek()? == b'"' {
                        (self.string()?, false)
                    } else {
                        let id = self.ident()?.to_string();
                        (id, true)
                    };
                    // `{a}` is `{a: .a}`.
                    let value = if self.eat(b':') {
                        self.pipe(false)?
                    } else if shorthand {
                        vec![Step::Path(PlainPath::parse(&format!(".{name}"))?)]
                    } else {
                        return None;
                    };
                    let mut key = Vec::new();
                    write_str(&mut key, &name);
                    // A repeated key: jaq keeps the last value at the first position.
                    if fields.iter().any(|(k, _)| *k == key) {
                        return None;
                    }
                    fields.push((key, value));
                    if self.eat(b'}') {
                        break;
                    }
                    if !self.eat(b',') {
                        return None;
                    }
                }
                Some(Step::Object(fields))
            }
            c if c.is_ascii_digit() => {
                let start = self.i;
                while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
                    self.i += 1;
                }
                // Integers only: jaq's formatting of other numbers is its own.
                if matches!(self.s.get(self.i), Some(b'.' | b'e' | b'E')) {
                    return None;
                }
                let n: i64 = std::str::from_utf8(&self.s[start..self.i])
                    .ok()?
                    .parse()
                    .ok()?;
                if n > (1 << 53) {
                    return None;
                }
                Some(Step::Literal(Val::from(isize::try_from(n).ok()?)))
            }
            _ => {
                let id = self.ident()?;
                match id {
                    "true" => Some(Step::Literal(Val::from(true))),
                    "false" => Some(Step::Literal(Val::from(false))),
                    "null" => Some(Step::Literal(Val::Null)),
                    "ascii_downcase" => Some(Step::Downcase),
                    "ascii_upcase" => Some(Step::Upcase),
                    "scan" => {
                        if !self.eat(b'(') {
                            return None;
                        }
                        let re = self.string()?;
                        if !self.eat(b')') {
                            return None;
                        }
                        Some(Step::Scan(scan(&re)?))
                    }
                    _ => None,
                }
            }
        }
    }
}

/// How to find `scan(re)`'s matches, for a pattern without capture groups.
fn scan(re: &str) -> Option<Scan> {
    if let Some(class) = runs(re) {
        return Some(Scan::Runs(class));
    }
    let regex = Regex::new(re).ok()?;
    // With groups, each output is the array of captures.
    (regex.captures_len() == 1).then_some(Scan::Regex(regex))
}

/// `[…]+` or `[^…]+` with only ASCII letters, digits and `_` (single or as ranges
/// `a-z`) inside: the class's byte table.
fn runs(re: &str) -> Option<Box<[bool; 256]>> {
    let inner = re.strip_prefix('[')?.strip_suffix("]+")?;
    let (negated, items) = match inner.strip_prefix('^') {
        Some(rest) => (true, rest.as_bytes()),
        None => (false, inner.as_bytes()),
    };
    let plain = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    if items.is_empty() {
        return None;
    }
    let mut class = Box::new([negated; 256]);
    let mut i = 0;
    while i < items.len() {
        let lo = items[i];
        if !plain(lo) {
            return None;
        }
        let hi = if items.get(i + 1) == Some(&b'-') {
            let hi = *items.get(i + 2)?;
            if !plain(hi) || hi < lo {
                return None;
            }
            i += 3;
            hi
        } else {
            i += 1;
            lo
        };
        for c in lo..=hi {
            class[usize::from(c)] = !negated;
        }
    }
    Some(class)
}

#[cfg(test)]
mod tests;
