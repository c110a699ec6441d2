//! Record values as jq sees them: parsing a record's bytes (JSON or text), and the
//! conversions between jaq values, JSON and key bytes.

use super::{ExprError, Format, Val, not_json};

/// Parse record value bytes once for evaluation. Not JSON (in `Format::Json`) is a
/// record error, never a panic.
pub fn parse_value(bytes: &[u8], format: Format) -> Result<Val, ExprError> {
    match format {
        Format::Json => {
            // jaq's reader (and dropping its values) recurses once per level: a hostile
            // `[[[[…` record would overflow the stack and abort the process.
            check_json_depth(bytes)?;
            // JSON text is UTF-8; jaq would carry invalid bytes inside strings through to
            // the outputs, so they are refused here as a record error.
            if let Err(e) = std::str::from_utf8(bytes) {
                return Err(ExprError::NotJson(format!(
                    "not UTF-8 at byte {}",
                    e.valid_up_to()
                )));
            }
            jaq_json::read::parse_single(bytes).map_err(|e| not_json(bytes, &e))
        }
        Format::Text => Ok(bytes_to_str(bytes)),
    }
}

/// Deepest nesting of arrays and objects a JSON record value may have (serde_json's
/// default limit is 128; this is more generous and still far from the stack's limit).
pub const MAX_JSON_DEPTH: usize = 512;

/// Refuses JSON nested deeper than [`MAX_JSON_DEPTH`], in one pass that skips strings.
fn check_json_depth(bytes: &[u8]) -> Result<(), ExprError> {
    // Each level opens with a byte of its own: a document this short cannot be too
    // deep, and most records are (the pass costs a fifth of a small record's parse).
    if bytes.len() <= MAX_JSON_DEPTH {
        return Ok(());
    }
    let (mut depth, mut in_str, mut escaped) = (0usize, false, false);
    for (at, &b) in bytes.iter().enumerate() {
        if in_str {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_JSON_DEPTH {
                    return Err(ExprError::NotJson(format!(
                        "nested more than {MAX_JSON_DEPTH} levels deep at byte {at}"
                    )));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Serialize a value as compact JSON, the bytes a stage writes for an output value.
pub fn to_json_bytes(v: &Val) -> Vec<u8> {
    let mut buf = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = jaq_json::write::write(&mut buf, &jaq_json::write::Pp::default(), 0, v);
    buf
}

/// The bytes a value stands for as a key (shard key, join key, group key): a string's
/// own bytes, any other value's compact JSON.
pub fn key_bytes(v: &Val) -> Vec<u8> {
    match v {
        Val::TStr(b) | Val::BStr(b) => b.to_vec(),
        other => to_json_bytes(other),
    }
}

/// Convert JSON to a jaq value.
pub fn json_to_val(v: &serde_json::Value) -> Val {
    use serde_json::Value as J;
    match v {
        J::Null => Val::Null,
        J::Bool(b) => Val::Bool(*b),
        J::Number(n) => {
            if let Some(i) = n.as_i64() {
                int_val(i128::from(i))
            } else if let Some(u) = n.as_u64() {
                int_val(i128::from(u))
            } else {
                Val::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        J::String(s) => Val::from(s.clone()),
        J::Array(a) => a.iter().map(json_to_val).collect(),
        J::Object(o) => {
            let map = o
                .iter()
                .map(|(k, v)| (Val::from(k.clone()), json_to_val(v)))
                .collect();
            Val::obj(map)
        }
    }
}

/// Convert a jaq value to JSON. Values JSON cannot hold (NaN, byte strings that are not
/// UTF-8, non-string object keys) are converted as jq prints them or reported.
pub fn val_to_json(v: &Val) -> Result<serde_json::Value, ExprError> {
    use serde_json::Value as J;
    Ok(match v {
        Val::Null => J::Null,
        Val::Bool(b) => J::Bool(*b),
        Val::Num(n) => {
            if let Some(i) = n.as_isize() {
                J::from(i as i64)
            } else {
                // Big integers, decimals and floats: go through their text form.
                let text = n.to_string();
                serde_json::from_str(&text).unwrap_or(J::Null)
            }
        }
        Val::TStr(b) | Val::BStr(b) => J::String(String::from_utf8_lossy(b).into_owned()),
        Val::Arr(a) => J::Array(a.iter().map(val_to_json).collect::<Result<_, _>>()?),
        Val::Obj(o) => {
            let mut map = serde_json::Map::new();
            for (k, v) in o.iter() {
                let key = match k {
                    Val::TStr(b) | Val::BStr(b) => String::from_utf8_lossy(b).into_owned(),
                    other => {
                        return Err(ExprError::Runtime(format!(
                            "object key {other} is not a string"
                        )));
                    }
                };
                map.insert(key, val_to_json(v)?);
            }
            J::Object(map)
        }
    })
}

pub(super) fn int_val(i: i128) -> Val {
    Val::Num(jaq_json::Num::from_integral(i))
}

pub(super) fn bytes_to_str(bytes: &[u8]) -> Val {
    Val::utf8_str(bytes.to_vec())
}
