//! Whichever tier runs, the answer is jaq's: the compiled types against the jaq
//! expressions they were compiled from, run on the whole parsed record.

use serde_json::json;

use super::*;
use crate::expr::{Expr, key_bytes};

fn jq(src: &str) -> Expr {
    Expr::compile(src).expect("compiles")
}

fn predicate(src: &str) -> Predicate {
    Predicate::Jq(jq(src))
}

/// Records of every kind a stage meets: well-formed, missing or null fields, the wrong
/// types for the arithmetic, JSON that only jaq reads, and bytes that are not JSON.
const RECORDS: &[&[u8]] = &[
    br#"{"region":"eu","n":4,"total":150,"paid":true}"#,
    br#"{"region":"us","n":3,"total":99,"paid":false}"#,
    br#"{"n":10}"#,
    br#"{"region":null,"n":null}"#,
    br#"{"region":"eu","n":"four","total":"a lot"}"#,
    br#"{"a":{"b":2},"n":0}"#,
    br#"  {"region" : "eu" , "n" : 1.5e1}  "#,
    br#"{"region":"caf\u00e9","n":-2}"#,
    b"[1,2,3]",
    b"7",
    b"\"text\"",
    b"{\"region\":\"\xff\"}",
    b"not json",
    b"",
    b"{\"n\": NaN}",
];

/// The conditions that hold by jaq alone, on the whole parsed record; a record error
/// as its message.
fn by_jaq(
    sources: &[&str],
    value: &[u8],
    format: Format,
    first_only: bool,
) -> Result<Vec<usize>, String> {
    let v = parse_value(value, format).map_err(|e| e.to_string())?;
    let vars = RecordVars::default();
    let mut hits = Vec::new();
    for (i, src) in sources.iter().enumerate() {
        if jq(src).eval_bool(&v, &vars).map_err(|e| e.to_string())? {
            hits.push(i);
            if first_only {
                break;
            }
        }
    }
    Ok(hits)
}

#[test]
fn conditions_give_what_jaq_gives_on_every_record_and_tier() {
    let sets: &[&[&str]] = &[
        // Native: comparisons and arithmetic over plain paths.
        &[r#".region == "eu""#],
        &[".n % 2 == 0", ".total >= 100 and .paid", ".n - 1 > 2"],
        &[".a.b == 2 or .n == 10"],
        // Projection: within its grammar, outside the native one (a comparison chain
        // in parentheses is jaq's, a unary minus is not native).
        &["(.n > 1) == true", ".n == -2"],
        // jaq only: functions and variables.
        &[r#".region | ascii_upcase == "EU""#, "$key == null"],
    ];
    for sources in sets {
        let conditions: Vec<Predicate> = sources.iter().map(|s| predicate(s)).collect();
        for format in [Format::Json, Format::Text] {
            let compiled = CompiledConditions::new(conditions.clone(), format);
            for value in RECORDS {
                let vars = RecordVars::default();
                let shown = String::from_utf8_lossy(value);
                let mut all = Vec::new();
                let got = compiled.all(value, &vars, &mut all).map(|()| all);
                let want = by_jaq(sources, value, format, false);
                assert_eq!(
                    got.map_err(|e| e.to_string()),
                    want,
                    "all of {sources:?} on {shown} ({format:?})"
                );
                let got = compiled
                    .first(value, &vars)
                    .map(|f| f.into_iter().collect());
                let want = by_jaq(sources, value, format, true);
                assert_eq!(
                    got.map_err(|e| e.to_string()),
                    want,
                    "first of {sources:?} on {shown} ({format:?})"
                );
            }
        }
    }
}

#[test]
fn the_tier_is_picked_once_by_what_the_conditions_are() {
    let native = CompiledConditions::new(vec![predicate(".n > 1")], Format::Json);
    assert!(native.is_native());
    // A text record is a string to jq: no paths to pick.
    let text = CompiledConditions::new(vec![predicate(".n > 1")], Format::Text);
    assert!(!text.is_native());
    // Routes share one pick: every one of them must be native.
    let mixed = vec![predicate(".n > 1"), predicate(".n | tostring == \"3\"")];
    assert!(!CompiledConditions::new(mixed, Format::Json).is_native());
    // A closure has no jq source to compile.
    let closure = Predicate::Fn(std::sync::Arc::new(|v: &serde_json::Value| v["n"] == 3));
    let with_closure = CompiledConditions::new(vec![predicate(".n > 1"), closure], Format::Json);
    assert!(!with_closure.is_native());
    let vars = RecordVars::default();
    let mut hits = Vec::new();
    with_closure
        .all(br#"{"n":3}"#, &vars, &mut hits)
        .expect("runs");
    assert_eq!(hits, [0, 1], "the closure sees the record as JSON");
}

#[test]
fn a_picked_key_is_the_key_jq_gives() {
    for src in [".user", ".a.b", "."] {
        let jaq = Selector::Jq(jq(src));
        let compiled = CompiledSelector::new(jaq.clone(), Format::Json);
        assert!(compiled.plain_path().is_some(), "{src} is a plain path");
        for value in [
            &br#"{"user":"alice","n":1}"#[..],
            br#"{"n":1,"user":"bob"}"#,
            br#"{"user":"caf\u00e9"}"#,
            br#"{"user":"a\"b"}"#,
            br#"{"user":42}"#,
            br#"{"user":{"id":[1,2]}}"#,
            br#"{"user":null}"#,
            br#"{"other":1}"#,
            br#"{"a":{"b":"x"}}"#,
            br#"{"a":3}"#,
            br#"  {"user" : "spaced"}  "#,
            br#"{"user":"x","user":"y"}"#,
            b"[1,2]",
            b"7",
            b"not json",
            b"",
            b"{\"user\":\"\xff\"}",
        ] {
            let vars = RecordVars::default();
            let want = parse_value(value, Format::Json)
                .and_then(|v| jaq.select(&v, &vars))
                .map(|v| key_bytes(&v));
            assert_eq!(
                compiled.key(value, &vars),
                want,
                "{src} of {}",
                String::from_utf8_lossy(value)
            );
        }
    }
    // Text values are strings to jq: no plain path over them.
    let text = CompiledSelector::new(Selector::Jq(jq(".")), Format::Text);
    assert!(text.plain_path().is_none());
    assert_eq!(
        text.key(b"{\"user\":1}", &RecordVars::default()),
        Ok(b"{\"user\":1}".to_vec())
    );
}

#[test]
fn a_map_gives_jaqs_outputs_whichever_tier_runs() {
    let src = r#"ascii_downcase | scan("[a-z0-9]+") | {word: .}"#;
    let compiled = CompiledMapper::new(Mapper::Jq(jq(src)), Format::Text);
    let vars = RecordVars::default();
    for line in [&b"Hello, hello WORLD-42"[..], b"", b"caf\xc3\xa9 \xff x"] {
        let mut by_jaq = Vec::new();
        compiled
            .run_jaq(line, &vars, |v| by_jaq.push(val_to_json(&v).expect("json")))
            .expect("jaq runs");
        let mut native: Vec<serde_json::Value> = Vec::new();
        if compiled.run_native(line, &mut |out| {
            native.push(serde_json::from_slice(out).expect("json"))
        }) {
            assert_eq!(native, by_jaq, "{}", String::from_utf8_lossy(line));
        }
    }
    let mut words = Vec::new();
    assert!(compiled.run_native(b"A b", &mut |o| words.push(o.to_vec())));
    assert_eq!(
        words,
        [br#"{"word":"a"}"#.to_vec(), br#"{"word":"b"}"#.to_vec()]
    );
    // A closure has no native form; jaq's tier runs it.
    let closure = Mapper::Fn(std::sync::Arc::new(|v: &serde_json::Value| {
        vec![v.clone(), json!(1)]
    }));
    let compiled = CompiledMapper::new(closure, Format::Json);
    assert!(!compiled.run_native(b"2", &mut |_| {}));
    let mut outs = Vec::new();
    compiled
        .run_jaq(b"2", &vars, |v| outs.push(val_to_json(&v).expect("json")))
        .expect("runs");
    assert_eq!(outs, [json!(2), json!(1)]);
}
