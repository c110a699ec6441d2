//! Who may use the server.
//!
//! - On loopback without users, only processes of the data directory owner's user may
//!   connect (`peer`), so another account on the machine cannot read the topics.
//! - With users (`--users FILE`), every client authenticates with SASL/SCRAM-SHA-256
//!   (`scram`) before any other request: SaslHandshake, then SaslAuthenticate rounds.
//!   A failed authentication is answered with SASL_AUTHENTICATION_FAILED and the
//!   connection closed, as Kafka does.

pub mod peer;
pub mod scram;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;

use crate::error::ServerError;
use crate::handlers::{Ctx, Session};
use scram::{Credential, Exchange, Step};

/// The users a server accepts, read from a file of `name:password` lines.
#[derive(Debug, Default)]
pub struct Users {
    users: HashMap<String, Credential>,
}

impl Users {
    /// Reads a users file: one `name:password` per line (the password is everything
    /// after the first `:`); blank lines and lines starting with `#` are skipped. The
    /// file must not be readable by group or others, since it holds passwords.
    pub fn load(path: &Path) -> Result<Users, ServerError> {
        use std::os::unix::fs::PermissionsExt;
        let err = |reason: String| ServerError::Users {
            path: path.to_path_buf(),
            reason,
        };
        let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(err(format!(
                "it is readable by other users (mode {:o}); chmod 600 it",
                mode & 0o777
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let (name, password) = line
                .split_once(':')
                .filter(|(n, p)| !n.is_empty() && !p.is_empty())
                .ok_or_else(|| err(format!("line {}: expected name:password", i + 1)))?;
            users.insert(name.to_string(), Credential::new(password));
        }
        if users.is_empty() {
            return Err(err("it names no user".into()));
        }
        Ok(Users { users })
    }

    /// Users from `(name, password)` pairs.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Users {
        Users {
            users: pairs
                .into_iter()
                .map(|(n, p)| (n.to_string(), Credential::new(p)))
                .collect(),
        }
    }

    fn credential(&self, name: &str) -> Option<Credential> {
        self.users.get(name).cloned()
    }
}

/// Where a connection is in authenticating.
#[derive(Debug)]
pub enum Authentication {
    /// The server needs none.
    NotRequired,
    /// Not yet: the SASL exchange is under way.
    Pending {
        users: Arc<Users>,
        mechanism_chosen: bool,
        exchange: Exchange,
    },
    /// Authenticated as this user.
    Done(String),
    /// The exchange failed: the connection closes once the answer is sent.
    Failed,
}

impl Authentication {
    pub fn new(users: Option<Arc<Users>>) -> Authentication {
        match users {
            None => Authentication::NotRequired,
            Some(users) => Authentication::Pending {
                users,
                mechanism_chosen: false,
                exchange: Exchange::Start,
            },
        }
    }

    /// Whether the client may send any request.
    pub fn is_done(&self) -> bool {
        matches!(self, Authentication::NotRequired | Authentication::Done(_))
    }

    pub fn failed(&self) -> bool {
        matches!(self, Authentication::Failed)
    }
}

pub fn handshake(
    _ctx: &Ctx,
    session: &mut Session,
    req: SaslHandshakeRequest,
) -> SaslHandshakeResponse {
    let mechanisms = vec![StrBytes::from_static_str(scram::MECHANISM)];
    let response = SaslHandshakeResponse::default().with_mechanisms(mechanisms);
    match &mut session.auth {
        Authentication::Pending {
            mechanism_chosen, ..
        } if &*req.mechanism == scram::MECHANISM => {
            *mechanism_chosen = true;
            response
        }
        Authentication::Pending { .. } => {
            response.with_error_code(ResponseError::UnsupportedSaslMechanism.code())
        }
        // Authenticated already, or the server takes no SASL at all.
        _ => response.with_error_code(ResponseError::IllegalSaslState.code()),
    }
}

pub fn authenticate(
    _ctx: &Ctx,
    session: &mut Session,
    req: SaslAuthenticateRequest,
) -> Result<SaslAuthenticateResponse, ServerError> {
    let failed = |message: String| {
        SaslAuthenticateResponse::default()
            .with_error_code(ResponseError::SaslAuthenticationFailed.code())
            .with_error_message(Some(StrBytes::from_string(message)))
    };
    let Authentication::Pending {
        users,
        mechanism_chosen: true,
        exchange,
    } = &mut session.auth
    else {
        session.auth = Authentication::Failed;
        return Ok(SaslAuthenticateResponse::default()
            .with_error_code(ResponseError::IllegalSaslState.code())
            .with_error_message(Some(StrBytes::from_static_str(
                "SaslAuthenticate before a SaslHandshake choosing SCRAM-SHA-256",
            ))));
    };
    let users = Arc::clone(users);
    match exchange.step(&req.auth_bytes, |name| users.credential(name)) {
        Step::Continue(reply) => {
            Ok(SaslAuthenticateResponse::default().with_auth_bytes(Bytes::from(reply)))
        }
        Step::Done { user, reply } => {
            tracing::info!(peer = %session.peer, %user, "authenticated");
            session.auth = Authentication::Done(user);
            Ok(SaslAuthenticateResponse::default().with_auth_bytes(Bytes::from(reply)))
        }
        Step::Failed(why) => {
            tracing::warn!(peer = %session.peer, reason = %why, "authentication failed");
            session.auth = Authentication::Failed;
            Ok(failed(why))
        }
    }
}
