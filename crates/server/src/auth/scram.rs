//! SCRAM-SHA-256, the server's side (RFC 5802, with SHA-256 as RFC 7677 names it),
//! as Kafka runs it inside SaslAuthenticate: the client's first message, the server's
//! first (nonce, salt, iterations), the client's final (its proof), the server's final
//! (its signature, so the client knows the server held the password too).
//!
//! Passwords are salted and hashed when the users file is read; the exchange only
//! needs the stored and server keys. An unknown user gets a made-up salt and fails at
//! the proof like a wrong password, so the exchange does not tell who exists. Channel
//! binding is not offered (plain TCP), and a client that asks for it is refused.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// The mechanism's name in SaslHandshake.
pub const MECHANISM: &str = "SCRAM-SHA-256";
/// PBKDF2 iterations: RFC 7677's minimum, and what Kafka uses by default.
pub const ITERATIONS: u32 = 4096;

/// What the server keeps of one user's password.
#[derive(Clone)]
pub struct Credential {
    pub salt: Vec<u8>,
    pub iterations: u32,
    stored_key: [u8; 32],
    server_key: [u8; 32],
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential").finish_non_exhaustive()
    }
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC takes a key of any length, so this cannot fail.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    m.update(data);
    m.finalize().into_bytes().into()
}

impl Credential {
    /// Salts and hashes `password` with a fresh random salt.
    pub fn new(password: &str) -> Credential {
        let mut salt = vec![0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        Credential::with_salt(password, salt, ITERATIONS)
    }

    pub fn with_salt(password: &str, salt: Vec<u8>, iterations: u32) -> Credential {
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), &salt, iterations, &mut salted);
        let client_key = hmac(&salted, b"Client Key");
        Credential {
            salt,
            iterations,
            stored_key: Sha256::digest(client_key).into(),
            server_key: hmac(&salted, b"Server Key"),
        }
    }
}

/// Where one exchange is.
#[derive(Debug)]
pub enum Exchange {
    /// Waiting for the client's first message.
    Start,
    /// The server's first message was sent.
    Challenged {
        user: String,
        credential: Option<Credential>,
        nonce: String,
        gs2_header: String,
        auth_message_start: String,
    },
}

/// One step's outcome.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send these bytes and wait for the client's next message.
    Continue(Vec<u8>),
    /// Authenticated as this user: send the bytes (the server's final message).
    Done { user: String, reply: Vec<u8> },
    /// Refused, with why (sent to the client as the error message).
    Failed(String),
}

/// A SCRAM name: `=2C` and `=3D` stand for `,` and `=`.
fn unescape(name: &str) -> Result<String, String> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err("a user name has a bad escape".into()),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

fn attribute<'a>(part: Option<&'a str>, key: &str) -> Result<&'a str, String> {
    part.and_then(|p| p.strip_prefix(key))
        .and_then(|p| p.strip_prefix('='))
        .ok_or_else(|| format!("the message has no '{key}=' where expected"))
}

impl Exchange {
    /// Takes the client's next message. `lookup` finds a user's credential.
    pub fn step(&mut self, message: &[u8], lookup: impl Fn(&str) -> Option<Credential>) -> Step {
        match self.try_step(message, lookup) {
            Ok(step) => step,
            Err(why) => Step::Failed(why),
        }
    }

    fn try_step(
        &mut self,
        message: &[u8],
        lookup: impl Fn(&str) -> Option<Credential>,
    ) -> Result<Step, String> {
        let message = std::str::from_utf8(message).map_err(|_| "the message is not UTF-8")?;
        match std::mem::replace(self, Exchange::Start) {
            Exchange::Start => {
                // gs2-header: a channel binding flag, an optional authzid, then the bare
                // message: n=<user>,r=<client nonce>[,extensions].
                let mut parts = message.splitn(3, ',');
                let flag = parts.next().unwrap_or_default();
                if flag.starts_with('p') {
                    return Err("channel binding is not supported".into());
                }
                if flag != "n" && flag != "y" {
                    return Err("the message does not start with a GS2 header".into());
                }
                let authzid = parts.next().unwrap_or_default();
                let bare = parts.next().ok_or("the first message is cut short")?;
                let gs2_header = format!("{flag},{authzid},");
                let mut fields = bare.split(',');
                let user = unescape(attribute(fields.next(), "n")?)?;
                let client_nonce = attribute(fields.next(), "r")?;
                if client_nonce.is_empty() {
                    return Err("the client nonce is empty".into());
                }
                if let Some(ext) = fields.find(|f| !f.is_empty()) {
                    return Err(format!("extension '{ext}' is not supported"));
                }
                let credential = lookup(&user);
                // An unknown user gets a salt that looks like any other.
                let (salt, iterations) = credential.as_ref().map_or_else(
                    || (Credential::new("").salt, ITERATIONS),
                    |c| (c.salt.clone(), c.iterations),
                );
                let mut server_nonce = [0u8; 18];
                rand::rng().fill_bytes(&mut server_nonce);
                let nonce = format!("{client_nonce}{}", B64.encode(server_nonce));
                let first = format!("r={nonce},s={},i={iterations}", B64.encode(salt));
                *self = Exchange::Challenged {
                    user,
                    credential,
                    nonce,
                    gs2_header,
                    auth_message_start: format!("{bare},{first}"),
                };
                Ok(Step::Continue(first.into_bytes()))
            }
            Exchange::Challenged {
                user,
                credential,
                nonce,
                gs2_header,
                auth_message_start,
            } => {
                let (without_proof, proof) = message
                    .rsplit_once(",p=")
                    .ok_or("the final message has no proof")?;
                let mut fields = without_proof.split(',');
                let binding = attribute(fields.next(), "c")?;
                if B64.decode(binding).ok().as_deref() != Some(gs2_header.as_bytes()) {
                    return Err("the channel binding does not match the first message".into());
                }
                // RFC 5802 has the client repeat the nonce; librdkafka sends its own
                // nonce before it again. Kafka's broker accepts a nonce that ends with
                // the one it sent, and so does this one (the proof covers what was sent).
                if !attribute(fields.next(), "r")?.ends_with(&nonce) {
                    return Err("the nonce does not match".into());
                }
                let proof = B64.decode(proof).map_err(|_| "the proof is not base64")?;
                let auth_message = format!("{auth_message_start},{without_proof}");
                let failed = || format!("authentication failed for user '{user}'");
                let credential = credential.ok_or_else(failed)?;
                let signature = hmac(&credential.stored_key, auth_message.as_bytes());
                if proof.len() != signature.len() {
                    return Err(failed());
                }
                let client_key: Vec<u8> = proof.iter().zip(signature).map(|(p, s)| p ^ s).collect();
                let stored: [u8; 32] = Sha256::digest(&client_key).into();
                if stored != credential.stored_key {
                    return Err(failed());
                }
                let server_signature = hmac(&credential.server_key, auth_message.as_bytes());
                Ok(Step::Done {
                    user,
                    reply: format!("v={}", B64.encode(server_signature)).into_bytes(),
                })
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// RFC 7677's example exchange, user "user", password "pencil".
    #[test]
    fn the_rfc_7677_example_proof_is_accepted() {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let cred = Credential::with_salt("pencil", salt, 4096);
        let mut ex = Exchange::Start;
        let Step::Continue(first) = ex.step(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO", |u| {
            (u == "user").then(|| cred.clone())
        }) else {
            panic!("no challenge")
        };
        let first = String::from_utf8(first).unwrap();
        assert!(first.starts_with("r=rOprNGfwEbeRWgbNEkqO"));
        assert!(first.ends_with(",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"));
        // The RFC's nonce is the server's choice; redo the proof for ours.
        let nonce = first.split(',').next().unwrap().trim_start_matches("r=");
        let without_proof = format!("c=biws,r={nonce}");
        let auth = format!("n=user,r=rOprNGfwEbeRWgbNEkqO,{first},{without_proof}");
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(b"pencil", &cred.salt, 4096, &mut salted);
        let client_key = hmac(&salted, b"Client Key");
        let stored: [u8; 32] = Sha256::digest(client_key).into();
        let sig = hmac(&stored, auth.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(sig).map(|(a, b)| a ^ b).collect();
        let last = format!("{without_proof},p={}", B64.encode(&proof));
        let step = ex.step(last.as_bytes(), |_| None);
        let Step::Done { user, reply } = step else {
            panic!("{step:?}")
        };
        assert_eq!(user, "user");
        let expected = hmac(&hmac(&salted, b"Server Key"), auth.as_bytes());
        assert_eq!(reply, format!("v={}", B64.encode(expected)).into_bytes());
    }

    #[test]
    fn wrong_proofs_unknown_users_and_channel_binding_are_refused() {
        let cred = Credential::new("secret");
        let lookup = |u: &str| (u == "alice").then(|| cred.clone());
        for user in ["alice", "mallory"] {
            let mut ex = Exchange::Start;
            let Step::Continue(first) = ex.step(format!("n,,n={user},r=abc").as_bytes(), lookup)
            else {
                panic!()
            };
            let first = String::from_utf8(first).unwrap();
            let nonce = first
                .split(',')
                .next()
                .unwrap()
                .trim_start_matches("r=")
                .to_string();
            let last = format!("c=biws,r={nonce},p={}", B64.encode([7u8; 32]));
            assert!(
                matches!(ex.step(last.as_bytes(), lookup), Step::Failed(m) if m.contains(user))
            );
        }
        let mut ex = Exchange::Start;
        assert!(matches!(
            ex.step(b"p=tls-unique,,n=alice,r=x", lookup),
            Step::Failed(_)
        ));
        let mut ex = Exchange::Start;
        assert!(matches!(ex.step(b"garbage", lookup), Step::Failed(_)));
        assert_eq!(unescape("a=2Cb=3Dc").unwrap(), "a,b=c");
    }
}
