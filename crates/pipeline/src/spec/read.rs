//! Walks the YAML node tree into a [`PipelineSpec`], reporting every problem it finds
//! (unknown field or kind, wrong type, missing field) instead of stopping at the first.
//! A stage's common fields are read here; its kind reads its own
//! ([`crate::patterns`]).

use std::collections::BTreeMap;

use super::{BackendSpec, PipelineSpec, StageSpec, TopicSpec};
use crate::diagnostics::{Diagnostic, did_you_mean};
use crate::expr::Format;
use crate::patterns::{self, Kind, Reads, Writes, a_kind};
use crate::plan::BatchPolicy;
use crate::yaml::node::{Node, Pos, Sp, Value};
use crate::yaml::reader::{Fields, Reader, describe};

/// Read a whole pipeline document. Problems go to `diags`; whatever could be read is
/// returned so later checks still run on the healthy parts.
pub fn read_pipeline(root: &Node, diags: &mut Vec<Diagnostic>) -> PipelineSpec {
    let mut r = Reader { diags };
    pipeline(&mut r, root)
}

const TOP_FIELDS: [&str; 5] = ["pipeline", "backend", "dead_letter", "topics", "stages"];
const COMMON_STAGE_FIELDS: [&str; 5] = ["kind", "from", "to", "format", "batch"];

/// What a field unknown to `kind` means elsewhere: where the kind names its outputs
/// instead of `to`, the kinds it belongs to (`by` in a splitter: "`by` is a field of a
/// sharder (did you mean `kind: sharder`?)"), or the closest field of another kind
/// when it looks like a typo of one.
fn field_elsewhere(kind: &Kind, field: &str) -> Option<String> {
    if let (Writes::Named(hint), "to") = (&kind.writes, field) {
        return Some((*hint).to_owned());
    }
    let others = || {
        patterns::KINDS
            .iter()
            .copied()
            .filter(move |k| k.name != kind.name)
    };
    let owners_of = |f: &str| -> Vec<&str> {
        others()
            .filter(|k| k.fields.contains(&f))
            .map(|k| k.name)
            .collect()
    };
    let of_kinds = |kinds: &[&str]| {
        let names: Vec<String> = kinds.iter().map(|k| a_kind(k)).collect();
        names.join(" or ")
    };
    match owners_of(field).as_slice() {
        [] => {
            let near = did_you_mean(field, others().flat_map(|k| k.fields.iter().copied()))?;
            Some(format!(
                "close to `{near}`, a field of {}",
                of_kinds(&owners_of(near))
            ))
        }
        [one] => Some(format!(
            "`{field}` is a field of {} (did you mean `kind: {one}`?)",
            a_kind(one)
        )),
        many => Some(format!("`{field}` is a field of {}", of_kinds(many))),
    }
}

fn pipeline(r: &mut Reader<'_>, root: &Node) -> PipelineSpec {
    let mut spec = PipelineSpec::default();
    let Some(f) = r.fields(root, "the pipeline file", &TOP_FIELDS, "a pipeline file") else {
        return spec;
    };
    let at = root.pos;
    if let Some(n) = r.required(
        &f,
        at,
        "pipeline",
        "the pipeline file",
        "name it: `pipeline: signup`",
    ) {
        spec.name = r
            .string(n, "`pipeline`")
            .and_then(|s| legal_name(r, s, "pipeline name"));
    }
    if let Some(n) = f.get("backend") {
        spec.backend = backend(r, n);
    }
    if let Some(n) = f.get("dead_letter") {
        spec.dead_letter = r.string(n, "`dead_letter`");
    }
    if let Some(n) = f.get("topics") {
        spec.topics = topic_specs(r, n);
    }
    if let Some(n) = r.required(
        &f,
        at,
        "stages",
        "the pipeline file",
        "add `stages:` with at least one stage",
    ) {
        spec.stages = stage_specs(r, n);
    }
    spec
}

/// Names become consumer groups and topic names: keep to Kafka's legal characters.
fn legal_name(r: &mut Reader<'_>, s: Sp<String>, what: &str) -> Option<Sp<String>> {
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if s.value.is_empty() || s.value.len() > 249 || !s.value.chars().all(legal) {
        r.err(
            s.pos,
            format!("{what} `{}` is not a legal name", s.value),
            "use 1 to 249 of: letters, digits, '.', '_', '-'",
        );
        return None;
    }
    Some(s)
}

fn backend(r: &mut Reader<'_>, node: &Node) -> Option<Sp<BackendSpec>> {
    if node.as_str() == Some("embedded") {
        return Some(Sp {
            value: BackendSpec::Embedded { data: None },
            pos: node.pos,
        });
    }
    let f = r.fields(node, "`backend`", &["embedded", "kafka"], "`backend`")?;
    let sp = |value| {
        Some(Sp {
            value,
            pos: node.pos,
        })
    };
    match (f.get("embedded"), f.get("kafka")) {
        (Some(_), Some(k)) => {
            r.err(
                k.pos,
                "`backend` takes one of `embedded` or `kafka`, not both",
                "",
            );
            None
        }
        (Some(e), None) => {
            let mut data = None;
            if !matches!(e.value, Value::Null) {
                let ef = r.fields(e, "`backend.embedded`", &["data"], "`embedded`")?;
                if let Some(d) = ef.get("data") {
                    data = Some(r.string(d, "`data`")?.value);
                }
            }
            sp(BackendSpec::Embedded { data })
        }
        (None, Some(k)) => {
            let kf = r.fields(
                k,
                "`backend.kafka`",
                &["bootstrap", "properties"],
                "`kafka`",
            )?;
            let b = r.required(
                &kf,
                k.pos,
                "bootstrap",
                "`backend.kafka`",
                "bootstrap: \"127.0.0.1:9092\"",
            )?;
            let bootstrap = r.string(b, "`bootstrap`")?.value;
            let properties = kf
                .get("properties")
                .map(|p| r.string_map(p, "client property"))
                .unwrap_or_default();
            sp(BackendSpec::Kafka {
                bootstrap,
                properties,
            })
        }
        (None, None) => {
            r.err(
                node.pos,
                "`backend` is empty",
                "write `backend: embedded` or `backend: {kafka: {bootstrap: ...}}`",
            );
            None
        }
    }
}

fn topic_specs(r: &mut Reader<'_>, node: &Node) -> Vec<TopicSpec> {
    let Value::Map(entries) = &node.value else {
        r.wrong_type(node, "`topics`", "a mapping of topic name to settings");
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, v) in entries {
        let Some(name) = r.string(k, "a topic name") else {
            continue;
        };
        let Some(name) = legal_name(r, name, "topic name") else {
            continue;
        };
        let mut t = TopicSpec {
            name,
            partitions: None,
            config: BTreeMap::new(),
        };
        // `name: 3` is short for `name: {partitions: 3}`; `name:` alone takes defaults.
        match &v.value {
            Value::Null => {}
            Value::Int(_) => t.partitions = r.uint(v, "`partitions`", 1),
            _ => {
                let what = format!("topic `{}`", t.name.value);
                if let Some(f) = r.fields(v, &what, &["partitions", "config"], "a topic") {
                    if let Some(p) = f.get("partitions") {
                        t.partitions = r.uint(p, "`partitions`", 1);
                    }
                    if let Some(c) = f.get("config") {
                        t.config = r.string_map(c, "topic config");
                    }
                }
            }
        }
        out.push(t);
    }
    out
}

fn stage_specs(r: &mut Reader<'_>, node: &Node) -> Vec<StageSpec> {
    let Value::Map(entries) = &node.value else {
        r.err(
            node.pos,
            format!(
                "`stages` must be a mapping of stage name to stage, found {}",
                node.type_name()
            ),
            "stages:\n    copy: { kind: copier, from: a, to: b }",
        );
        return Vec::new();
    };
    if entries.is_empty() {
        r.err(node.pos, "`stages` is empty", "add at least one stage");
    }
    entries
        .iter()
        .filter_map(|(k, v)| {
            let name = r.string(k, "a stage name")?;
            let name = legal_name(r, name, "stage name")?;
            stage(r, name, v)
        })
        .collect()
}

fn stage(r: &mut Reader<'_>, name: Sp<String>, node: &Node) -> Option<StageSpec> {
    let what = format!("stage `{}`", name.value);
    let Value::Map(entries) = &node.value else {
        r.wrong_type(node, &what, "a mapping");
        return None;
    };
    let at = name.pos;
    // The kind decides which fields are legal, so read it first.
    let kind_node = entries
        .iter()
        .find(|(k, _)| k.as_str() == Some("kind"))
        .map(|(_, v)| v);
    let kind_name = read_kind(r, kind_node, at, &what);
    let kind = kind_name.as_ref().and_then(|k| patterns::kind(&k.value));
    let (what, f) = match kind {
        Some(kind) => {
            let mut allowed: Vec<&str> = COMMON_STAGE_FIELDS.to_vec();
            allowed.extend_from_slice(kind.fields);
            if !kind.takes_to() {
                allowed.retain(|f| *f != "to");
            }
            let what = format!("{} stage `{}`", kind.name, name.value);
            let f = r.fields_hinted(node, &what, &allowed, &a_kind(kind.name), |field| {
                field_elsewhere(kind, field)
            })?;
            (what, f)
        }
        // With an unknown kind, only the common fields can be judged.
        None => (
            what,
            Fields {
                entries,
                pos: node.pos,
            },
        ),
    };

    let mut from = Vec::new();
    if let Some(n) = r.required(&f, at, "from", &what, "from: <topic>")
        && let Some((topics, _)) = r.topics(n, "`from`")
    {
        if let Some(kind) = kind {
            check_reads(r, kind, &f, n.pos, topics.len());
        }
        from = topics;
    }
    let (to, to_is_list) = match kind {
        Some(kind) if !kind.takes_to() => (Vec::new(), false),
        _ => read_to(r, kind, &f, at, &what),
    };
    let format = match f.get("format") {
        None => Format::Json,
        Some(n) => match n.as_str() {
            Some("json") => Format::Json,
            Some("text") => Format::Text,
            _ => {
                r.err(
                    n.pos,
                    format!("`format` must be json or text, found {}", describe(n)),
                    "json parses the value as JSON; text hands it to jq as a string",
                );
                Format::Json
            }
        },
    };
    let batch = f.get("batch").and_then(|n| batch(r, n));
    let kind_spec = kind.and_then(|kind| patterns::read(kind, r, &f, at, &what));
    Some(StageSpec {
        name,
        kind_name,
        from,
        to,
        to_is_list,
        format,
        batch,
        kind: kind_spec,
    })
}

/// The stage's `kind`, when it names a known kind.
fn read_kind(r: &mut Reader<'_>, node: Option<&Node>, at: Pos, what: &str) -> Option<Sp<String>> {
    let names = || patterns::KINDS.iter().map(|k| k.name);
    let one_of = || format!("one of: {}", names().collect::<Vec<_>>().join(", "));
    let Some(n) = node else {
        r.err(at, format!("{what} is missing `kind`"), one_of());
        return None;
    };
    let k = r.string(n, "`kind`")?;
    if patterns::kind(&k.value).is_some() {
        return Some(k);
    }
    let hint = match did_you_mean(&k.value, names()) {
        Some(s) => format!("did you mean `{s}`?"),
        None => one_of(),
    };
    r.err(k.pos, format!("unknown stage kind `{}`", k.value), hint);
    None
}

/// Whether `from` names as many topics as the kind reads.
fn check_reads(r: &mut Reader<'_>, kind: &Kind, f: &Fields<'_>, pos: Pos, count: usize) {
    match kind.reads {
        Reads::One if count != 1 => r.err(
            pos,
            format!(
                "{} reads exactly one topic, found {count}",
                a_kind(kind.name)
            ),
            "use a merger to combine topics first",
        ),
        Reads::TwoOrMore(needs_two) if count < 2 => {
            if let Some(who) = needs_two(f) {
                r.err(
                    pos,
                    format!("{who} reads two or more topics"),
                    "from: [a, b]",
                );
            }
        }
        _ => {}
    }
}

/// The stage's `to`, and whether it was written as a list. `kind` is `None` when it is
/// unknown: whether `to` is required then cannot be judged.
fn read_to(
    r: &mut Reader<'_>,
    kind: Option<&Kind>,
    f: &Fields<'_>,
    at: Pos,
    what: &str,
) -> (Vec<Sp<String>>, bool) {
    let required = match kind.map(|k| &k.writes) {
        Some(Writes::ManyOrNamed(named)) => !named(f),
        Some(_) => true,
        None => false,
    };
    let to_node = if required {
        r.required(f, at, "to", what, "to: <topic>")
    } else {
        f.get("to")
    };
    let Some(n) = to_node else {
        return (Vec::new(), false);
    };
    let Some((topics, is_list)) = r.topics(n, "`to`") else {
        return (Vec::new(), false);
    };
    if topics.is_empty() {
        r.err(
            n.pos,
            format!("{what} writes nowhere"),
            "name at least one topic in `to`",
        );
    } else if let Some(kind) = kind.filter(|k| matches!(k.writes, Writes::One))
        && topics.len() != 1
    {
        r.err(
            n.pos,
            format!(
                "{} writes exactly one topic, found {}",
                a_kind(kind.name),
                topics.len()
            ),
            "follow it with a copier to write several",
        );
    }
    (topics, is_list)
}

fn batch(r: &mut Reader<'_>, node: &Node) -> Option<Sp<BatchPolicy>> {
    let f = r.fields(node, "`batch`", &["records", "every"], "`batch`")?;
    let value = match (f.get("records"), f.get("every")) {
        (Some(n), None) => BatchPolicy::Records(r.u64(n, "`batch.records`")?),
        (None, Some(e)) => BatchPolicy::Every(r.duration(e, "`batch.every`")?),
        _ => {
            r.err(
                node.pos,
                "`batch` takes one of `records` or `every`",
                "batch: {records: 1000} or batch: {every: 5s}",
            );
            return None;
        }
    };
    Some(Sp { value, pos: f.pos })
}
