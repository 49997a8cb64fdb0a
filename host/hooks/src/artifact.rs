//! Precompiled plugin artifacts on disk, verified before they are loaded.
//!
//! A precompiled artifact is native code: whoever can write the cache
//! directory could otherwise run code in the broker. So each artifact file
//! carries an HMAC-SHA256 tag under a node-local key (kept outside the
//! cache, see [`ArtifactKey::load_or_create`]), over the wasm's SHA-256, a
//! digest of the engine's configuration and the artifact bytes. A file
//! whose tag does not verify (tampered, written under another key, or made
//! for another wasm or engine) is refused with a warning and never
//! deserialized; the plugin is compiled again and the file rewritten.
//!
//! File layout: [`MAGIC`] (8 bytes), the tag (32 bytes), the artifact.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use wasmtime::Engine;
use wasmtime::component::Component;

type HmacSha256 = Hmac<Sha256>;

/// Starts every artifact file (format version 1).
pub const MAGIC: [u8; 8] = *b"LHARTv1\0";
const TAG: usize = 32;
/// Artifact files larger than this are refused unread.
pub const MAX_ARTIFACT_BYTES: u64 = 256 << 20;

/// The node-local secret artifacts are tagged with. Its `Debug` does not
/// show it.
#[derive(Clone)]
pub struct ArtifactKey([u8; 32]);

impl std::fmt::Debug for ArtifactKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ArtifactKey(..)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: cannot read the artifact key: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: cannot create the artifact key: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: an artifact key is 32 bytes, this file has {len}")]
    Length { path: PathBuf, len: u64 },
    #[error(
        "{path}: the artifact key is readable or writable by others (mode {mode:o}); \
         it must be 0600"
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("cannot draw random bytes for an artifact key: {0}")]
    Random(String),
}

impl ArtifactKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A fresh random key.
    pub fn generate() -> Result<Self, KeyError> {
        let mut bytes = [0u8; 32];
        getrandom::getrandom(&mut bytes).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(Self(bytes))
    }

    /// Reads the key at `path`, or creates it (32 random bytes, mode 0600,
    /// never overwriting a file that appeared meanwhile). A key file that
    /// others may read or write, or of the wrong length, is refused.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyError> {
        match Self::read(path) {
            Err(KeyError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            }
            other => return other,
        }
        let key = Self::generate()?;
        let create = |source| KeyError::Create {
            path: path.to_owned(),
            source,
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(path) {
            Ok(mut file) => {
                file.write_all(&key.0).map_err(create)?;
                file.sync_all().map_err(create)?;
                Ok(key)
            }
            // Another process created it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Self::read(path),
            Err(e) => Err(create(e)),
        }
    }

    fn read(path: &Path) -> Result<Self, KeyError> {
        let read = |source| KeyError::Read {
            path: path.to_owned(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(read)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(KeyError::Permissions {
                    path: path.to_owned(),
                    mode,
                });
            }
        }
        if meta.len() != 32 {
            return Err(KeyError::Length {
                path: path.to_owned(),
                len: meta.len(),
            });
        }
        let bytes = std::fs::read(path).map_err(read)?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| KeyError::Length {
            path: path.to_owned(),
            len: b.len() as u64,
        })?;
        Ok(Self(bytes))
    }
}

/// Why an artifact file was not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("cannot read it: {0}")]
    Unreadable(String),
    #[error("it is larger than {MAX_ARTIFACT_BYTES} bytes")]
    TooLarge,
    #[error("it is not a leaderhook artifact file (bad header)")]
    NotAnArtifact,
    #[error("its tag does not verify (tampered, or written under another key, wasm or engine)")]
    BadTag,
    #[error("wasmtime refused it: {0}")]
    Incompatible(String),
}

/// What the cache did, for operators and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CacheStats {
    /// Artifacts verified and loaded.
    pub hits: u64,
    /// Artifact files refused (never deserialized unless their tag verified).
    pub rejected: u64,
    /// Artifacts written.
    pub written: u64,
}

/// A directory of verified artifacts.
pub(crate) struct ArtifactCache {
    dir: PathBuf,
    key: ArtifactKey,
    /// SHA-256 of the engine's compatibility hash: part of each file's name
    /// and tag.
    engine_digest: [u8; 32],
    hits: AtomicU64,
    rejected: AtomicU64,
    written: AtomicU64,
}

impl ArtifactCache {
    pub(crate) fn new(dir: PathBuf, key: ArtifactKey, engine: &Engine) -> Self {
        Self {
            dir,
            key,
            engine_digest: engine_digest(engine),
            hits: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            written: AtomicU64::new(0),
        }
    }

    pub(crate) fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            written: self.written.load(Ordering::Relaxed),
        }
    }

    /// The artifact file for the wasm with SHA-256 `wasm`.
    pub(crate) fn path(&self, wasm: &[u8; 32]) -> PathBuf {
        self.dir.join(format!(
            "{}-{}.cwasm",
            hex(wasm),
            &hex(&self.engine_digest)[..16]
        ))
    }

    fn tag(&self, wasm: &[u8; 32], artifact: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key.0).expect("HMAC takes any key length");
        mac.update(b"leaderhook precompiled artifact v1\0");
        mac.update(wasm);
        mac.update(&self.engine_digest);
        mac.update(&(artifact.len() as u64).to_le_bytes());
        mac.update(artifact);
        mac
    }

    /// The compiled component for `bytes` (SHA-256 `wasm`): from a verified
    /// artifact, or compiled and cached.
    pub(crate) fn compile(
        &self,
        engine: &Engine,
        bytes: &[u8],
        wasm: &[u8; 32],
    ) -> wasmtime::Result<Component> {
        let path = self.path(wasm);
        match self.load(engine, wasm, &path) {
            Ok(Some(component)) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(component);
            }
            Ok(None) => {}
            Err(why) => {
                self.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    artifact = %path.display(),
                    "refusing a precompiled plugin artifact, compiling the plugin again: {why}"
                );
            }
        }
        let component = Component::new(engine, bytes)?;
        // A failed cache write only costs a compile next time.
        match self.store(&component, wasm, &path) {
            Ok(()) => {
                self.written.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::warn!(artifact = %path.display(), "cannot cache precompiled plugin: {e}")
            }
        }
        Ok(component)
    }

    /// The verified artifact at `path`, `None` if there is none.
    fn load(
        &self,
        engine: &Engine,
        wasm: &[u8; 32],
        path: &Path,
    ) -> Result<Option<Component>, Rejected> {
        let meta = match std::fs::symlink_metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Rejected::Unreadable(e.to_string())),
        };
        if !meta.is_file() {
            return Err(Rejected::NotAnArtifact);
        }
        if meta.len() > MAX_ARTIFACT_BYTES {
            return Err(Rejected::TooLarge);
        }
        let file = std::fs::read(path).map_err(|e| Rejected::Unreadable(e.to_string()))?;
        let artifact = self.verify(wasm, &file)?;
        // SAFETY: wasmtime requires the bytes to come from `serialize` of a
        // compatible engine. Their tag verified under this node's key, over
        // this wasm's hash and this engine's configuration: `store` below
        // wrote them, from `Component::serialize`. wasmtime still checks
        // the header and engine settings.
        #[allow(unsafe_code)]
        let component = unsafe { Component::deserialize(engine, artifact) }
            .map_err(|e| Rejected::Incompatible(format!("{e:#}")))?;
        Ok(Some(component))
    }

    /// The artifact bytes of `file`, if its header and tag check out.
    pub(crate) fn verify<'a>(&self, wasm: &[u8; 32], file: &'a [u8]) -> Result<&'a [u8], Rejected> {
        let Some(rest) = file.strip_prefix(&MAGIC) else {
            return Err(Rejected::NotAnArtifact);
        };
        if rest.len() < TAG {
            return Err(Rejected::NotAnArtifact);
        }
        let (tag, artifact) = rest.split_at(TAG);
        self.tag(wasm, artifact)
            .verify_slice(tag)
            .map_err(|_| Rejected::BadTag)?;
        Ok(artifact)
    }

    fn store(&self, component: &Component, wasm: &[u8; 32], path: &Path) -> std::io::Result<()> {
        let artifact = component.serialize().map_err(std::io::Error::other)?;
        let tag = self.tag(wasm, &artifact).finalize().into_bytes();
        std::fs::create_dir_all(&self.dir)?;
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        // A fresh file (never through a link someone planted), then an
        // atomic rename over whatever is there.
        let _ = std::fs::remove_file(&tmp);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        file.write_all(&MAGIC)?;
        file.write_all(&tag)?;
        file.write_all(&artifact)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    }
}

fn engine_digest(engine: &Engine) -> [u8; 32] {
    use std::hash::Hash;
    let mut hasher = Sha256Hasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hasher.0.finalize().into()
}

/// Feeds what a `Hash` impl writes into SHA-256 (stable, unlike
/// `DefaultHasher`).
struct Sha256Hasher(Sha256);

impl std::hash::Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        unreachable!("only the digest is used")
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(key: [u8; 32]) -> ArtifactCache {
        let engine = Engine::default();
        ArtifactCache::new("/nonexistent".into(), ArtifactKey::from_bytes(key), &engine)
    }

    fn file(cache: &ArtifactCache, wasm: &[u8; 32], artifact: &[u8]) -> Vec<u8> {
        let tag = cache.tag(wasm, artifact).finalize().into_bytes();
        [&MAGIC[..], &tag, artifact].concat()
    }

    #[test]
    fn only_a_file_tagged_under_this_key_for_this_wasm_verifies() {
        let ours = cache([1; 32]);
        let wasm = [7; 32];
        let good = file(&ours, &wasm, b"native code");
        assert_eq!(ours.verify(&wasm, &good), Ok(&b"native code"[..]));
        // Another node's key.
        let theirs = file(&cache([2; 32]), &wasm, b"native code");
        assert_eq!(ours.verify(&wasm, &theirs), Err(Rejected::BadTag));
        // Another wasm's artifact under this file's name.
        assert_eq!(ours.verify(&[8; 32], &good), Err(Rejected::BadTag));
        // One byte changed.
        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(ours.verify(&wasm, &flipped), Err(Rejected::BadTag));
        // Not ours at all.
        assert_eq!(ours.verify(&wasm, b"\0asm"), Err(Rejected::NotAnArtifact));
        assert_eq!(ours.verify(&wasm, &MAGIC), Err(Rejected::NotAnArtifact));
    }

    #[test]
    fn key_file_is_created_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("artifact.key");
        let created = ArtifactKey::load_or_create(&path).unwrap();
        assert_eq!(ArtifactKey::load_or_create(&path).unwrap().0, created.0);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(matches!(
                ArtifactKey::load_or_create(&path),
                Err(KeyError::Permissions { mode: 0o644, .. })
            ));
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        std::fs::write(&path, b"short").unwrap();
        assert!(matches!(
            ArtifactKey::load_or_create(&path),
            Err(KeyError::Length { len: 5, .. })
        ));
        assert_eq!(format!("{created:?}"), "ArtifactKey(..)");
    }
}
