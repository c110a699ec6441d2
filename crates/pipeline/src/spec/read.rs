//! Walks the YAML node tree into a [`PipelineSpec`], reporting every problem it finds
//! (unknown field or kind, wrong type, missing field) instead of stopping at the first.

use std::collections::BTreeMap;
use std::time::Duration;

use super::node::{Node, Pos, Value};
use super::{
    BackendSpec, ExprSrc, KINDS, KindSpec, PipelineSpec, ReducerSpec, RouteSpec, ShardsSpec, Sp,
    StageSpec, TopicSpec,
};
use crate::diagnostics::{Diagnostic, did_you_mean};
use crate::expr::Format;
use crate::plan::{BatchPolicy, Emit, JoinMode, SplitMode};

/// Read a whole pipeline document. Problems go to `diags`; whatever could be read is
/// returned so later checks still run on the healthy parts.
pub fn read_pipeline(root: &Node, diags: &mut Vec<Diagnostic>) -> PipelineSpec {
    let mut r = Reader { diags };
    r.pipeline(root)
}

pub(crate) fn error_at(pos: Pos, msg: impl Into<String>) -> Diagnostic {
    let mut d = Diagnostic::error(pos.line, pos.col, msg);
    d.offset = pos.byte;
    d
}

const TOP_FIELDS: [&str; 5] = ["pipeline", "backend", "dead_letter", "topics", "stages"];
const COMMON_STAGE_FIELDS: [&str; 5] = ["kind", "from", "to", "format", "batch"];

/// The fields each stage kind takes besides the common ones.
fn kind_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "filter" => &["where"],
        "map" => &["expr"],
        "splitter" => &["mode", "routes", "default"],
        "sharder" => &["by", "shards", "default"],
        "exec" => &[
            "command",
            "workers",
            "timeout",
            "retries",
            "ordered_by_key",
            "env",
        ],
        "join" => &["mode", "key", "timeout", "combine"],
        "reduce" => &["group_by", "reducer", "of", "emit", "combine"],
        _ => &[],
    }
}

/// `a sharder`, `an exec`.
fn a_kind(kind: &str) -> String {
    match kind.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u') => format!("an {kind}"),
        _ => format!("a {kind}"),
    }
}

/// What a field unknown to `kind` means elsewhere: the kinds it belongs to (`by` in a
/// splitter: "`by` is a field of a sharder (did you mean `kind: sharder`?)"), or the
/// closest field of another kind when it looks like a typo of one.
fn field_elsewhere(kind: &str, field: &str) -> Option<String> {
    if kind == "splitter" && field == "to" {
        return Some(
            "a splitter names its outputs in `routes` (each with `when` and `to`) and `default`"
                .to_owned(),
        );
    }
    let others = || KINDS.iter().copied().filter(move |k| *k != kind);
    let owners: Vec<&str> = others()
        .filter(|k| kind_fields(k).contains(&field))
        .collect();
    let of_kinds = |kinds: &[&str]| {
        let names: Vec<String> = kinds.iter().map(|k| a_kind(k)).collect();
        names.join(" or ")
    };
    match owners.as_slice() {
        [] => {
            let near = did_you_mean(field, others().flat_map(kind_fields).copied())?;
            let owners: Vec<&str> = others()
                .filter(|k| kind_fields(k).contains(&near))
                .collect();
            Some(format!(
                "close to `{near}`, a field of {}",
                of_kinds(&owners)
            ))
        }
        [one] => Some(format!(
            "`{field}` is a field of {} (did you mean `kind: {one}`?)",
            a_kind(one)
        )),
        many => Some(format!("`{field}` is a field of {}", of_kinds(many))),
    }
}

/// A mapping being read: which keys were looked at, so the rest are "unknown".
struct Fields<'n> {
    entries: &'n [(Node, Node)],
    pos: Pos,
}

impl<'n> Fields<'n> {
    fn get(&self, name: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _)| k.as_str() == Some(name))
            .map(|(_, v)| v)
    }
}

struct Reader<'d> {
    diags: &'d mut Vec<Diagnostic>,
}

impl Reader<'_> {
    fn err(&mut self, pos: Pos, msg: impl Into<String>, hint: impl Into<String>) {
        let hint = hint.into();
        let d = error_at(pos, msg);
        self.diags.push(if hint.is_empty() {
            d
        } else {
            d.with_hint(hint)
        });
    }

    fn wrong_type(&mut self, node: &Node, what: &str, expected: &str) {
        self.err(
            node.pos,
            format!("{what} must be {expected}, found {}", node.type_name()),
            "",
        );
    }

    /// A mapping whose keys must all be in `allowed`.
    fn fields<'n>(
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
    fn fields_hinted<'n>(
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

    fn required<'n>(
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

    fn string(&mut self, node: &Node, what: &str) -> Option<Sp<String>> {
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
    fn scalar_text(&mut self, node: &Node, what: &str) -> Option<String> {
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

    fn string_map(&mut self, node: &Node, what: &str) -> BTreeMap<String, String> {
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

    fn uint(&mut self, node: &Node, what: &str, min: i64) -> Option<Sp<u32>> {
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

    fn u64(&mut self, node: &Node, what: &str) -> Option<u64> {
        match node.value {
            Value::Int(i) if i >= 1 => u64::try_from(i).ok(),
            _ => {
                self.wrong_type(node, what, "a whole number of at least 1");
                None
            }
        }
    }

    fn bool(&mut self, node: &Node, what: &str) -> Option<bool> {
        match node.value {
            Value::Bool(b) => Some(b),
            _ => {
                self.wrong_type(node, what, "true or false");
                None
            }
        }
    }

    fn duration(&mut self, node: &Node, what: &str) -> Option<Duration> {
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

    fn expr(&mut self, node: &Node, what: &str) -> Option<ExprSrc> {
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
    fn topics(&mut self, node: &Node, what: &str) -> Option<(Vec<Sp<String>>, bool)> {
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

    fn pipeline(&mut self, root: &Node) -> PipelineSpec {
        let mut spec = PipelineSpec::default();
        let Some(f) = self.fields(root, "the pipeline file", &TOP_FIELDS, "a pipeline file") else {
            return spec;
        };
        let at = root.pos;
        if let Some(n) = self.required(
            &f,
            at,
            "pipeline",
            "the pipeline file",
            "name it: `pipeline: signup`",
        ) {
            spec.name = self
                .string(n, "`pipeline`")
                .and_then(|s| self.name(s, "pipeline name"));
        }
        if let Some(n) = f.get("backend") {
            spec.backend = self.backend(n);
        }
        if let Some(n) = f.get("dead_letter") {
            spec.dead_letter = self.string(n, "`dead_letter`");
        }
        if let Some(n) = f.get("topics") {
            spec.topics = self.topic_specs(n);
        }
        if let Some(n) = self.required(
            &f,
            at,
            "stages",
            "the pipeline file",
            "add `stages:` with at least one stage",
        ) {
            spec.stages = self.stage_specs(n);
        }
        spec
    }

    /// Names become consumer groups and topic names: keep to Kafka's legal characters.
    fn name(&mut self, s: Sp<String>, what: &str) -> Option<Sp<String>> {
        let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if s.value.is_empty() || s.value.len() > 249 || !s.value.chars().all(legal) {
            self.err(
                s.pos,
                format!("{what} `{}` is not a legal name", s.value),
                "use 1 to 249 of: letters, digits, '.', '_', '-'",
            );
            return None;
        }
        Some(s)
    }

    fn backend(&mut self, node: &Node) -> Option<Sp<BackendSpec>> {
        if node.as_str() == Some("embedded") {
            return Some(Sp {
                value: BackendSpec::Embedded { data: None },
                pos: node.pos,
            });
        }
        let f = self.fields(node, "`backend`", &["embedded", "kafka"], "`backend`")?;
        let sp = |value| {
            Some(Sp {
                value,
                pos: node.pos,
            })
        };
        match (f.get("embedded"), f.get("kafka")) {
            (Some(_), Some(k)) => {
                self.err(
                    k.pos,
                    "`backend` takes one of `embedded` or `kafka`, not both",
                    "",
                );
                None
            }
            (Some(e), None) => {
                let mut data = None;
                if !matches!(e.value, Value::Null) {
                    let ef = self.fields(e, "`backend.embedded`", &["data"], "`embedded`")?;
                    if let Some(d) = ef.get("data") {
                        data = Some(self.string(d, "`data`")?.value);
                    }
                }
                sp(BackendSpec::Embedded { data })
            }
            (None, Some(k)) => {
                let kf = self.fields(
                    k,
                    "`backend.kafka`",
                    &["bootstrap", "properties"],
                    "`kafka`",
                )?;
                let b = self.required(
                    &kf,
                    k.pos,
                    "bootstrap",
                    "`backend.kafka`",
                    "bootstrap: \"127.0.0.1:9092\"",
                )?;
                let bootstrap = self.string(b, "`bootstrap`")?.value;
                let properties = kf
                    .get("properties")
                    .map(|p| self.string_map(p, "client property"))
                    .unwrap_or_default();
                sp(BackendSpec::Kafka {
                    bootstrap,
                    properties,
                })
            }
            (None, None) => {
                self.err(
                    node.pos,
                    "`backend` is empty",
                    "write `backend: embedded` or `backend: {kafka: {bootstrap: ...}}`",
                );
                None
            }
        }
    }

    fn topic_specs(&mut self, node: &Node) -> Vec<TopicSpec> {
        let Value::Map(entries) = &node.value else {
            self.wrong_type(node, "`topics`", "a mapping of topic name to settings");
            return Vec::new();
        };
        let mut out = Vec::new();
        for (k, v) in entries {
            let Some(name) = self.string(k, "a topic name") else {
                continue;
            };
            let Some(name) = self.name(name, "topic name") else {
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
                Value::Int(_) => t.partitions = self.uint(v, "`partitions`", 1),
                _ => {
                    let what = format!("topic `{}`", t.name.value);
                    if let Some(f) = self.fields(v, &what, &["partitions", "config"], "a topic") {
                        if let Some(p) = f.get("partitions") {
                            t.partitions = self.uint(p, "`partitions`", 1);
                        }
                        if let Some(c) = f.get("config") {
                            t.config = self.string_map(c, "topic config");
                        }
                    }
                }
            }
            out.push(t);
        }
        out
    }

    fn stage_specs(&mut self, node: &Node) -> Vec<StageSpec> {
        let Value::Map(entries) = &node.value else {
            self.err(
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
            self.err(node.pos, "`stages` is empty", "add at least one stage");
        }
        entries
            .iter()
            .filter_map(|(k, v)| {
                let name = self.string(k, "a stage name")?;
                let name = self.name(name, "stage name")?;
                self.stage(name, v)
            })
            .collect()
    }

    fn stage(&mut self, name: Sp<String>, node: &Node) -> Option<StageSpec> {
        let what = format!("stage `{}`", name.value);
        let Value::Map(entries) = &node.value else {
            self.wrong_type(node, &what, "a mapping");
            return None;
        };
        let at = name.pos;
        // The kind decides which fields are legal, so read it first.
        let kind_node = entries
            .iter()
            .find(|(k, _)| k.as_str() == Some("kind"))
            .map(|(_, v)| v);
        let kind_name = match kind_node {
            None => {
                self.err(
                    at,
                    format!("{what} is missing `kind`"),
                    format!("one of: {}", KINDS.join(", ")),
                );
                None
            }
            Some(n) => match self.string(n, "`kind`") {
                Some(k) if KINDS.contains(&k.value.as_str()) => Some(k),
                Some(k) => {
                    let hint = match did_you_mean(&k.value, KINDS) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!("one of: {}", KINDS.join(", ")),
                    };
                    self.err(k.pos, format!("unknown stage kind `{}`", k.value), hint);
                    None
                }
                None => None,
            },
        };
        let kind = kind_name.as_ref().map(|k| k.value.as_str()).unwrap_or("");
        let mut allowed: Vec<&str> = COMMON_STAGE_FIELDS.to_vec();
        allowed.extend_from_slice(kind_fields(kind));
        if kind == "splitter" {
            allowed.retain(|f| *f != "to");
        }
        let what = if kind.is_empty() {
            what
        } else {
            format!("{kind} stage `{}`", name.value)
        };
        let example = if kind.is_empty() {
            "a stage".to_owned()
        } else {
            a_kind(kind)
        };
        // With an unknown kind, only the common fields can be judged.
        let f = if kind_name.is_some() {
            self.fields_hinted(node, &what, &allowed, &example, |field| {
                field_elsewhere(kind, field)
            })?
        } else {
            Fields {
                entries,
                pos: node.pos,
            }
        };

        let mut from = Vec::new();
        if let Some(n) = self.required(&f, at, "from", &what, "from: <topic>")
            && let Some((topics, _)) = self.topics(n, "`from`")
        {
            {
                let single_input = matches!(
                    kind,
                    "copier" | "filter" | "splitter" | "sharder" | "map" | "exec"
                );
                if single_input && topics.len() != 1 {
                    self.err(
                        n.pos,
                        format!(
                            "{} reads exactly one topic, found {}",
                            a_kind(kind),
                            topics.len()
                        ),
                        "use a merger to combine topics first",
                    );
                } else if kind == "merger" && topics.len() < 2 {
                    self.err(n.pos, "a merger reads two or more topics", "from: [a, b]");
                } else if kind == "join"
                    && topics.len() < 2
                    && !matches!(f.get("mode").and_then(Node::as_str), Some("barrier") | None)
                {
                    self.err(
                        n.pos,
                        "a join by key or zip reads two or more topics",
                        "from: [a, b]",
                    );
                }
                from = topics;
            }
        }
        let mut to = Vec::new();
        let mut to_is_list = false;
        if kind != "splitter" {
            // A sharder with named shards may leave `to` out: the shards name the topics.
            let optional = kind == "sharder"
                && matches!(f.get("shards").map(|n| &n.value), Some(Value::Map(_)));
            // With an unknown kind, whether `to` is required cannot be judged.
            let to_node = if optional || kind.is_empty() {
                f.get("to")
            } else {
                self.required(&f, at, "to", &what, "to: <topic>")
            };
            if let Some(n) = to_node
                && let Some((topics, is_list)) = self.topics(n, "`to`")
            {
                {
                    let single_output = matches!(
                        kind,
                        "filter" | "merger" | "map" | "exec" | "join" | "reduce"
                    );
                    if topics.is_empty() {
                        self.err(
                            n.pos,
                            format!("{what} writes nowhere"),
                            "name at least one topic in `to`",
                        );
                    } else if single_output && topics.len() != 1 {
                        self.err(
                            n.pos,
                            format!(
                                "{} writes exactly one topic, found {}",
                                a_kind(kind),
                                topics.len()
                            ),
                            "follow it with a copier to write several",
                        );
                    }
                    to = topics;
                    to_is_list = is_list;
                }
            }
        }
        let format = match f.get("format") {
            None => Format::Json,
            Some(n) => match n.as_str() {
                Some("json") => Format::Json,
                Some("text") => Format::Text,
                _ => {
                    self.err(
                        n.pos,
                        format!("`format` must be json or text, found {}", describe(n)),
                        "json parses the value as JSON; text hands it to jq as a string",
                    );
                    Format::Json
                }
            },
        };
        let batch = f.get("batch").and_then(|n| self.batch(n));

        let kind_spec = match kind {
            "" => None,
            _ => self.kind_spec(kind, &f, at, &what),
        };
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

    fn batch(&mut self, node: &Node) -> Option<Sp<BatchPolicy>> {
        let f = self.fields(node, "`batch`", &["records", "every"], "`batch`")?;
        let value = match (f.get("records"), f.get("every")) {
            (Some(r), None) => BatchPolicy::Records(self.u64(r, "`batch.records`")?),
            (None, Some(e)) => BatchPolicy::Every(self.duration(e, "`batch.every`")?),
            _ => {
                self.err(
                    node.pos,
                    "`batch` takes one of `records` or `every`",
                    "batch: {records: 1000} or batch: {every: 5s}",
                );
                return None;
            }
        };
        Some(Sp { value, pos: f.pos })
    }

    fn kind_spec(&mut self, kind: &str, f: &Fields<'_>, at: Pos, what: &str) -> Option<KindSpec> {
        Some(match kind {
            "copier" => KindSpec::Copier,
            "merger" => KindSpec::Merger,
            "filter" => {
                let n = self.required(f, at, "where", what, "where: '.region == \"eu\"'")?;
                KindSpec::Filter {
                    where_: self.expr(n, "`where`")?,
                }
            }
            "map" => {
                let n = self.required(
                    f,
                    at,
                    "expr",
                    what,
                    "expr: '{user_id, email}' (0..n outputs per record)",
                )?;
                KindSpec::Map {
                    expr: self.expr(n, "`expr`")?,
                }
            }
            "splitter" => self.splitter(f, at, what)?,
            "sharder" => self.sharder(f, what)?,
            "exec" => self.exec(f, at, what)?,
            "join" => self.join(f, at, what)?,
            "reduce" => self.reduce(f, at, what)?,
            _ => return None,
        })
    }

    fn splitter(&mut self, f: &Fields<'_>, at: Pos, what: &str) -> Option<KindSpec> {
        let mode = match f.get("mode") {
            None => Some(SplitMode::First),
            Some(n) => match n.as_str() {
                Some("first") => Some(SplitMode::First),
                Some("all") => Some(SplitMode::All),
                _ => {
                    self.err(
                        n.pos,
                        format!(
                            "`mode` of a splitter must be first or all, found {}",
                            describe(n)
                        ),
                        "first: the first matching route; all: every matching route",
                    );
                    None
                }
            },
        };
        let default = self.required(
            f,
            at,
            "default",
            what,
            "a splitter needs a `default` topic for records no route takes, so nothing is dropped",
        );
        let default = default.and_then(|n| self.string(n, "`default`"));
        let routes = self.required(f, at, "routes", what, "routes: [{when: '.x', to: topic}]");
        let routes = routes.and_then(|n| {
            let Value::Seq(items) = &n.value else {
                self.wrong_type(n, "`routes`", "a list of {when, to}");
                return None;
            };
            if items.is_empty() {
                self.err(n.pos, "`routes` is empty", "add a route, or use a copier");
            }
            let mut out = Vec::new();
            let mut ok = true;
            for item in items {
                let route = self
                    .fields(item, "a route", &["when", "to"], "a route")
                    .and_then(|rf| {
                        let w = self.required(
                            &rf,
                            item.pos,
                            "when",
                            "a route",
                            "when: '.notify | index(\"email\")'",
                        );
                        let t = self.required(
                            &rf,
                            item.pos,
                            "to",
                            "a route",
                            "a route goes to a topic: to: <topic>",
                        );
                        let when = w.and_then(|w| self.expr(w, "`when`"));
                        let to = t.and_then(|t| self.string(t, "`to`"));
                        Some(RouteSpec {
                            when: when?,
                            to: to?,
                        })
                    });
                match route {
                    Some(r) => out.push(r),
                    None => ok = false,
                }
            }
            ok.then_some(out)
        });
        Some(KindSpec::Splitter {
            mode: mode?,
            routes: routes?,
            default: default?,
        })
    }

    fn sharder(&mut self, f: &Fields<'_>, _what: &str) -> Option<KindSpec> {
        let by = match f.get("by") {
            Some(n) => Some(self.expr(n, "`by`")?),
            None => None,
        };
        let shards = match f.get("shards") {
            None => None,
            Some(n) => match &n.value {
                Value::Int(_) => Some(ShardsSpec::Count(self.uint(n, "`shards`", 1)?)),
                Value::Map(entries) => {
                    let mut out = Vec::new();
                    for (k, v) in entries {
                        let key = Sp {
                            value: k.key_text(),
                            pos: k.pos,
                        };
                        out.push((key, self.string(v, "a shard's topic")?));
                    }
                    if out.is_empty() {
                        self.err(
                            n.pos,
                            "`shards` is empty",
                            "shards: {eu: signups-eu, us: signups-us}",
                        );
                    }
                    Some(ShardsSpec::Named(out))
                }
                _ => {
                    self.err(n.pos, format!("`shards` must be a count or a mapping of shard key to topic, found {}", n.type_name()), "shards: 8 (partitions of `to`) or shards: {eu: signups-eu, us: signups-us}");
                    return None;
                }
            },
        };
        let default = match f.get("default") {
            Some(n) => Some(self.string(n, "`default`")?),
            None => None,
        };
        Some(KindSpec::Sharder {
            by,
            shards,
            default,
        })
    }

    fn exec(&mut self, f: &Fields<'_>, at: Pos, what: &str) -> Option<KindSpec> {
        let cmd = self.required(
            f,
            at,
            "command",
            what,
            "command: [python3, worker.py] (argv, never a shell string)",
        );
        let command = cmd.and_then(|n| match &n.value {
            Value::Seq(items) if !items.is_empty() => items
                .iter()
                .map(|i| self.scalar_text(i, "each argument of `command`"))
                .collect::<Option<Vec<_>>>(),
            Value::Str(_) => {
                self.err(
                    n.pos,
                    "`command` must be a list of arguments, not a string",
                    "command: [python3, worker.py]; it runs without a shell",
                );
                None
            }
            _ => {
                self.wrong_type(n, "`command`", "a non-empty list of arguments");
                None
            }
        });
        let workers = f
            .get("workers")
            .map_or(Some(1), |n| self.uint(n, "`workers`", 1).map(|s| s.value));
        let timeout = f.get("timeout").map_or(Some(Duration::from_secs(30)), |n| {
            self.duration(n, "`timeout`")
        });
        let retries = f
            .get("retries")
            .map_or(Some(3), |n| self.uint(n, "`retries`", 0).map(|s| s.value));
        let ordered = f
            .get("ordered_by_key")
            .map_or(Some(false), |n| self.bool(n, "`ordered_by_key`"));
        let env = f
            .get("env")
            .map(|n| self.string_map(n, "environment variable"))
            .unwrap_or_default();
        Some(KindSpec::Exec {
            command: command?,
            workers: workers?,
            timeout: timeout?,
            retries: retries?,
            ordered_by_key: ordered?,
            env,
        })
    }

    fn join(&mut self, f: &Fields<'_>, at: Pos, what: &str) -> Option<KindSpec> {
        let mode_node = self.required(f, at, "mode", what, "mode: barrier, key or zip")?;
        let mode = match mode_node.as_str() {
            Some("barrier") => JoinMode::Barrier,
            Some("key") => JoinMode::Key,
            Some("zip") => JoinMode::Zip,
            _ => {
                let hint = match mode_node.as_str().and_then(|m| did_you_mean(m, ["barrier", "key", "zip"])) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => "barrier: release a batch when all inputs are complete; key: combine items with equal keys; zip: pair items by arrival".to_owned(),
                };
                self.err(
                    mode_node.pos,
                    format!(
                        "join `mode` must be barrier, key or zip, found {}",
                        describe(mode_node)
                    ),
                    hint,
                );
                return None;
            }
        };
        let key = match (f.get("key"), mode) {
            (Some(n), JoinMode::Key) => Some(self.expr(n, "`key`")?),
            (None, JoinMode::Key) => {
                self.err(
                    at,
                    format!("{what} joins by key but is missing `key`"),
                    "key: '.id'",
                );
                return None;
            }
            (Some(n), _) => {
                self.err(
                    n.pos,
                    "`key` only applies to `mode: key`",
                    "remove it, or set mode: key",
                );
                return None;
            }
            (None, _) => None,
        };
        let timeout = match (f.get("timeout"), mode) {
            (Some(n), JoinMode::Key) => Some(self.duration(n, "`timeout`")?),
            (Some(n), _) => {
                self.err(
                    n.pos,
                    "`timeout` only applies to `mode: key`",
                    "a barrier waits for the batch's end; remove it",
                );
                return None;
            }
            (None, _) => None,
        };
        let combine = match (f.get("combine"), mode) {
            (Some(n), JoinMode::Barrier) => self.bool(n, "`combine`")?,
            (Some(n), _) => {
                self.err(
                    n.pos,
                    "`combine` only applies to `mode: barrier`",
                    "key and zip joins always combine",
                );
                return None;
            }
            (None, _) => false,
        };
        Some(KindSpec::Join {
            mode: Sp {
                value: mode,
                pos: mode_node.pos,
            },
            key,
            timeout,
            combine,
        })
    }

    fn reduce(&mut self, f: &Fields<'_>, at: Pos, what: &str) -> Option<KindSpec> {
        let group_by = match f.get("group_by") {
            Some(n) => Some(self.expr(n, "`group_by`")?),
            None => None,
        };
        const BUILTINS: [&str; 7] = ["count", "sum", "min", "max", "mean", "histogram", "collect"];
        let rn = self.required(
            f,
            at,
            "reducer",
            what,
            "reducer: count, sum, min, max, mean, histogram, collect, or {init, update, merge}",
        )?;
        let reducer = match &rn.value {
            Value::Str(s) => match s.as_str() {
                "count" => ReducerSpec::Count,
                "sum" => ReducerSpec::Sum,
                "min" => ReducerSpec::Min,
                "max" => ReducerSpec::Max,
                "mean" => ReducerSpec::Mean,
                "histogram" => ReducerSpec::Histogram,
                "collect" => ReducerSpec::Collect,
                other => {
                    let hint = match did_you_mean(other, BUILTINS) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!(
                            "one of: {}, or a custom {{init, update, merge}}",
                            BUILTINS.join(", ")
                        ),
                    };
                    self.err(rn.pos, format!("unknown reducer `{other}`"), hint);
                    return None;
                }
            },
            Value::Map(_) => {
                let cf = self.fields(
                    rn,
                    "a custom reducer",
                    &["init", "update", "merge"],
                    "a custom reducer",
                )?;
                let mut part = |name: &str, hint: &str| {
                    self.required(&cf, rn.pos, name, "a custom reducer", hint)
                        .and_then(|n| self.expr(n, &format!("`{name}`")))
                };
                let init = part("init", "init: '0' (the empty accumulator)");
                let update = part(
                    "update",
                    "update: '. + $item.n' (accumulator is ., the item is $item)",
                );
                let merge = part("merge", "merge: '. + $other' (combine two accumulators)");
                ReducerSpec::Custom {
                    init: init?,
                    update: update?,
                    merge: merge?,
                }
            }
            _ => {
                self.wrong_type(rn, "`reducer`", "a reducer name or {init, update, merge}");
                return None;
            }
        };
        let of = match f.get("of") {
            Some(n) if matches!(reducer, ReducerSpec::Count) => {
                self.err(
                    n.pos,
                    "`of` does not apply to the count reducer",
                    "count counts items; remove `of`",
                );
                return None;
            }
            Some(n) => Some(self.expr(n, "`of`")?),
            None => {
                if matches!(
                    reducer,
                    ReducerSpec::Sum
                        | ReducerSpec::Min
                        | ReducerSpec::Max
                        | ReducerSpec::Mean
                        | ReducerSpec::Histogram
                ) {
                    self.err(
                        at,
                        format!(
                            "{what} uses the {} reducer but is missing `of`",
                            BUILTINS
                                .iter()
                                .find(|b| reducer_is(&reducer, b))
                                .unwrap_or(&"")
                        ),
                        "of: '.n' picks the number to aggregate",
                    );
                    return None;
                }
                None
            }
        };
        let emit = match f.get("emit") {
            None => Emit::default(),
            Some(n) => {
                let ef = self.fields(n, "`emit`", &["every_records", "every"], "`emit`")?;
                Emit {
                    every_records: match ef.get("every_records") {
                        Some(r) => Some(self.u64(r, "`emit.every_records`")?),
                        None => None,
                    },
                    every: match ef.get("every") {
                        Some(e) => Some(self.duration(e, "`emit.every`")?),
                        None => None,
                    },
                }
            }
        };
        let combine = match f.get("combine") {
            Some(n) => Some(Sp {
                value: self.bool(n, "`combine`")?,
                pos: n.pos,
            }),
            None => None,
        };
        Some(KindSpec::Reduce {
            group_by,
            reducer: Sp {
                value: reducer,
                pos: rn.pos,
            },
            of,
            emit,
            combine,
        })
    }
}

fn reducer_is(r: &ReducerSpec, name: &str) -> bool {
    matches!(
        (r, name),
        (ReducerSpec::Sum, "sum")
            | (ReducerSpec::Min, "min")
            | (ReducerSpec::Max, "max")
            | (ReducerSpec::Mean, "mean")
            | (ReducerSpec::Histogram, "histogram")
    )
}

/// A node's value as a user would recognise it in a message.
fn describe(node: &Node) -> String {
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
