use super::*;
use serde_json::json;

fn expr(src: &str) -> Expr {
    Expr::compile(src).expect("compiles")
}

#[test]
fn expr_is_send_sync_and_cheap_to_clone() {
    fn send_sync<T: Send + Sync + Clone>() {}
    send_sync::<Expr>();
}

#[test]
fn eval_flat_map_outputs_every_value() {
    let e = expr(".[] | {x: .}");
    let out = e
        .eval(&json!([1, 2]), &RecordVars::default())
        .expect("runs");
    assert_eq!(out, vec![json!({"x": 1}), json!({"x": 2})]);
}

#[test]
fn eval_bool_follows_jq_truthiness() {
    let v = |j| json_to_val(&j);
    let vars = RecordVars::default();
    assert!(
        expr(".region == \"eu\"")
            .eval_bool(&v(json!({"region": "eu"})), &vars)
            .expect("ok")
    );
    assert!(
        !expr(".region == \"eu\"")
            .eval_bool(&v(json!({"region": "us"})), &vars)
            .expect("ok")
    );
    assert!(
        !expr(".missing")
            .eval_bool(&v(json!({})), &vars)
            .expect("ok")
    );
    assert!(
        expr(".n")
            .eval_bool(&v(json!({"n": 0})), &vars)
            .expect("0 is truthy in jq")
    );
    assert!(
        !expr("empty")
            .eval_bool(&v(json!(1)), &vars)
            .expect("no output is false")
    );
    assert!(
        expr(".notify | index(\"email\")")
            .eval_bool(&v(json!({"notify": ["sms", "email"]})), &vars)
            .expect("ok")
    );
}

#[test]
fn record_variables_are_bound() {
    let headers = vec![
        ("trace", b"a".to_vec()),
        ("trace", b"b".to_vec()),
        ("kind", b"x".to_vec()),
    ];
    let vars = RecordVars::new("signups", 2)
        .key(Some(b"user-1"))
        .headers(&headers)
        .offset(42)
        .timestamp(1_700_000_000_000);
    let e = expr("[$key, $headers, $topic, $partition, $offset, $timestamp]");
    let out = e.eval(&json!(null), &vars).expect("runs");
    assert_eq!(
        out,
        vec![
            json!(["user-1", {"trace": "b", "kind": "x"}, "signups", 2, 42, 1_700_000_000_000_i64])
        ]
    );
}

#[test]
fn unset_variables_are_null() {
    let out = expr("[$key, $offset, $timestamp, $headers]")
        .eval(&json!(null), &RecordVars::default())
        .expect("runs");
    assert_eq!(out, vec![json!([null, null, null, {}])]);
}

#[test]
fn headers_from_a_closure() {
    struct H {
        key: String,
        value: Vec<u8>,
    }
    let hs = [H {
        key: "a".into(),
        value: b"1".to_vec(),
    }];
    let src = |f: &mut dyn FnMut(&str, &[u8])| {
        for h in &hs {
            f(&h.key, &h.value)
        }
    };
    let vars = RecordVars::new("t", 0).headers(&src);
    let out = expr("$headers.a").eval(&json!(null), &vars).expect("runs");
    assert_eq!(out, vec![json!("1")]);
}

#[test]
fn extra_variables_for_reducers() {
    let e = Expr::compile_with(". + $item.n", &["item"]).expect("compiles");
    let mut out = Vec::new();
    e.run_with(
        json_to_val(&json!(1)),
        &RecordVars::default(),
        &[json_to_val(&json!({"n": 2}))],
        |v| out.push(v),
    )
    .expect("runs");
    assert_eq!(val_to_json(&out[0]).expect("json"), json!(3));
}

#[test]
fn runtime_error_is_returned_not_panicked() {
    let err = expr(".a + 1")
        .eval(&json!({"a": "x"}), &RecordVars::default())
        .expect_err("string + number");
    assert!(matches!(err, ExprError::Runtime(_)), "{err:?}");
    let err = expr("error(\"boom\")")
        .eval(&json!(1), &RecordVars::default())
        .expect_err("error");
    assert!(err.to_string().contains("boom"), "{err}");
}

#[test]
fn halt_is_an_error_not_an_exit() {
    // jq's `halt_error` exits with status 5; `halt(n)` with n.
    let err = expr("halt_error").eval(&json!("bye"), &RecordVars::default());
    assert!(matches!(err, Err(ExprError::Halt(5))), "{err:?}");
    let err = expr("1 | halt(3)").eval(&json!(1), &RecordVars::default());
    assert!(matches!(err, Err(ExprError::Halt(3))), "{err:?}");
    assert_eq!(
        ExprError::Halt(3).to_string(),
        "jq halted with exit code 3",
        "a dead letter says how jq stopped"
    );
}

#[test]
fn compile_error_has_offset_inside_expression() {
    let errs = Expr::compile(".a | foo(1)").expect_err("undefined");
    assert_eq!(errs[0].offset, 5, "{errs:?}");
    assert!(errs[0].message.contains("foo"), "{errs:?}");
    let errs = Expr::compile(".a == ").expect_err("parse error");
    assert_eq!(errs[0].offset, 6, "{errs:?}");
    let errs = Expr::compile("$nope").expect_err("undefined var");
    assert_eq!(errs[0].offset, 0, "{errs:?}");
    assert!(errs[0].message.contains("variable"), "{errs:?}");
    let errs = Expr::compile("{a: (1}").expect_err("delimiter");
    assert!(!errs.is_empty());
}

#[test]
fn parse_value_json_and_text() {
    let v = parse_value(br#"{"a":1}"#, Format::Json).expect("json");
    assert_eq!(val_to_json(&v).expect("json"), json!({"a": 1}));
    assert!(matches!(
        parse_value(b"not json", Format::Json),
        Err(ExprError::NotJson(_))
    ));
    let v = parse_value(b"Hello World", Format::Text).expect("text");
    let out = expr("ascii_downcase | [scan(\"[a-z0-9]+\")]")
        .eval_val(v, &RecordVars::default())
        .expect("runs");
    assert_eq!(
        val_to_json(&out[0]).expect("json"),
        json!(["hello", "world"])
    );
}

#[test]
fn json_round_trip_keeps_numbers() {
    for j in [
        json!(1),
        json!(-5),
        json!(1.5),
        json!(u64::MAX),
        json!("s"),
        json!([1, {"a": null}]),
    ] {
        assert_eq!(val_to_json(&json_to_val(&j)).expect("json"), j);
    }
    let v = parse_value(b"12345678901234567890123", Format::Json).expect("big");
    assert_eq!(to_json_bytes(&v), b"12345678901234567890123");
}

#[test]
fn key_bytes_of_string_is_raw() {
    assert_eq!(key_bytes(&json_to_val(&json!("eu"))), b"eu");
    assert_eq!(key_bytes(&json_to_val(&json!(7))), b"7");
    assert_eq!(key_bytes(&json_to_val(&json!({"a": 1}))), br#"{"a":1}"#);
}

#[test]
fn mentions_var_is_whole_word() {
    assert!(mentions_var("$key | .", "$key"));
    assert!(!mentions_var("$keys", "$key"));
}

#[test]
fn nesting_is_limited_whatever_the_document_length() {
    let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    assert!(parse_value(nested(MAX_JSON_DEPTH).as_bytes(), Format::Json).is_ok());
    let err = parse_value(nested(MAX_JSON_DEPTH + 1).as_bytes(), Format::Json)
        .expect_err("one level too deep");
    assert!(err.to_string().contains("nested more than"), "{err}");
    // Short documents skip the depth pass and are parsed directly.
    assert!(parse_value(nested(40).as_bytes(), Format::Json).is_ok());
    assert!(parse_value(br#"{"a":[1,{"b":"[[["}]}"#, Format::Json).is_ok());
    assert!(parse_value(b"[[[", Format::Json).is_err());
}

#[test]
fn expressions_too_large_to_compile_safely_are_refused_with_their_position() {
    // Chains like these overflowed the stack (an abort, not an error) at ~4000.
    for (what, src) in [
        ("a + chain", vec!["1"; 6000].join(" + ")),
        ("a pipe", vec!["."; 6000].join(" | ")),
        (
            "nested parentheses",
            format!("{}.a{}", "(".repeat(5000), ")".repeat(5000)),
        ),
        ("an and chain", vec!["true"; 2000].join(" and ")),
        (
            "an interpolation",
            format!("\"x\\({})\"", vec!["1"; 2000].join("+")),
        ),
    ] {
        let errs = Expr::compile(&src).expect_err(what);
        assert!(errs[0].message.contains("too large"), "{what}: {errs:?}");
        assert!(errs[0].offset > 0 && errs[0].offset < src.len(), "{what}");
    }
    // What is only text is not counted: strings, comments, field names.
    let plus = "+".repeat(5000);
    assert!(Expr::compile(&format!("\"{plus}\" | length")).is_ok());
    assert!(Expr::compile(&format!(". # {plus}\n")).is_ok());
    let fields = vec![".and"; 1500].join("");
    assert!(
        Expr::compile(&fields).is_ok(),
        "field names are not keywords"
    );
    // Long expressions of ordinary size compile, on this test's 2 MiB thread too.
    assert!(Expr::compile(&vec!["1"; 990].join(" + ")).is_ok());
    assert!(Expr::compile(&format!("{}1{}", "[".repeat(990), "]".repeat(990))).is_ok());
}
