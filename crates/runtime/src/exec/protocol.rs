//! The wire protocol: one JSON object per line each way (see docs/exec-protocol.md).

use serde::Serialize;
use serde_json::Value;

use super::WorkItem;

/// The request line written to a worker's stdin.
#[derive(Serialize)]
struct Request<'a> {
    id: u64,
    value: &'a Value,
    key: Option<&'a str>,
    topic: &'a str,
    partition: i32,
    offset: i64,
}

/// Encodes `item` as one request line, newline included. Compact serde_json never
/// emits a raw newline (control characters in strings are escaped), so the framing
/// holds whatever the record contains.
pub(crate) fn encode_request(id: u64, item: &WorkItem) -> Vec<u8> {
    let req = Request {
        id,
        value: &item.value,
        key: item.key.as_deref(),
        topic: &item.topic,
        partition: item.partition,
        offset: item.offset,
    };
    // Serializing a Value and plain fields into a Vec cannot fail.
    let mut line = serde_json::to_vec(&req).unwrap_or_default();
    line.push(b'\n');
    line
}

/// What a worker's reply line means.
#[derive(Debug, PartialEq)]
pub(crate) enum Reply {
    /// The item's outputs (0..n values).
    Out(Vec<Value>),
    /// The worker rejected the item: a record error, not retried.
    Error(String),
    /// Not a valid reply for this id: the worker is restarted and the item retried.
    Garbage(String),
}

/// Parses one reply line for request `id`.
///
/// Accepted shapes, checked in this order:
/// - `{"id": N, "error": <non-null>}` → [`Reply::Error`] (a non-string reason is kept as
///   its JSON text, so nothing the worker said is lost);
/// - `{"id": N, "out": [..]}` → [`Reply::Out`] with the array's values;
/// - `{"id": N, "value": V}` → [`Reply::Out`] with exactly `[V]`. This shorthand means a
///   worker may answer by editing `value` in the request object and echoing it, and
///   `cat` is the identity worker.
///
/// Anything else — not JSON, not an object, a missing or different id, none of the
/// three fields, `out` not an array — is garbage.
pub(crate) fn parse_reply(id: u64, line: &[u8]) -> Reply {
    let v: Value = match serde_json::from_slice(line) {
        Ok(v) => v,
        Err(e) => {
            // Worded as a record value that is not JSON is, with the line's start.
            let why = match millrace_pipeline::expr::not_json_because(line, &e) {
                millrace_pipeline::ExprError::NotJson(why) => why,
                other => other.to_string(),
            };
            return Reply::Garbage(format!("reply is not JSON: {why}: {}", preview(line)));
        }
    };
    let Value::Object(mut obj) = v else {
        return Reply::Garbage(format!("reply is not a JSON object: {}", preview(line)));
    };
    match obj.get("id") {
        Some(Value::Number(n)) if n.as_u64() == Some(id) => {}
        Some(other) => {
            return Reply::Garbage(format!("reply has id {other}, expected {id}"));
        }
        None => return Reply::Garbage(format!("reply has no \"id\": {}", preview(line))),
    }
    match obj.remove("error") {
        Some(Value::Null) | None => {}
        Some(Value::String(reason)) => return Reply::Error(reason),
        Some(other) => return Reply::Error(other.to_string()),
    }
    if let Some(out) = obj.remove("out") {
        return match out {
            Value::Array(values) => Reply::Out(values),
            other => Reply::Garbage(format!("reply \"out\" is not an array: {other}")),
        };
    }
    if let Some(value) = obj.remove("value") {
        return Reply::Out(vec![value]);
    }
    Reply::Garbage(format!(
        "reply has none of \"out\", \"value\", \"error\": {}",
        preview(line)
    ))
}

/// The start of a bad line, for error messages (dead-letter headers must stay small).
pub(crate) fn preview(line: &[u8]) -> String {
    const MAX: usize = 200;
    let text = String::from_utf8_lossy(&line[..line.len().min(MAX)]);
    if line.len() > MAX {
        format!("{text}… ({} bytes)", line.len())
    } else {
        text.into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn request_is_one_line_even_with_newlines_in_content() {
        let mut item = WorkItem::new(json!({"text": "a\nb\r\n"}));
        item.key = Some("k\n".into());
        item.topic = "t".into();
        item.offset = 42;
        let line = encode_request(17, &item);
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        assert_eq!(line.last(), Some(&b'\n'));
        // Documented for line-oriented tools: the id is always first, without spaces.
        assert!(line.starts_with(b"{\"id\":17,"));
        let back: Value = serde_json::from_slice(&line).expect("json");
        assert_eq!(
            back,
            json!({"id": 17, "value": {"text": "a\nb\r\n"}, "key": "k\n", "topic": "t",
                   "partition": 0, "offset": 42})
        );
    }

    #[test]
    fn replies() {
        assert_eq!(
            parse_reply(3, br#"{"id":3,"out":[1,{"a":2}]}"#),
            Reply::Out(vec![json!(1), json!({"a": 2})])
        );
        assert_eq!(parse_reply(3, br#"{"id":3,"out":[]}"#), Reply::Out(vec![]));
        assert_eq!(
            parse_reply(3, br#"{"id":3,"value":{"x":1},"topic":"t"}"#),
            Reply::Out(vec![json!({"x": 1})])
        );
        assert_eq!(
            parse_reply(3, br#"{"id":3,"error":"bad email"}"#),
            Reply::Error("bad email".into())
        );
        assert_eq!(
            parse_reply(3, br#"{"id":3,"error":{"code":4}}"#),
            Reply::Error(r#"{"code":4}"#.into())
        );
        // A null error is "no error", as many languages serialize an absent field.
        assert_eq!(
            parse_reply(3, br#"{"id":3,"error":null,"out":[1]}"#),
            Reply::Out(vec![json!(1)])
        );
        for bad in [
            &b"hello"[..],
            b"[1,2]",
            br#"{"out":[1]}"#,
            br#"{"id":4,"out":[1]}"#,
            br#"{"id":"3","out":[1]}"#,
            br#"{"id":3,"out":1}"#,
            br#"{"id":3}"#,
        ] {
            assert!(
                matches!(parse_reply(3, bad), Reply::Garbage(_)),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn preview_is_bounded() {
        let long = vec![b'x'; 10_000];
        assert!(preview(&long).len() < 300);
    }
}
