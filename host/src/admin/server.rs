//! The admin port's connections: the connection limit, the challenge every client must answer
//! with the cluster secret before its first request, and bounded request lines.

use super::{Admin, Failure, FailureKind};
use crate::auth::{NONCE_LEN, Secret, random_bytes};
use crate::log_limit::LogLimiter;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// Longest request line accepted; a longer one is answered with an error and the connection
/// closed.
pub const MAX_REQUEST: usize = 64 * 1024;
/// Longest line accepted before authentication.
pub const MAX_AUTH_LINE: usize = 1024;
/// Time a client has to answer the challenge.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// Version of the admin protocol, in the greeting.
pub const ADMIN_PROTOCOL: u32 = 2;

/// The server's first line on every connection.
#[derive(Debug, Serialize, Deserialize)]
pub struct Greeting {
    pub leaderhook_admin: u32,
    /// Hex; the client answers [`Auth`] with `HMAC(secret, challenge)`.
    pub challenge: String,
}

/// The client's first line.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    /// Hex of [`Secret::admin_proof`] over the challenge bytes.
    pub auth: String,
}

/// Who may use the admin port, and how much of it.
pub struct AdminAccess {
    pub(super) secret: Secret,
    /// Serve the test hooks that inject faults.
    pub fault_injection: bool,
    slots: Arc<Semaphore>,
    max_connections: usize,
    refused_unauthenticated: AtomicU64,
    refused_over_limit: AtomicU64,
    refused_log: LogLimiter,
    /// Signatures of admin requests over HTTP accepted recently (each is accepted once).
    pub(super) seen: super::http::SeenSignatures,
    pub(super) http_refused_unauthenticated: AtomicU64,
}

/// Counters of the admin port since start.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AdminStats {
    /// Connections open now.
    pub connections: u64,
    /// Connections closed because they did not answer the challenge with the secret.
    pub refused_unauthenticated: u64,
    /// Connections answered "busy" and closed because `max_connections` were open.
    pub refused_over_limit: u64,
    /// Admin requests over HTTP answered 401: unsigned, badly signed, out of the clock
    /// window, or replayed.
    pub http_refused_unauthenticated: u64,
}

impl AdminAccess {
    pub fn new(secret: Secret, fault_injection: bool, max_connections: usize) -> Self {
        Self {
            secret,
            fault_injection,
            slots: Arc::new(Semaphore::new(max_connections)),
            max_connections,
            refused_unauthenticated: AtomicU64::new(0),
            refused_over_limit: AtomicU64::new(0),
            refused_log: LogLimiter::default(),
            seen: super::http::SeenSignatures::new(super::http::SEEN_CAPACITY),
            http_refused_unauthenticated: AtomicU64::new(0),
        }
    }

    pub fn from_config(config: &crate::config::NodeConfig) -> anyhow::Result<Self> {
        Ok(Self::new(
            config.auth()?.secret().clone(),
            config.testing.fault_injection,
            config.admin.max_connections,
        ))
    }

    pub fn stats(&self) -> AdminStats {
        AdminStats {
            connections: (self.max_connections - self.slots.available_permits()) as u64,
            refused_unauthenticated: self.refused_unauthenticated.load(Ordering::Relaxed),
            refused_over_limit: self.refused_over_limit.load(Ordering::Relaxed),
            http_refused_unauthenticated: self.http_refused_unauthenticated.load(Ordering::Relaxed),
        }
    }

    pub(super) fn refused(&self, counter: &AtomicU64, peer: SocketAddr, why: &str) {
        counter.fetch_add(1, Ordering::Relaxed);
        if let Some(suppressed) = self.refused_log.allow() {
            tracing::warn!(%peer, suppressed, "refusing an admin connection: {why}");
        }
    }
}

fn line(value: &impl Serialize) -> Vec<u8> {
    let mut out = serde_json::to_vec(value).expect("serialisable");
    out.push(b'\n');
    out
}

/// Why a line could not be read.
#[derive(Debug, thiserror::Error)]
enum LineError {
    #[error("line longer than {0} bytes")]
    TooLong(usize),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The next line without its end, or `None` at the end of the stream. Reads at most
/// `max + 1` bytes of it, whatever the client sends.
async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> Result<Option<String>, LineError> {
    let mut buf = Vec::new();
    let n = (&mut *reader)
        .take(max as u64 + 1)
        .read_until(b'\n', &mut buf)
        .await?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    }
    if buf.len() > max {
        return Err(LineError::TooLong(max));
    }
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

impl Admin {
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let Ok(slot) = self.access.slots.clone().try_acquire_owned() else {
                // Told why, then closed at once (a best-effort write: never waits).
                let busy = Failure::new(
                    FailureKind::Busy,
                    format!(
                        "too many admin connections (limit {}); try again later",
                        self.access.max_connections
                    ),
                );
                let _ = stream.try_write(&line(&busy.to_json()));
                drop(stream);
                self.access.refused(
                    &self.access.refused_over_limit,
                    peer,
                    "connection limit reached",
                );
                continue;
            };
            let admin = self.clone();
            tokio::spawn(async move {
                if let Err(e) = admin.connection(stream, peer).await {
                    tracing::debug!(%peer, "admin connection closed: {e}");
                }
                drop(slot);
            });
        }
    }

    async fn connection(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
    ) -> std::io::Result<()> {
        let (read, mut write) = stream.into_split();
        let mut reader = BufReader::new(read);
        let challenge = random_bytes::<{ 2 * NONCE_LEN }>();
        let greeting = Greeting {
            leaderhook_admin: ADMIN_PROTOCOL,
            challenge: hex::encode(challenge),
        };
        write.write_all(&line(&greeting)).await?;
        let answer =
            tokio::time::timeout(AUTH_TIMEOUT, read_line(&mut reader, MAX_AUTH_LINE)).await;
        let refusal = match answer {
            Err(_) => Some(format!(
                "no answer to the challenge within {AUTH_TIMEOUT:?}"
            )),
            Ok(Err(e)) => Some(format!("authentication required: {e}")),
            Ok(Ok(None)) => return Ok(()),
            Ok(Ok(Some(text))) => self.check_answer(&text, &challenge).err(),
        };
        if let Some(why) = refusal {
            self.access
                .refused(&self.access.refused_unauthenticated, peer, &why);
            let failure = Failure::new(FailureKind::Auth, why);
            write.write_all(&line(&failure.to_json())).await?;
            return Ok(());
        }
        write
            .write_all(&line(&serde_json::json!({ "ok": { "node": self.node } })))
            .await?;

        loop {
            let response = match read_line(&mut reader, MAX_REQUEST).await {
                Ok(None) => return Ok(()),
                Ok(Some(text)) => {
                    let admin = self.clone();
                    tokio::task::spawn_blocking(move || admin.handle(&text))
                        .await
                        .unwrap_or_else(|e| {
                            Failure::new(FailureKind::Failed, e.to_string()).to_json()
                        })
                }
                Err(LineError::TooLong(max)) => {
                    // The rest of that line cannot be told from a next request: close.
                    let failure = Failure::new(
                        FailureKind::BadRequest,
                        format!("request longer than {max} bytes"),
                    );
                    write.write_all(&line(&failure.to_json())).await?;
                    return Ok(());
                }
                Err(LineError::Io(e)) => return Err(e),
            };
            write.write_all(&line(&response)).await?;
        }
    }

    /// Checks the client's answer to the challenge; the reason it is refused.
    fn check_answer(&self, text: &str, challenge: &[u8]) -> Result<(), String> {
        let Ok(Auth { auth }) = serde_json::from_str::<Auth>(text) else {
            return Err(
                "authentication required: answer the challenge with {\"auth\": HMAC} (the \
                 `leaderhook` CLI does, with the cluster secret of the node config)"
                    .into(),
            );
        };
        let proof = hex::decode(auth.trim()).unwrap_or_default();
        if self.access.secret.verify_admin(challenge, &proof) {
            Ok(())
        } else {
            Err("authentication failed: wrong admin secret".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_bounded_whatever_the_client_sends() {
        let input: &[u8] = b"short\r\nexactly-ten\nthis one is far too long\nlast";
        let mut reader = BufReader::new(input);
        assert_eq!(read_line(&mut reader, 11).await.unwrap().unwrap(), "short");
        assert_eq!(
            read_line(&mut reader, 11).await.unwrap().unwrap(),
            "exactly-ten"
        );
        assert!(matches!(
            read_line(&mut reader, 11).await,
            Err(LineError::TooLong(11))
        ));

        // A line with no end, far longer than the bound, is cut off after max + 1 bytes.
        let endless = vec![b'x'; 10 << 20];
        let mut reader = BufReader::new(&endless[..]);
        assert!(matches!(
            read_line(&mut reader, MAX_REQUEST).await,
            Err(LineError::TooLong(MAX_REQUEST))
        ));
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest.len(), endless.len() - MAX_REQUEST - 1);

        let mut reader = BufReader::new(&b"last"[..]);
        assert_eq!(read_line(&mut reader, 11).await.unwrap().unwrap(), "last");
        assert!(read_line(&mut reader, 11).await.unwrap().is_none());
    }
}
