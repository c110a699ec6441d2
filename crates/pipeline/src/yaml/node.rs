//! A YAML document as a tree of nodes, each with the place it came from.
//!
//! The planner reads the pipeline file in two passes: serde-saphyr parses the YAML
//! into this tree (only YAML syntax can fail here), then [`super::read`] walks the
//! tree into the typed spec, collecting *every* error instead of stopping at the
//! first as a derived `Deserialize` would.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// A place in the pipeline file: 1-based line and column, and the byte offset of the
/// node's first character when known.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
    pub byte: Option<usize>,
}

impl Pos {
    pub fn new(line: u32, col: u32) -> Pos {
        Pos {
            line,
            col,
            byte: None,
        }
    }
}

/// A value and where the file wrote it.
#[derive(Clone, Debug, PartialEq)]
pub struct Sp<T> {
    pub value: T,
    pub pos: Pos,
}

/// A jq expression as written; `pos` is the scalar's first character (the quote for a
/// quoted scalar), from which the planner maps offsets inside the expression.
#[derive(Clone, Debug, PartialEq)]
pub struct ExprSrc {
    pub source: String,
    pub pos: Pos,
}

/// One YAML node.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in file order; the key keeps its own position for "unknown field".
    Map(Vec<(Node, Node)>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub value: Value,
}

impl Node {
    /// What the user wrote, named as YAML names it, for "expected X, found Y".
    pub fn type_name(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The key text of a mapping key (YAML allows non-string keys; we print them).
    pub fn key_text(&self) -> String {
        match &self.value {
            Value::Str(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Null => "null".into(),
            _ => "?".into(),
        }
    }
}

fn pos_of<T>(s: &Spanned<T>) -> Pos {
    let loc = s.referenced;
    Pos {
        line: u32::try_from(loc.line()).unwrap_or(u32::MAX),
        col: u32::try_from(loc.column()).unwrap_or(u32::MAX),
        byte: loc
            .span()
            .byte_offset()
            .and_then(|b| usize::try_from(b).ok()),
    }
}

impl From<Spanned<Value>> for Node {
    fn from(s: Spanned<Value>) -> Node {
        Node {
            pos: pos_of(&s),
            value: s.value,
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        Spanned::<Value>::deserialize(d).map(Node::from)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(i64::try_from(v).map_or(Value::Float(v as f64), Value::Int))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(n) = seq.next_element::<Node>()? {
            items.push(n);
        }
        Ok(Value::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(k) = map.next_key::<Node>()? {
            let v = map.next_value::<Node>()?;
            entries.push((k, v));
        }
        Ok(Value::Map(entries))
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

/// Parse YAML text into a node tree. The error carries the position serde-saphyr found.
pub fn parse_yaml(src: &str) -> Result<Node, (Pos, String)> {
    // YAML 1.2 booleans only: a topic named `y`, `no` or `on` stays a string.
    let options = serde_saphyr::options! { strict_booleans: true };
    serde_saphyr::from_str_with_options::<Node>(src, options).map_err(|e| {
        let pos = e
            .location()
            .map(|l| Pos {
                line: u32::try_from(l.line()).unwrap_or(0),
                col: u32::try_from(l.column()).unwrap_or(0),
                byte: None,
            })
            .unwrap_or_default();
        (pos, e.without_snippet().to_string())
    })
}
