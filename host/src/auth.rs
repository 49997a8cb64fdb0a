//! Cluster membership: the cluster id and shared secret of a node's `[security]` config, and the
//! HMAC-SHA256 proofs built from them.
//!
//! The secret never crosses the wire. Two proofs use it, each with its own domain string so one
//! can never stand in for the other:
//!
//! - **Raft port** ([`ClusterAuth::peer_proof`]): the connecting node sends
//!   `HMAC(secret, domain | cluster id | sender | receiver | timestamp | nonce)` in its handshake;
//!   the receiver recomputes it (the transport checks the timestamp window and that the nonce was
//!   not seen before, so a recorded handshake cannot be replayed).
//! - **Admin port** ([`Secret::admin_proof`]): the server sends a random challenge, the
//!   client answers `HMAC(secret, domain | challenge)`.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// Length of a proof (HMAC-SHA256).
pub const PROOF_LEN: usize = 32;
/// Length of the random challenges and nonces.
pub const NONCE_LEN: usize = 16;
/// Shortest accepted secret, in bytes of text (`cluster init` writes 64 hex digits, 256 bits).
pub const MIN_SECRET_LEN: usize = 32;
/// Longest accepted cluster id.
pub const MAX_CLUSTER_ID_LEN: usize = 128;

const PEER_DOMAIN: &[u8] = b"leaderhook raft peer v2\0";
const ADMIN_DOMAIN: &[u8] = b"leaderhook admin v2\0";
const CLUSTER_TAG_DOMAIN: &[u8] = b"leaderhook cluster id\0";

/// A proof of membership.
pub type Proof = [u8; PROOF_LEN];

/// Why a `[security]` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecurityConfigError {
    #[error("security.secret is {0} characters; at least {MIN_SECRET_LEN} are needed")]
    SecretTooShort(usize),
    #[error("security.cluster_id must be 1 to {MAX_CLUSTER_ID_LEN} characters")]
    BadClusterId,
}

/// The shared secret. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Secret {
    pub fn new(text: &str) -> Result<Self, SecurityConfigError> {
        let text = text.trim();
        if text.len() < MIN_SECRET_LEN {
            return Err(SecurityConfigError::SecretTooShort(text.len()));
        }
        Ok(Self(text.as_bytes().to_vec()))
    }

    /// A fresh secret: 256 random bits as 64 hex digits.
    pub fn generate() -> String {
        hex::encode(random_bytes::<32>())
    }

    fn mac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(&self.0).expect("HMAC takes keys of any length")
    }

    fn admin_mac(&self, challenge: &[u8]) -> HmacSha256 {
        let mut mac = self.mac();
        mac.update(ADMIN_DOMAIN);
        mac.update(challenge);
        mac
    }

    /// The answer to an admin server's challenge.
    pub fn admin_proof(&self, challenge: &[u8]) -> Proof {
        self.admin_mac(challenge).finalize().into_bytes().into()
    }

    /// Checks an admin client's answer in constant time.
    pub fn verify_admin(&self, challenge: &[u8], proof: &[u8]) -> bool {
        self.admin_mac(challenge).verify_slice(proof).is_ok()
    }
}

/// Bytes from the operating system's random source.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::getrandom(&mut bytes).expect("the operating system's random source failed");
    bytes
}

/// What a node knows to prove, and check, membership of its cluster.
#[derive(Debug, Clone)]
pub struct ClusterAuth {
    cluster_id: String,
    secret: Secret,
}

impl ClusterAuth {
    pub fn new(cluster_id: &str, secret: Secret) -> Result<Self, SecurityConfigError> {
        if cluster_id.is_empty() || cluster_id.len() > MAX_CLUSTER_ID_LEN {
            return Err(SecurityConfigError::BadClusterId);
        }
        Ok(Self {
            cluster_id: cluster_id.to_owned(),
            secret,
        })
    }

    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    pub fn secret(&self) -> &Secret {
        &self.secret
    }

    /// A short public fingerprint of the cluster id, sent in the clear so a peer of another
    /// cluster is told apart from one with a wrong secret in the logs.
    pub fn cluster_tag(&self) -> [u8; 8] {
        let digest = Sha256::new()
            .chain_update(CLUSTER_TAG_DOMAIN)
            .chain_update(self.cluster_id.as_bytes())
            .finalize();
        digest[..8].try_into().expect("8 bytes")
    }

    fn peer_mac(&self, sender: u64, receiver: u64, timestamp_ms: u64, nonce: &[u8]) -> HmacSha256 {
        let mut mac = self.secret.mac();
        mac.update(PEER_DOMAIN);
        mac.update(&(self.cluster_id.len() as u64).to_be_bytes());
        mac.update(self.cluster_id.as_bytes());
        mac.update(&sender.to_be_bytes());
        mac.update(&receiver.to_be_bytes());
        mac.update(&timestamp_ms.to_be_bytes());
        mac.update(nonce);
        mac
    }

    /// The proof a node sends when it connects to `receiver`'s Raft port.
    pub fn peer_proof(&self, sender: u64, receiver: u64, timestamp_ms: u64, nonce: &[u8]) -> Proof {
        self.peer_mac(sender, receiver, timestamp_ms, nonce)
            .finalize()
            .into_bytes()
            .into()
    }

    /// Checks a peer's proof in constant time.
    pub fn verify_peer(
        &self,
        sender: u64,
        receiver: u64,
        timestamp_ms: u64,
        nonce: &[u8],
        proof: &[u8],
    ) -> bool {
        self.peer_mac(sender, receiver, timestamp_ms, nonce)
            .verify_slice(proof)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(id: &str, secret: &str) -> ClusterAuth {
        ClusterAuth::new(id, Secret::new(secret).unwrap()).unwrap()
    }

    const S1: &str = "0123456789abcdef0123456789abcdef";
    const S2: &str = "0123456789abcdef0123456789abcdeX";

    #[test]
    fn a_peer_proof_binds_every_field() {
        let a = auth("c1", S1);
        let nonce = [7u8; NONCE_LEN];
        let proof = a.peer_proof(1, 2, 1000, &nonce);
        assert!(a.verify_peer(1, 2, 1000, &nonce, &proof));
        // Any other sender, receiver, time, nonce, cluster or secret fails.
        assert!(!a.verify_peer(3, 2, 1000, &nonce, &proof));
        assert!(!a.verify_peer(1, 3, 1000, &nonce, &proof));
        assert!(!a.verify_peer(1, 2, 1001, &nonce, &proof));
        assert!(!a.verify_peer(1, 2, 1000, &[8u8; NONCE_LEN], &proof));
        assert!(!auth("c2", S1).verify_peer(1, 2, 1000, &nonce, &proof));
        assert!(!auth("c1", S2).verify_peer(1, 2, 1000, &nonce, &proof));
        assert!(!a.verify_peer(1, 2, 1000, &nonce, &proof[..31]));
    }

    #[test]
    fn admin_and_peer_proofs_never_stand_in_for_each_other() {
        let a = auth("c1", S1);
        let challenge = [9u8; 32];
        let answer = a.secret().admin_proof(&challenge);
        assert!(a.secret().verify_admin(&challenge, &answer));
        assert!(!a.secret().verify_admin(&[0u8; 32], &answer));
        assert!(!Secret::new(S2).unwrap().verify_admin(&challenge, &answer));
        assert_ne!(answer, a.peer_proof(1, 2, 3, &challenge));
    }

    #[test]
    fn bad_settings_are_named_and_the_secret_is_never_printed() {
        assert_eq!(
            Secret::new("short"),
            Err(SecurityConfigError::SecretTooShort(5))
        );
        assert_eq!(
            ClusterAuth::new("", Secret::new(S1).unwrap()).unwrap_err(),
            SecurityConfigError::BadClusterId
        );
        assert!(!format!("{:?}", auth("c1", S1)).contains(S1));
        let generated = Secret::generate();
        assert_eq!(generated.len(), 64);
        assert_ne!(generated, Secret::generate());
        assert_ne!(auth("c1", S1).cluster_tag(), auth("c2", S1).cluster_tag());
    }
}
