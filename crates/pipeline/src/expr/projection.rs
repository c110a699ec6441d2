//! Expressions that read their input only through plain paths (`.region == "eu"`,
//! `.n % 2 == 0`, `.total >= 100 and .paid`) are evaluated on a projection of the
//! record: an object holding just those paths' values, picked from the record's bytes
//! ([`pick`]) instead of parsing the whole record into a jq value.
//!
//! Which expressions qualify is decided on their source by a small grammar: plain paths,
//! literals (numbers, strings without escapes, `true`, `false`, `null`), the arithmetic,
//! comparison and boolean operators, and parentheses. Nothing else reads the input, so
//! the expression gives on the projection exactly what it gives on the whole record,
//! errors included. Anything outside the grammar (functions, variables, pipes,
//! `.` alone, indexing, string escapes) is evaluated on the whole record, and so is a
//! record the pick gives up on (not strict JSON, a path jq would fail on).

use super::{PlainPath, Val, pick};

/// The paths of an expression that reads its input only through them.
#[derive(Clone, Debug)]
pub struct Projection {
    /// No path is a prefix of another (the shorter one holds both); at most
    /// [`MAX_PATHS`].
    paths: Vec<PlainPath>,
    /// Each path's field names, where its value goes in the projection.
    fields: Vec<Vec<String>>,
}

/// More paths than this and the whole record is parsed.
pub const MAX_PATHS: usize = 4;

impl Projection {
    /// The projection of expressions that all qualify (a splitter's routes share one),
    /// or `None`.
    pub fn of_all<'a>(sources: impl IntoIterator<Item = &'a str>) -> Option<Projection> {
        let mut paths: Vec<PlainPath> = Vec::new();
        for src in sources {
            paths.extend(paths_of(src)?);
        }
        // A path under another one is read from the other's value.
        let fields = |p: &PlainPath| p.fields().map(str::to_owned).collect::<Vec<_>>();
        let all: Vec<Vec<String>> = paths.iter().map(fields).collect();
        let mut kept: Vec<PlainPath> = Vec::new();
        let mut kept_fields: Vec<Vec<String>> = Vec::new();
        for (p, f) in paths.into_iter().zip(&all) {
            let covered = all.iter().any(|o| o.len() < f.len() && f.starts_with(o))
                || kept_fields.contains(f);
            if !covered {
                kept.push(p);
                kept_fields.push(f.clone());
            }
        }
        if kept.is_empty() || kept.len() > MAX_PATHS {
            return None;
        }
        Some(Projection {
            paths: kept,
            fields: kept_fields,
        })
    }

    /// The projection of a record's JSON value, or `None` when the whole value must be
    /// parsed (see the module documentation).
    pub fn project(&self, json: &[u8]) -> Option<Val> {
        let p = &self.paths;
        let picked: Vec<super::Picked<'_>> = match p.len() {
            1 => pick(json, [&p[0]])?.to_vec(),
            2 => pick(json, [&p[0], &p[1]])?.to_vec(),
            3 => pick(json, [&p[0], &p[1], &p[2]])?.to_vec(),
            4 => pick(json, [&p[0], &p[1], &p[2], &p[3]])?.to_vec(),
            _ => return None,
        };
        let mut root = Node::Obj(Vec::new());
        for (fields, got) in self.fields.iter().zip(picked) {
            root.insert(fields, got.to_val().ok()?);
        }
        Some(root.into_val())
    }
}

/// The object being built: nested objects down to the picked values.
enum Node {
    Leaf(Val),
    Obj(Vec<(String, Node)>),
}

impl Node {
    fn insert(&mut self, fields: &[String], value: Val) {
        let Node::Obj(children) = self else {
            return;
        };
        let Some((first, rest)) = fields.split_first() else {
            return;
        };
        if rest.is_empty() {
            children.push((first.clone(), Node::Leaf(value)));
            return;
        }
        let at = match children.iter().position(|(k, _)| k == first) {
            Some(i) => i,
            None => {
                children.push((first.clone(), Node::Obj(Vec::new())));
                children.len() - 1
            }
        };
        children[at].1.insert(rest, value);
    }

    fn into_val(self) -> Val {
        match self {
            Node::Leaf(v) => v,
            Node::Obj(children) => Val::obj(
                children
                    .into_iter()
                    .map(|(k, n)| (Val::from(k), n.into_val()))
                    .collect(),
            ),
        }
    }
}

/// The plain paths an expression reads, when it is within the grammar.
fn paths_of(src: &str) -> Option<Vec<PlainPath>> {
    let b = src.as_bytes();
    let mut paths = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'.' => {
                // A path: one or more `.ident`, with nothing between them.
                let start = i;
                while i < b.len() && b[i] == b'.' {
                    let ident = i + 1;
                    let mut j = ident;
                    while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                        j += 1;
                    }
                    if j == ident || b[ident].is_ascii_digit() {
                        return None;
                    }
                    i = j;
                }
                paths.push(PlainPath::parse(&src[start..i])?);
            }
            b'"' => {
                // A string without escapes (and so without interpolation).
                let end = i + 1 + b[i + 1..].iter().position(|&x| x == b'"')?;
                if b[i + 1..end].contains(&b'\\') {
                    return None;
                }
                i = end + 1;
            }
            b'0'..=b'9' => {
                while i < b.len()
                    && (b[i].is_ascii_digit()
                        || matches!(b[i], b'.' | b'e' | b'E')
                        || (matches!(b[i], b'+' | b'-') && matches!(b[i - 1], b'e' | b'E')))
                {
                    i += 1;
                }
            }
            b'a'..=b'z' | b'A'..=b'Z' | b'_' => {
                let mut j = i;
                while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                    j += 1;
                }
                if !matches!(&src[i..j], "and" | "or" | "true" | "false" | "null") {
                    return None;
                }
                i = j;
            }
            b'=' | b'!' | b'<' | b'>' => {
                let two = b.get(i + 1) == Some(&b'=');
                // `=` alone is assignment, `!` alone is not jq.
                if !two && matches!(c, b'=' | b'!') {
                    return None;
                }
                i += if two { 2 } else { 1 };
            }
            b'+' | b'-' | b'*' | b'%' | b'(' | b')' => i += 1,
            // `//` is the alternative operator, `/=` an update: only `/` qualifies.
            b'/' if !matches!(b.get(i + 1), Some(b'/' | b'=')) => i += 1,
            _ => return None,
        }
        // An update-assignment (`+=`, `-=`, …) is not an operator here.
        if matches!(c, b'+' | b'-' | b'*' | b'%') && b.get(i) == Some(&b'=') {
            return None;
        }
    }
    Some(paths)
}

#[cfg(test)]
mod tests;
