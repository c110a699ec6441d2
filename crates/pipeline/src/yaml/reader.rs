//! The reader's primitives: a mapping's fields, and scalars read as the types a
//! pipeline file uses (names, counts, durations, jq expressions, topic lists), each
//! problem reported where the file wrote it and reading going on past it.

use std::collections::BTreeMap;
use std::time::Duration;

use super::node::{ExprSrc, Node, Pos, Sp, Value};
use crate::diagnostics::{Diagnostic, did_you_mean};

/// An error at a place in the file.
pub(crate) fn error_at(pos: Pos, msg: impl Into<String>) -> Diagnostic {
    let mut d = Diagnostic::error(pos.line, pos.col, msg);
    d.offset = pos.byte;
    d
}

pub(crate) struct Fields<'n> {
    pub(crate) entries: &'n [(Node, Node)],
    pub(crate) pos: Pos,
}

impl<'n> Fields<'n> {
    pub(crate) fn get(&self, name: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _)| k.as_str() == Some(name))
            .map(|(_, v)| v)
    }
}

pub(crate) struct Reader<'d> {
    pub(crate) diags: &'d mut Vec<Diagnostic>,
}

impl Reader<'_> {
    pub(crate) fn err(&mut self, pos: Pos, msg: impl Into<String>, hint: impl Into<String>) {
        let hint = hint.into();
        let d = error_at(pos, msg);
        self.diags.push(if hint.is_empty() {
            d
        } else {
            d.with_hint(hint)
        });
    }

    pub(crate) fn wrong_type(&mut self, node: &Node, what: &str, expected: &str) {
        self.err(
            node.pos,
            format!("{what} must be {expected}, found {}", node.type_name()),
            "",
        );
    }

    /// A mapping whose keys must all be in `allowed`.
    pub(crate) fn fields<'n>(
        &mut self,
        node: &'n Node,
        what: &str,
        allowed: &[&str],
        example: &str,
    ) -> Option<Fields<'n>> {
        self.fields_hinted(node, what, allowed, example, |_| None)
    }

    /// [`Reader::fields`], with `elsewhere` to explain a field that is unknown here but
    /// has a meaning somewhere else (another stage kind's field).
    pub(crate) fn fields_hinted<'n>(
        &mut self,
        node: &'n Node,
        what: &str,
        allowed: &[&str],
        example: &str,
        elsewhere: impl Fn(&str) -> Option<String>,
    ) -> Option<Fields<'n>> {
        let Value::Map(entries) = &node.value else {
            self.wrong_type(node, what, "a mapping");
            return None;
        };
        for (k, _) in entries {
            let name = k.key_text();
            if !allowed.contains(&name.as_str()) {
                let takes = format!("{example} takes: {}", allowed.join(", "));
                let hint = match did_you_mean(&name, allowed.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => match elsewhere(&name) {
                        Some(other) => format!("{other}; {takes}"),
                        None => takes,
                    },
                };
                self.err(k.pos, format!("unknown field `{name}` in {what}"), hint);
            }
        }
        Some(Fields {
            entries,
            pos: node.pos,
        })
    }

    pub(crate) fn required<'n>(
        &mut self,
        f: &Fields<'n>,
        at: Pos,
        name: &str,
        what: &str,
        hint: &str,
    ) -> Option<&'n Node> {
        let v = f.get(name);
        if v.is_none() {
            self.err(at, format!("{what} is missing `{name}`"), hint);
        }
        v
    }

    pub(crate) fn string(&mut self, node: &Node, what: &str) -> Option<Sp<String>> {
        match &node.value {
            Value::Str(s) => Some(Sp {
                value: s.clone(),
                pos: node.pos,
            }),
            // A topic may well be called `2020`.
            Value::Int(i) => Some(Sp {
                value: i.to_string(),
                pos: node.pos,
            }),
            _ => {
                self.wrong_type(node, what, "a string");
                None
            }
        }
    }

    /// A scalar as text, for free-form settings (topic config, client properties).
    pub(crate) fn scalar_text(&mut self, node: &Node, what: &str) -> Option<String> {
        match &node.value {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(x) => Some(x.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => {
                self.wrong_type(node, what, "a string, number or boolean");
                None
            }
        }
    }

    pub(crate) fn string_map(&mut self, node: &Node, what: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        match &node.value {
            Value::Map(entries) => {
                for (k, v) in entries {
                    if let Some(text) = self.scalar_text(v, &format!("{what} `{}`", k.key_text())) {
                        out.insert(k.key_text(), text);
                    }
                }
            }
            Value::Null => {}
            _ => self.wrong_type(node, what, "a mapping"),
        }
        out
    }

    pub(crate) fn uint(&mut self, node: &Node, what: &str, min: i64) -> Option<Sp<u32>> {
        match node.value {
            Value::Int(i) if i >= min && i <= i64::from(u32::MAX) => Some(Sp {
                value: u32::try_from(i).unwrap_or(u32::MAX),
                pos: node.pos,
            }),
            Value::Int(i) => {
                self.err(
                    node.pos,
                    format!("{what} must be at least {min}, found {i}"),
                    "",
                );
                None
            }
            _ => {
                self.wrong_type(node, what, "a whole number");
                None
            }
        }
    }

    pub(crate) fn u64(&mut self, node: &Node, what: &str) -> Option<u64> {
        match node.value {
            Value::Int(i) if i >= 1 => u64::try_from(i).ok(),
            _ => {
                self.wrong_type(node, what, "a whole number of at least 1");
                None
            }
        }
    }

    pub(crate) fn bool(&mut self, node: &Node, what: &str) -> Option<bool> {
        match node.value {
            Value::Bool(b) => Some(b),
            _ => {
                self.wrong_type(node, what, "true or false");
                None
            }
        }
    }

    pub(crate) fn duration(&mut self, node: &Node, what: &str) -> Option<Duration> {
        let parsed = node.as_str().and_then(parse_duration);
        if parsed.is_none() {
            self.err(
                node.pos,
                format!("{what} must be a duration, found {}", describe(node)),
                "write a number with a unit: 500ms, 5s, 2m or 1h",
            );
        }
        parsed
    }

    pub(crate) fn expr(&mut self, node: &Node, what: &str) -> Option<ExprSrc> {
        match &node.value {
            Value::Str(s) => Some(ExprSrc {
                source: s.clone(),
                pos: node.pos,
            }),
            _ => {
                self.err(
                    node.pos,
                    format!(
                        "{what} must be a jq expression (a string), found {}",
                        node.type_name()
                    ),
                    "quote the expression: '.region == \"eu\"'",
                );
                None
            }
        }
    }

    /// `x` or `[x, y]`: topic names. Returns the names and whether a list was written.
    pub(crate) fn topics(&mut self, node: &Node, what: &str) -> Option<(Vec<Sp<String>>, bool)> {
        match &node.value {
            Value::Str(_) => Some((vec![self.string(node, what)?], false)),
            Value::Seq(items) => {
                let mut out = Vec::new();
                let mut ok = true;
                for item in items {
                    match self.string(item, &format!("each topic in {what}")) {
                        Some(s) => out.push(s),
                        None => ok = false,
                    }
                }
                ok.then_some((out, true))
            }
            _ => {
                self.wrong_type(node, what, "a topic name or a list of topic names");
                None
            }
        }
    }
}

/// A node's value as a user would recognise it in a message.
pub(crate) fn describe(node: &Node) -> String {
    match &node.value {
        Value::Str(s) => format!("`{s}`"),
        Value::Int(i) => format!("`{i}`"),
        Value::Bool(b) => format!("`{b}`"),
        _ => node.type_name().to_owned(),
    }
}

/// `500ms`, `5s`, `2m`, `1h`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    match unit.trim() {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        "h" => n.checked_mul(3600).map(Duration::from_secs),
        _ => None,
    }
}
