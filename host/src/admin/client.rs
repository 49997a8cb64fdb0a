//! A blocking admin client for the CLI, the tests and the benches: answers the server's
//! challenge with the cluster secret, then sends requests on the same connection.

use super::server::{ADMIN_PROTOCOL, Auth, Greeting};
use super::{FailureKind, Request};
use crate::auth::Secret;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Longest answer line read (a status of thousands of partitions is well below).
const MAX_ANSWER: u64 = 64 << 20;

/// Why an admin request failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot reach the admin endpoint {addr}: {source}")]
    Unreachable {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The node answered with an error.
    #[error("{message}")]
    Refused {
        addr: SocketAddr,
        kind: FailureKind,
        message: String,
    },
    #[error("admin endpoint {addr}: {source}")]
    Io {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("bad answer from the admin endpoint {addr}: {detail}")]
    Protocol { addr: SocketAddr, detail: String },
}

impl AdminError {
    /// Worth asking again (or another node): the node is down or busy, or the cluster has
    /// no metadata leader right now.
    pub fn is_transient(&self) -> bool {
        match self {
            AdminError::Unreachable { .. } => true,
            AdminError::Refused { kind, .. } => {
                matches!(kind, FailureKind::Unavailable | FailureKind::Busy)
            }
            AdminError::Io { .. } | AdminError::Protocol { .. } => false,
        }
    }

    /// The error kind the node answered with, if it answered.
    pub fn kind(&self) -> Option<FailureKind> {
        match self {
            AdminError::Refused { kind, .. } => Some(*kind),
            _ => None,
        }
    }
}

/// An authenticated connection to one node's admin endpoint.
pub struct Connection {
    addr: SocketAddr,
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    /// The node that answered.
    pub node: u64,
}

impl Connection {
    /// Connects and authenticates; every read and write waits at most `timeout`.
    pub fn open(addr: SocketAddr, secret: &Secret, timeout: Duration) -> Result<Self, AdminError> {
        let stream = TcpStream::connect_timeout(&addr, timeout)
            .map_err(|source| AdminError::Unreachable { addr, source })?;
        let io = |source| AdminError::Io { addr, source };
        stream.set_read_timeout(Some(timeout)).map_err(io)?;
        stream.set_write_timeout(Some(timeout)).map_err(io)?;
        stream.set_nodelay(true).map_err(io)?;
        let writer = stream.try_clone().map_err(io)?;
        let mut conn = Self {
            addr,
            reader: BufReader::new(stream),
            writer,
            node: 0,
        };
        // A busy node answers its error instead of a greeting.
        let first = conn.read_answer()?;
        if first.get("error").is_some() {
            return Err(conn.to_result(first).expect_err("an error answer"));
        }
        let greeting: Greeting = serde_json::from_value(first)
            .map_err(|e| conn.protocol(format!("not a leaderhook admin greeting: {e}")))?;
        if greeting.leaderhook_admin != ADMIN_PROTOCOL {
            return Err(conn.protocol(format!(
                "admin protocol {} (this client speaks {ADMIN_PROTOCOL})",
                greeting.leaderhook_admin
            )));
        }
        let challenge = hex::decode(&greeting.challenge)
            .map_err(|e| conn.protocol(format!("bad challenge: {e}")))?;
        let auth = Auth {
            auth: hex::encode(secret.admin_proof(&challenge)),
        };
        conn.send_line(&serde_json::to_vec(&auth).expect("serialisable"))?;
        let welcome = conn.read_result()?;
        conn.node = welcome["node"].as_u64().unwrap_or(0);
        Ok(conn)
    }

    /// Sends one request; the node's `ok` value, or its error.
    pub fn call(&mut self, request: &Request) -> Result<serde_json::Value, AdminError> {
        self.send_line(&serde_json::to_vec(request).expect("serialisable"))?;
        self.read_result()
    }

    /// Sends one line as is (for tests of what the server does with odd input).
    pub fn send_raw(&mut self, line: &[u8]) -> Result<serde_json::Value, AdminError> {
        self.send_line(line)?;
        self.read_result()
    }

    fn send_line(&mut self, line: &[u8]) -> Result<(), AdminError> {
        let mut out = line.to_vec();
        out.push(b'\n');
        self.writer
            .write_all(&out)
            .map_err(|source| AdminError::Io {
                addr: self.addr,
                source,
            })
    }

    fn protocol(&self, detail: String) -> AdminError {
        AdminError::Protocol {
            addr: self.addr,
            detail,
        }
    }

    fn read_answer(&mut self) -> Result<serde_json::Value, AdminError> {
        let mut line = Vec::new();
        let n = (&mut self.reader)
            .take(MAX_ANSWER)
            .read_until(b'\n', &mut line)
            .map_err(|source| AdminError::Io {
                addr: self.addr,
                source,
            })?;
        if n == 0 {
            return Err(AdminError::Io {
                addr: self.addr,
                source: std::io::ErrorKind::UnexpectedEof.into(),
            });
        }
        serde_json::from_slice(&line).map_err(|e| self.protocol(e.to_string()))
    }

    fn read_result(&mut self) -> Result<serde_json::Value, AdminError> {
        let value = self.read_answer()?;
        self.to_result(value)
    }

    /// `{"ok": v}` is `v`; `{"error": …, "kind": …}` an [`AdminError::Refused`].
    fn to_result(&self, value: serde_json::Value) -> Result<serde_json::Value, AdminError> {
        if let Some(ok) = value.get("ok") {
            return Ok(ok.clone());
        }
        match value.get("error").and_then(|e| e.as_str()) {
            Some(message) => Err(AdminError::Refused {
                addr: self.addr,
                kind: value
                    .get("kind")
                    .and_then(|k| serde_json::from_value(k.clone()).ok())
                    .unwrap_or(FailureKind::Failed),
                message: message.to_owned(),
            }),
            None => Err(self.protocol(value.to_string())),
        }
    }
}

/// One request on a fresh connection.
pub fn request(
    addr: SocketAddr,
    secret: &Secret,
    request: &Request,
    timeout: Duration,
) -> Result<serde_json::Value, AdminError> {
    Connection::open(addr, secret, timeout)?.call(request)
}
