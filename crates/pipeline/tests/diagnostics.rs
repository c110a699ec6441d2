//! The planner's diagnostics: every error class at its exact line:column, all at once.

use millrace_pipeline::parse_str;

/// Each error as `line:col: message`, plus hints, in order.
fn errors(src: &str) -> Vec<String> {
    match parse_str(src, "p.yaml") {
        Ok(_) => panic!("expected errors in:\n{src}"),
        Err(d) => d
            .errors()
            .map(|e| format!("{}:{}: {}", e.line, e.col, e.message))
            .collect(),
    }
}

/// The hints of the errors (not warnings), in order.
fn hints(src: &str) -> Vec<String> {
    match parse_str(src, "p.yaml") {
        Ok(_) => panic!("expected errors"),
        Err(d) => d.errors().filter_map(|e| e.hint.clone()).collect(),
    }
}

fn one_error(src: &str) -> String {
    let e = errors(src);
    assert_eq!(e.len(), 1, "{e:#?}");
    e.into_iter().next().unwrap_or_default()
}

const HEAD: &str = "pipeline: p\ntopics:\n  a: 2\n  c: 2\nstages:\n";

fn with_stages(stages: &str) -> String {
    format!("{HEAD}{stages}")
}

#[test]
fn yaml_syntax_error_has_position() {
    let e = one_error("pipeline: p\nstages:\n  a: [1\n  b: 2\n");
    assert!(e.starts_with("4:"), "{e}");
    assert!(e.contains("invalid YAML"), "{e}");
}

#[test]
fn unknown_stage_kind_suggests() {
    let src = with_stages("  s: {kind: shader, from: a, to: [b, d]}\n");
    assert_eq!(one_error(&src), "6:13: unknown stage kind `shader`");
    assert_eq!(hints(&src), ["did you mean `sharder`?"]);
}

#[test]
fn unknown_field_suggests() {
    let src = with_stages("  f:\n    kind: filter\n    from: a\n    to: b\n    were: '.x'\n");
    // The missing `where` is reported too, at the stage name.
    assert_eq!(
        errors(&src),
        [
            "6:3: filter stage `f` is missing `where`",
            "10:5: unknown field `were` in filter stage `f`"
        ]
    );
    assert!(hints(&src).contains(&"did you mean `where`?".to_owned()));
}

#[test]
fn unknown_top_level_field() {
    let src =
        "pipeline: p\ntopcs: {}\nstages:\n  c: {kind: copier, from: x, to: y}\ntopics: {x: 1}\n";
    assert_eq!(
        one_error(src),
        "2:1: unknown field `topcs` in the pipeline file"
    );
}

#[test]
fn wrong_types() {
    let src = with_stages(
        "  x:\n    kind: exec\n    from: a\n    to: b\n    command: python3 w.py\n    workers: two\n    timeout: 5\n",
    );
    let e = errors(&src);
    assert_eq!(
        e,
        [
            "10:14: `command` must be a list of arguments, not a string",
            "11:14: `workers` must be a whole number, found a string",
            "12:14: `timeout` must be a duration, found `5`",
        ]
    );
}

#[test]
fn missing_required_fields() {
    let e = errors("stages:\n  m: {kind: map, from: a}\n");
    assert_eq!(
        e,
        [
            "1:1: the pipeline file is missing `pipeline`",
            "2:3: map stage `m` is missing `expr`",
            "2:3: map stage `m` is missing `to`",
            "2:24: stage `m` reads topic `a`, which no stage writes and `topics:` does not declare",
        ]
    );
}

#[test]
fn splitter_without_default() {
    let src = with_stages(
        "  s:\n    kind: splitter\n    from: a\n    routes:\n      - {when: '.x', to: b}\n",
    );
    assert_eq!(
        one_error(&src),
        "6:3: splitter stage `s` is missing `default`"
    );
    assert!(hints(&src)[0].contains("nothing is dropped"));
}

#[test]
fn route_without_target() {
    let src = with_stages(
        "  s:\n    kind: splitter\n    from: a\n    default: z\n    routes:\n      - {when: '.x'}\n",
    );
    assert_eq!(one_error(&src), "11:9: a route is missing `to`");
}

#[test]
fn cycle_is_printed_as_path() {
    let src = with_stages(
        "  one: {kind: filter, from: a, to: x, where: '.ok'}\n  two: {kind: map, from: x, to: y, expr: '.'}\n  three: {kind: merger, from: [y, c], to: a}\n",
    );
    assert_eq!(
        one_error(&src),
        "6:3: cycle: stage one → topic x → stage two → topic y → stage three → topic a → stage one"
    );
}

#[test]
fn self_loop_is_a_cycle() {
    let src = with_stages("  loop: {kind: copier, from: a, to: [a, c]}\n");
    assert_eq!(
        one_error(&src),
        "6:3: cycle: stage loop → topic a → stage loop"
    );
}

#[test]
fn topic_read_but_never_written_or_declared() {
    let src = with_stages(
        "  c: {kind: copier, from: signupz, to: b}\n  d: {kind: copier, from: a, to: signups}\n",
    );
    assert_eq!(
        one_error(&src),
        "6:27: stage `c` reads topic `signupz`, which no stage writes and `topics:` does not declare"
    );
    assert!(
        hints(&src)[0].starts_with("did you mean `signups`?"),
        "{:?}",
        hints(&src)
    );
}

#[test]
fn expression_error_points_inside_the_expression() {
    // `foo` is at column 50: `  f: {kind: filter, from: a, to: b, where: '.x | foo(1)'}`
    let src = with_stages("  f: {kind: filter, from: a, to: b, where: '.x | foo(1)'}\n");
    let e = one_error(&src);
    // jq's notation for a filter with its arity: `foo/1`.
    assert_eq!(
        e,
        "6:50: `where` of stage `f` does not compile: undefined filter `foo/1`"
    );
    assert_eq!(
        hints(&src),
        ["check the name and number of arguments against the jq manual"]
    );
}

#[test]
fn expression_syntax_error_in_block_scalar() {
    let src = with_stages(
        "  m:\n    kind: map\n    from: a\n    to: b\n    expr: |\n      .x\n      | {a: (1 }\n",
    );
    let e = errors(&src);
    assert!(!e.is_empty());
    assert!(e[0].starts_with("12:"), "{e:#?}");
}

#[test]
fn undefined_variable_hint_lists_variables() {
    let src = with_stages("  f: {kind: filter, from: a, to: b, where: '$kee == \"x\"'}\n");
    assert_eq!(
        one_error(&src),
        "6:45: `where` of stage `f` does not compile: undefined variable `$kee`"
    );
    assert!(hints(&src)[0].contains("$key"));
}

#[test]
fn sharder_count_conflicts_with_declared_partitions() {
    let src = with_stages("  s: {kind: sharder, from: a, by: .k, to: c, shards: 4}\n");
    assert_eq!(
        one_error(&src),
        "6:54: sharder `s` writes 4 shards into the partitions of `c`, which is declared with 2 partitions"
    );
}

#[test]
fn two_stages_writing_sharded_partitions_conflict() {
    let src = with_stages(
        "  s: {kind: sharder, from: a, by: .k, to: out, shards: 4}\n  t: {kind: copier, from: c, to: out}\n",
    );
    assert_eq!(
        one_error(&src),
        "7:34: stage `t` writes `out`, whose partitions sharder `s` uses as shards"
    );
}

#[test]
fn join_by_key_needs_co_partitioned_inputs() {
    let src = "pipeline: p\ntopics:\n  a: 2\n  b: 3\nstages:\n  j: {kind: join, mode: key, key: .id, from: [a, b], to: c}\n";
    assert_eq!(
        one_error(src),
        "6:47: stage `j` is a join by key, so its inputs must be co-partitioned, but `a` has 2, `b` has 3"
    );
}

#[test]
fn reduce_inputs_must_be_co_partitioned() {
    let src = "pipeline: p\ntopics:\n  a: 2\n  b: 1\nstages:\n  r: {kind: reduce, from: [a, b], to: c, group_by: .w, reducer: count}\n";
    assert!(
        one_error(src)
            .contains("is a reduce with `group_by`, so its inputs must be co-partitioned")
    );
}

#[test]
fn reduce_and_join_field_rules() {
    let src = with_stages(
        "  r: {kind: reduce, from: a, to: b, reducer: sum}\n  q: {kind: reduce, from: a, to: d, reducer: cnt}\n  j: {kind: join, mode: key, from: [a, c], to: e}\n  z: {kind: join, mode: zip, from: [a, c], to: f, timeout: 5s}\n",
    );
    assert_eq!(
        errors(&src),
        [
            "6:3: reduce stage `r` uses the sum reducer but is missing `of`",
            "7:46: unknown reducer `cnt`",
            "8:3: join stage `j` joins by key but is missing `key`",
            "9:60: `timeout` only applies to `mode: key`",
        ]
    );
}

#[test]
fn custom_reducer_compiles_with_item_and_other() {
    let src = with_stages(
        "  r:\n    kind: reduce\n    from: a\n    to: b\n    reducer: {init: '0', update: '. + $item.n', merge: '. + $othr'}\n",
    );
    assert_eq!(
        one_error(&src),
        "10:61: `merge` of stage `r` does not compile: undefined variable `$othr`"
    );
}

#[test]
fn every_error_is_reported_at_once() {
    let src = "pipeline: p\ntopics:\n  a: 2\nstages:\n  s1: {kind: shader, from: a, to: b}\n  s2: {kind: filter, from: a, to: b, where: '.x ==', colour: red}\n  s3: {kind: splitter, from: nope, routes: [{when: '.a', to: x}]}\n  s4: {kind: copier, from: a, to: [q, q]}\n";
    let e = errors(src);
    assert_eq!(e.len(), 6, "{e:#?}");
    let text = e.join("\n");
    for needle in [
        "unknown stage kind `shader`",
        "unknown field `colour`",
        "does not compile",
        "missing `default`",
        "reads topic `nope`",
        "names topic `q` twice",
    ] {
        assert!(text.contains(needle), "missing {needle}:\n{text}");
    }
}

#[test]
fn display_prints_file_line_col_and_hint() {
    let src = with_stages(
        "  s: {kind: shader, from: a, to: [b, d]}\n  t: {kind: copier, from: c, to: e}\n",
    );
    let err = parse_str(&src, "signup.yaml").expect_err("invalid");
    assert_eq!(
        err.to_string(),
        "signup.yaml:6:13: error: unknown stage kind `shader`\n  hint: did you mean `sharder`?\nsignup.yaml: 1 error"
    );
}

#[test]
fn unused_declared_topic_is_a_warning_not_an_error() {
    let plan = parse_str(
        &with_stages("  s: {kind: copier, from: a, to: b}\n"),
        "p.yaml",
    )
    .expect("valid");
    assert_eq!(plan.warnings.len(), 1);
    assert_eq!((plan.warnings[0].line, plan.warnings[0].col), (4, 3));
}

#[test]
fn batch_only_on_source_stages() {
    let src = with_stages(
        "  s: {kind: copier, from: a, to: b, batch: {records: 10}}\n  t: {kind: copier, from: b, to: d, batch: {every: 5s}}\n  u: {kind: copier, from: c, to: e}\n",
    );
    assert_eq!(
        one_error(&src),
        "7:44: stage `t` sets `batch` but reads no source topic"
    );
}

#[test]
fn illegal_names() {
    let e = errors(
        "pipeline: 'my pipe'\nstages:\n  'bad stage': {kind: copier, from: a, to: b}\ntopics: {a: 1}\n",
    );
    assert_eq!(e.len(), 2, "{e:#?}");
    assert!(e[0].contains("pipeline name `my pipe` is not a legal name"));
}

#[test]
fn an_expression_too_large_to_run_safely_is_an_error_where_it_grows_too_large() {
    // 5000 nested parentheses overflowed the stack of `millrace validate` (an abort).
    let deep = format!("{}.a{}", "(".repeat(5000), ")".repeat(5000));
    let src = with_stages(&format!(
        "  s: {{kind: filter, from: a, to: c, where: '{deep}'}}\n"
    ));
    let e = one_error(&src);
    // The 1001st parenthesis: the expression starts at column 45.
    assert!(
        e.starts_with("6:1045: `where` of stage `s` does not compile: expression too large"),
        "{e}"
    );
    assert_eq!(
        hints(&src),
        ["a map, filter or reduce per step keeps each expression small"]
    );
}
