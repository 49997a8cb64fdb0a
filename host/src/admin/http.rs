//! The admin API over HTTP, on the listener that serves `/metrics` (`metrics_listen`):
//! `POST /v1/admin` with one [`Request`](super::Request) as its JSON body, answered with the
//! same JSON as the admin port (`{"ok": …}` or `{"error": …, "kind": …}`) and an HTTP status
//! that says the outcome without reading the text ([`http_status`]).
//!
//! Signed, never given the secret: every request carries
//!
//! ```text
//! X-Leaderhook-Date: <unix seconds, a fraction allowed: 1700000000 or 1700000000.25>
//! X-Leaderhook-Signature: <hex of HMAC-SHA256(key, date + "\n" + body)>
//! key = HMAC-SHA256(cluster secret, "leaderhook admin http v1")   (Secret::admin_http_key)
//! ```
//!
//! accepted within [`MAX_SKEW`] of the node's clock, each signature once (a bounded memory of
//! the signatures accepted within the window refuses a replay). Anything else is answered 401
//! with a sentence naming what was wrong, counted (`status`: `admin.http_refused_unauthenticated`)
//! and logged at most once per 10 s. The test hooks stay refused (403) unless the node's config
//! sets `[testing] fault_injection = true`, as on the admin port.

use super::server::{AdminAccess, MAX_REQUEST};
use super::{Admin, Failure, FailureKind};
use crate::auth::{PROOF_LEN, Proof};
use crate::metrics::ConnInfo;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

/// The one endpoint.
pub const PATH: &str = "/v1/admin";
/// When the request was signed: unix seconds, optionally with a fraction.
pub const DATE_HEADER: &str = "x-leaderhook-date";
/// Hex of the request's HMAC-SHA256 (`Secret::admin_http_signature`).
pub const SIGNATURE_HEADER: &str = "x-leaderhook-signature";
/// How far a request's date may be from the node's clock, either way.
pub const MAX_SKEW: Duration = Duration::from_secs(60);
/// Signatures remembered at once (those of the last `2 * MAX_SKEW` at most): past it, signed
/// requests are answered 429 until older ones expire.
pub const SEEN_CAPACITY: usize = 16_384;

/// The HTTP status of an answer of the given kind: the one place it is decided.
///
/// | kind | status |
/// | --- | --- |
/// | (ok) | 200 OK |
/// | `bad-request` | 400 Bad Request (413 if the body is longer than `MAX_REQUEST`) |
/// | `auth` | 401 Unauthorized |
/// | `disabled` | 403 Forbidden (a test hook on a node without `[testing] fault_injection`) |
/// | `unknown` | 404 Not Found (no such topic, partition or plugin) |
/// | `exists` | 409 Conflict (the topic to create exists) |
/// | `refused` | 422 Unprocessable Content (understood, refused by the state: a plugin file that does not load, …) |
/// | `busy` | 429 Too Many Requests (with `Retry-After`) |
/// | `failed` | 500 Internal Server Error |
/// | `unavailable` | 503 Service Unavailable (no metadata leader, not committed in time; with `Retry-After`) |
pub fn http_status(kind: FailureKind) -> StatusCode {
    match kind {
        FailureKind::BadRequest => StatusCode::BAD_REQUEST,
        FailureKind::Auth => StatusCode::UNAUTHORIZED,
        FailureKind::Disabled => StatusCode::FORBIDDEN,
        FailureKind::Unknown => StatusCode::NOT_FOUND,
        FailureKind::Exists => StatusCode::CONFLICT,
        FailureKind::Refused => StatusCode::UNPROCESSABLE_ENTITY,
        FailureKind::Busy => StatusCode::TOO_MANY_REQUESTS,
        FailureKind::Failed => StatusCode::INTERNAL_SERVER_ERROR,
        FailureKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// The routes the metrics listener adds for the admin API.
pub fn router(admin: Arc<Admin>) -> axum::Router {
    axum::Router::new()
        .route(PATH, axum::routing::post(post_admin))
        .with_state(admin)
}

async fn post_admin(
    State(admin): State<Arc<Admin>>,
    ConnectInfo(conn): ConnectInfo<ConnInfo>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let too_long = || {
        let failure = Failure::new(
            FailureKind::BadRequest,
            format!("request body longer than {MAX_REQUEST} bytes"),
        );
        reply(StatusCode::PAYLOAD_TOO_LARGE, failure.to_json())
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_REQUEST as u64) {
        return too_long();
    }
    let body = match axum::body::to_bytes(body, MAX_REQUEST).await {
        Ok(body) => body,
        Err(_) if declared.is_none() => return too_long(),
        Err(e) => {
            let failure = Failure::new(
                FailureKind::BadRequest,
                format!("cannot read the request body: {e}"),
            );
            return reply(StatusCode::BAD_REQUEST, failure.to_json());
        }
    };
    let text = |name: &str| headers.get(name).map(|v| v.to_str().unwrap_or("\u{fffd}"));
    if let Err(failure) = admin.access.verify_signed(
        text(DATE_HEADER),
        text(SIGNATURE_HEADER),
        &body,
        SystemTime::now(),
    ) {
        if failure.kind == FailureKind::Auth {
            admin.access.refused(
                &admin.access.http_refused_unauthenticated,
                conn.peer,
                &failure.message,
            );
        }
        return reply(http_status(failure.kind), failure.to_json());
    }
    // An authenticated request may take longer than an idle connection may stay open (a
    // commit waits up to 10 s, a plugin load its limits): the connection is kept meanwhile.
    let _busy = conn.busy();
    let answer = tokio::task::spawn_blocking(move || admin.respond(&body))
        .await
        .unwrap_or_else(|e| Err(Failure::new(FailureKind::Failed, e.to_string())));
    match answer {
        Ok(value) => reply(StatusCode::OK, serde_json::json!({ "ok": value })),
        Err(failure) => reply(http_status(failure.kind), failure.to_json()),
    }
}

fn reply(status: StatusCode, body: serde_json::Value) -> Response {
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{body}\n"),
    )
        .into_response();
    let headers = response.headers_mut();
    match status {
        StatusCode::UNAUTHORIZED => {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(
                    "Leaderhook-HMAC-SHA256 headers=\"X-Leaderhook-Date X-Leaderhook-Signature\"",
                ),
            );
        }
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        _ => {}
    }
    response
}

/// A date header's value: unix seconds, optionally with a fraction of up to 9 digits.
fn parse_date(text: &str) -> Option<Duration> {
    let digits = |s: &str, max: usize| {
        !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit())
    };
    let (secs, fraction) = match text.split_once('.') {
        Some((secs, fraction)) => (secs, Some(fraction)),
        None => (text, None),
    };
    if !digits(secs, 12) {
        return None;
    }
    let nanos = match fraction {
        None => 0,
        Some(f) if digits(f, 9) => f.parse::<u32>().ok()? * 10u32.pow(9 - f.len() as u32),
        Some(_) => return None,
    };
    Some(Duration::new(secs.parse().ok()?, nanos))
}

/// What [`SeenSignatures::insert`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Not seen before: remembered now.
    Fresh,
    /// Accepted before, and still within its date's window.
    Replayed,
    /// The memory is full of signatures still within their window.
    Full,
}

/// The signatures accepted recently, each remembered until its date leaves the clock window
/// (after that the date alone refuses it). Bounded.
pub struct SeenSignatures {
    capacity: usize,
    /// Signature → the unix second after which it may be forgotten.
    seen: Mutex<HashMap<Proof, u64>>,
}

impl SeenSignatures {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            seen: Mutex::default(),
        }
    }

    pub fn insert(&self, signature: Proof, forget_after: u64, now: u64) -> Seen {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.get(&signature).is_some_and(|&until| until >= now) {
            return Seen::Replayed;
        }
        if seen.len() >= self.capacity {
            seen.retain(|_, until| *until >= now);
        }
        if seen.len() >= self.capacity {
            return Seen::Full;
        }
        seen.insert(signature, forget_after);
        Seen::Fresh
    }
}

impl AdminAccess {
    /// Checks an HTTP admin request's date and signature headers: `Ok` if it is signed with
    /// this cluster's admin key, dated within [`MAX_SKEW`] of `now` and not seen before; else
    /// the failure to answer (`auth`, or `busy` when too many were accepted within the window).
    pub fn verify_signed(
        &self,
        date: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
        now: SystemTime,
    ) -> Result<(), Failure> {
        let auth = |why: String| Err(Failure::new(FailureKind::Auth, why));
        let (Some(date), Some(signature)) = (date, signature) else {
            return auth(format!(
                "authentication required: sign the request with the headers X-Leaderhook-Date \
                 (unix seconds) and X-Leaderhook-Signature (hex of HMAC-SHA256 over the date, a \
                 newline and the body, keyed with HMAC-SHA256(cluster secret, \"leaderhook admin \
                 http v1\")); missing: {}",
                [
                    (DATE_HEADER, date.is_none()),
                    (SIGNATURE_HEADER, signature.is_none())
                ]
                .iter()
                .filter(|(_, missing)| *missing)
                .map(|(name, _)| *name)
                .collect::<Vec<_>>()
                .join(", ")
            ));
        };
        let Some(at) = parse_date(date) else {
            let shown: String = date.chars().take(40).collect();
            return auth(format!(
                "authentication failed: X-Leaderhook-Date must be unix seconds, optionally with \
                 a fraction (1700000000 or 1700000000.25), not {shown:?}"
            ));
        };
        let Some(signature) = hex::decode(signature.trim())
            .ok()
            .and_then(|s| Proof::try_from(s.as_slice()).ok())
        else {
            return auth(format!(
                "authentication failed: X-Leaderhook-Signature must be {} hex digits",
                2 * PROOF_LEN
            ));
        };
        if !self.secret.verify_admin_http(date, body, &signature) {
            return auth(
                "authentication failed: wrong signature (not made with this cluster's admin key \
                 over this date and body)"
                    .into(),
            );
        }
        let now = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        if at.abs_diff(now) > MAX_SKEW {
            return auth(format!(
                "authentication failed: X-Leaderhook-Date is {}s {} this node's clock (at most \
                 {}s accepted): sign each request when it is sent, and check the clocks",
                at.abs_diff(now).as_secs(),
                if at > now { "ahead of" } else { "behind" },
                MAX_SKEW.as_secs()
            ));
        }
        match self.seen.insert(
            signature,
            at.as_secs() + MAX_SKEW.as_secs() + 1,
            now.as_secs(),
        ) {
            Seen::Fresh => Ok(()),
            Seen::Replayed => auth(
                "authentication failed: this signature was accepted before (a replayed \
                 request); sign every request anew (a fraction in the date tells two identical \
                 requests of the same second apart)"
                    .into(),
            ),
            Seen::Full => Err(Failure::new(
                FailureKind::Busy,
                format!(
                    "more than {} signed admin requests within {}s; try again later",
                    self.seen.capacity,
                    2 * MAX_SKEW.as_secs()
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Secret;

    const SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn every_kind_has_its_status() {
        let table = [
            (FailureKind::BadRequest, 400),
            (FailureKind::Auth, 401),
            (FailureKind::Disabled, 403),
            (FailureKind::Unknown, 404),
            (FailureKind::Exists, 409),
            (FailureKind::Refused, 422),
            (FailureKind::Busy, 429),
            (FailureKind::Failed, 500),
            (FailureKind::Unavailable, 503),
        ];
        for (kind, code) in table {
            assert_eq!(http_status(kind).as_u16(), code, "{kind:?}");
        }
        // Only the retriable kinds are 429/503, the statuses a client retries on.
        for (kind, code) in table {
            let retriable = matches!(kind, FailureKind::Busy | FailureKind::Unavailable);
            assert_eq!(retriable, code == 429 || code == 503, "{kind:?}");
        }
    }

    #[test]
    fn dates_are_unix_seconds_with_an_optional_fraction() {
        assert_eq!(
            parse_date("1700000000"),
            Some(Duration::from_secs(1_700_000_000))
        );
        assert_eq!(
            parse_date("1700000000.25"),
            Some(Duration::from_millis(1_700_000_000_250))
        );
        assert_eq!(parse_date("1.000000001"), Some(Duration::new(1, 1)));
        for bad in [
            "",
            ".5",
            "17.",
            "-1",
            "1e9",
            " 17",
            "17.0000000001",
            "1234567890123",
            "Tue, 14 Nov 2023",
        ] {
            assert_eq!(parse_date(bad), None, "{bad:?}");
        }
    }

    fn signed(secret: &str, date: &str, body: &[u8]) -> String {
        hex::encode(
            Secret::new(secret)
                .unwrap()
                .admin_http_signature(date, body),
        )
    }

    #[test]
    fn signed_requests_are_checked_for_key_clock_and_replay() {
        let access = AdminAccess::new(Secret::new(SECRET).unwrap(), false, 4);
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let body = br#"{"op":"status"}"#;
        let check = |date: Option<&str>, signature: Option<&str>, now| {
            access
                .verify_signed(date, signature, body, now)
                .map_err(|f| (f.kind, f.message))
        };
        let date = "1700000000";
        let good = signed(SECRET, date, body);

        let (kind, why) = check(None, None, now).unwrap_err();
        assert_eq!(kind, FailureKind::Auth);
        assert!(
            why.contains("missing: x-leaderhook-date, x-leaderhook-signature"),
            "{why}"
        );
        let (_, why) = check(Some(date), None, now).unwrap_err();
        assert!(why.ends_with("missing: x-leaderhook-signature"), "{why}");
        let (_, why) = check(Some("yesterday"), Some(&good), now).unwrap_err();
        assert!(why.contains("unix seconds"), "{why}");
        let (_, why) = check(Some(date), Some("abc"), now).unwrap_err();
        assert!(why.contains("64 hex digits"), "{why}");
        let other = signed(&format!("{SECRET}x"), date, body);
        let (_, why) = check(Some(date), Some(&other), now).unwrap_err();
        assert!(why.contains("wrong signature"), "{why}");
        // Signed for another date than the header says.
        let (_, why) = check(Some("1700000001"), Some(&good), now).unwrap_err();
        assert!(why.contains("wrong signature"), "{why}");

        // Out of the window either way, and at its edges.
        let stale = "1699999939";
        let (_, why) = check(Some(stale), Some(&signed(SECRET, stale, body)), now).unwrap_err();
        assert!(why.contains("61s behind"), "{why}");
        let ahead = "1700000061";
        let (_, why) = check(Some(ahead), Some(&signed(SECRET, ahead, body)), now).unwrap_err();
        assert!(why.contains("61s ahead of"), "{why}");
        let edge = "1699999940";
        assert!(check(Some(edge), Some(&signed(SECRET, edge, body)), now).is_ok());

        // Once only, also when the second try comes later in the window.
        assert!(check(Some(date), Some(&good), now).is_ok());
        let later = now + Duration::from_secs(59);
        let (kind, why) = check(Some(date), Some(&good), later).unwrap_err();
        assert_eq!(kind, FailureKind::Auth);
        assert!(why.contains("replayed"), "{why}");
        // The same request with a fraction in its date is another request.
        let again = "1700000000.5";
        assert!(check(Some(again), Some(&signed(SECRET, again, body)), now).is_ok());
    }

    #[test]
    fn the_memory_of_signatures_is_bounded_and_forgets_expired_ones() {
        let seen = SeenSignatures::new(2);
        assert_eq!(seen.insert([1; PROOF_LEN], 100, 10), Seen::Fresh);
        assert_eq!(seen.insert([1; PROOF_LEN], 100, 100), Seen::Replayed);
        assert_eq!(seen.insert([2; PROOF_LEN], 200, 10), Seen::Fresh);
        // Full of signatures still in their window: refused, not forgotten.
        assert_eq!(seen.insert([3; PROOF_LEN], 300, 50), Seen::Full);
        assert_eq!(seen.insert([1; PROOF_LEN], 100, 50), Seen::Replayed);
        // Once the first has expired, its place is taken.
        assert_eq!(seen.insert([3; PROOF_LEN], 300, 101), Seen::Fresh);
        assert_eq!(seen.insert([2; PROOF_LEN], 200, 150), Seen::Replayed);
        assert_eq!(seen.seen.lock().unwrap().len(), 2);
    }
}
