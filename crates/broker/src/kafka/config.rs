//! Client settings: millrace's defaults, the user's properties on top, and the few Java
//! client settings that librdkafka spells differently.
//!
//! The user's map may hold secrets (`sasl.password`, `ssl.key.password`, …). Nothing here
//! logs values, and `redact` scrubs them from any message that could reach the user.

use std::collections::BTreeMap;
use std::path::Path;

use rdkafka::ClientConfig;
use rdkafka::config::RDKafkaLogLevel;

use crate::error::BrokerError;

/// Property names whose values are secrets: never logged, never echoed in errors.
fn is_secret(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.contains("password")
        || n.contains("secret")
        || n.ends_with(".key.pem")
        || n == "ssl.key.pem"
        || n == "sasl.jaas.config"
        || n.starts_with("sasl.oauthbearer.config")
}

/// Replaces every secret value of `props` found in `message` with `***`.
pub(crate) fn redact(message: &str, props: &BTreeMap<String, String>) -> String {
    let mut out = message.to_string();
    for (k, v) in props {
        if is_secret(k) && !v.is_empty() {
            out = out.replace(v.as_str(), "***");
        }
    }
    out
}

/// Reads Kafka's `.properties` format (what `--command-config` takes): `key=value`,
/// `key: value` or `key value` lines; `#` and `!` start comments; a trailing `\`
/// continues a line; `\t`, `\n`, `\\`, `\=`, `\:` and `\uXXXX` escapes are understood.
pub fn read_properties_file(path: &Path) -> Result<BTreeMap<String, String>, BrokerError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| BrokerError::io(format!("cannot read {}", path.display()), e))?;
    Ok(parse_properties(&text))
}

/// Parses the text of a `.properties` file; see [`read_properties_file`].
pub fn parse_properties(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut logical = String::new();
    for raw in text.lines() {
        // Leading whitespace is dropped, on continuation lines too.
        let line = raw.trim_start();
        if logical.is_empty() && (line.is_empty() || line.starts_with('#') || line.starts_with('!'))
        {
            continue;
        }
        // A line ending in an odd number of backslashes continues on the next one.
        let trailing = line.chars().rev().take_while(|c| *c == '\\').count();
        if trailing % 2 == 1 {
            logical.push_str(&line[..line.len() - 1]);
            continue;
        }
        logical.push_str(line);
        let (k, v) = split_key_value(&logical);
        out.insert(unescape(&k), unescape(&v));
        logical.clear();
    }
    if !logical.is_empty() {
        let (k, v) = split_key_value(&logical);
        out.insert(unescape(&k), unescape(&v));
    }
    out
}

/// Splits at the first unescaped `=`, `:` or whitespace, as `java.util.Properties` does.
fn split_key_value(line: &str) -> (String, String) {
    let mut key = String::new();
    let mut chars = line.char_indices().peekable();
    let mut rest_at = line.len();
    while let Some((i, c)) = chars.next() {
        if c == '\\' {
            key.push(c);
            if let Some((_, n)) = chars.next() {
                key.push(n);
            }
            continue;
        }
        if c == '=' || c == ':' || c.is_whitespace() {
            rest_at = i;
            break;
        }
        key.push(c);
    }
    let rest = line[rest_at..].trim_start();
    // After whitespace, one `=` or `:` may still separate key and value.
    let rest = rest
        .strip_prefix('=')
        .or_else(|| rest.strip_prefix(':'))
        .unwrap_or(rest)
        .trim_start();
    (key, rest.to_string())
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\u{c}'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(ch) => out.push(ch),
                    None => {
                        out.push_str("\\u");
                        out.push_str(&hex);
                    }
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// Java client settings that have no librdkafka twin and are safe to drop.
const JAVA_ONLY_IGNORED: &[&str] = &[
    "key.serializer",
    "value.serializer",
    "key.deserializer",
    "value.deserializer",
    "interceptor.classes",
    "sasl.login.callback.handler.class",
    "client.dns.lookup",
];

/// Turns the user's properties into librdkafka's: drops Java-only class settings,
/// translates `sasl.jaas.config` for PLAIN/SCRAM into `sasl.username`/`sasl.password`,
/// and refuses Java keystores with a hint instead of librdkafka's bare "no such property".
pub(crate) fn to_librdkafka(
    props: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, BrokerError> {
    let mut out = BTreeMap::new();
    for (k, v) in props {
        let k = k.trim();
        if JAVA_ONLY_IGNORED.contains(&k) {
            continue;
        }
        match k {
            "sasl.jaas.config" => {
                let (user, pass) = parse_jaas(v).ok_or_else(|| {
                    BrokerError::Invalid(
                        "sasl.jaas.config: only PlainLoginModule / ScramLoginModule with \
                         username=\"…\" password=\"…\" can be translated; set sasl.username \
                         and sasl.password instead"
                            .to_string(),
                    )
                })?;
                out.entry("sasl.username".to_string()).or_insert(user);
                out.entry("sasl.password".to_string()).or_insert(pass);
            }
            "ssl.truststore.location"
            | "ssl.keystore.location"
            | "ssl.truststore.type"
            | "ssl.keystore.type"
            | "ssl.truststore.password"
            | "ssl.keystore.password" => {
                return Err(BrokerError::Invalid(format!(
                    "{k} is a Java keystore setting; librdkafka reads PEM files: use \
                     ssl.ca.location, ssl.certificate.location, ssl.key.location \
                     (and ssl.key.password)"
                )));
            }
            _ => {
                out.insert(k.to_string(), v.clone());
            }
        }
    }
    Ok(out)
}

/// `… required username="u" password="p";` → (u, p).
fn parse_jaas(v: &str) -> Option<(String, String)> {
    fn field(v: &str, name: &str) -> Option<String> {
        let at = v.find(&format!("{name}=\""))? + name.len() + 2;
        let end = v[at..].find('"')? + at;
        Some(v[at..end].to_string())
    }
    if !(v.contains("PlainLoginModule") || v.contains("ScramLoginModule")) {
        return None;
    }
    Some((field(v, "username")?, field(v, "password")?))
}

/// Settings of every client millrace makes, under `defaults` and the user's.
///
/// `enable.sparse.connections=false`: librdkafka connects to each broker as soon as the
/// metadata names it. Sparse (its default), a client connects to the bootstrap server,
/// drops that connection once the metadata names the cluster's own brokers, and holds
/// its next connection back for half of `reconnect.backoff.ms` (50 ms): the
/// producer's id, each admin request and a consumer's first fetch waited that long at
/// every start. A millrace client talks to the leaders of its topics' partitions,
/// which on most clusters are most brokers, so it would open those connections soon
/// anyway.
const ALL_CLIENTS: &[(&str, &str)] = &[("enable.sparse.connections", "false")];

/// Builds an rdkafka config: [`ALL_CLIENTS`], `defaults`, then the user's properties
/// (which win), then `bootstrap.servers`.
pub(crate) fn client_config(
    bootstrap: &str,
    defaults: &[(&str, &str)],
    user: &BTreeMap<String, String>,
) -> ClientConfig {
    let mut c = ClientConfig::new();
    for (k, v) in ALL_CLIENTS.iter().chain(defaults) {
        c.set(*k, *v);
    }
    for (k, v) in user {
        c.set(k, v);
    }
    c.set("bootstrap.servers", bootstrap);
    // librdkafka formats only the lines someone will see: as verbose as `tracing` is.
    use tracing::level_filters::LevelFilter;
    c.set_log_level(match LevelFilter::current() {
        LevelFilter::TRACE | LevelFilter::DEBUG => RDKafkaLogLevel::Debug,
        LevelFilter::INFO => RDKafkaLogLevel::Warning,
        _ => RDKafkaLogLevel::Error,
    });
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_format() {
        let p = parse_properties(
            "# comment\n! also\n\nsecurity.protocol=SASL_SSL\nsasl.mechanism : PLAIN\n\
             sasl.username alice\nlong=a\\\n   b\nescaped\\=key=v\\tx\nempty=\n",
        );
        assert_eq!(p["security.protocol"], "SASL_SSL");
        assert_eq!(p["sasl.mechanism"], "PLAIN");
        assert_eq!(p["sasl.username"], "alice");
        assert_eq!(p["long"], "ab");
        assert_eq!(p["escaped=key"], "v\tx");
        assert_eq!(p["empty"], "");
        assert_eq!(p.len(), 6);
    }

    #[test]
    fn jaas_is_translated_and_redacted() {
        let mut props = BTreeMap::new();
        props.insert(
            "sasl.jaas.config".to_string(),
            "org.apache.kafka.common.security.plain.PlainLoginModule required \
             username=\"alice\" password=\"s3cret\";"
                .to_string(),
        );
        props.insert("key.serializer".to_string(), "x".to_string());
        let out = to_librdkafka(&props).expect("translates");
        assert_eq!(out["sasl.username"], "alice");
        assert_eq!(out["sasl.password"], "s3cret");
        assert!(!out.contains_key("key.serializer"));
        assert_eq!(redact("bad password s3cret", &out), "bad password ***");
    }

    #[test]
    fn every_client_connects_to_brokers_as_the_metadata_names_them() {
        let c = client_config("h:9092", &[("acks", "all")], &BTreeMap::new());
        assert_eq!(c.get("enable.sparse.connections"), Some("false"));
        assert_eq!(c.get("acks"), Some("all"));
        // The user's setting wins.
        let user = BTreeMap::from([("enable.sparse.connections".to_string(), "true".to_string())]);
        let c = client_config("h:9092", &[], &user);
        assert_eq!(c.get("enable.sparse.connections"), Some("true"));
    }

    #[test]
    fn java_keystores_are_refused_with_a_hint() {
        let mut props = BTreeMap::new();
        props.insert("ssl.truststore.location".to_string(), "/x.jks".to_string());
        let err = to_librdkafka(&props).expect_err("refused").to_string();
        assert!(err.contains("ssl.ca.location"), "{err}");
    }
}
