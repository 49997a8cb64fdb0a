//! Plugins shipped inside the binary. Embedded is not privileged: they are
//! loaded, checked and sandboxed exactly like a plugin read from a file.

use leaderhook_hooks::HookEngine;

/// The default plugin, built by `build.rs` for wasm32-wasip2.
pub const ASSIGN_LEADER: &[u8] = include_bytes!(env!("LEADERHOOK_ASSIGN_LEADER_WASM"));

/// How a config names the default plugin (the safety net loads it too).
pub const DEFAULT_PLUGIN_PATH: &str = "builtin:assign-leader";

/// An engine that knows the builtin plugins.
pub fn engine() -> anyhow::Result<HookEngine> {
    HookEngine::builder()
        .builtin("assign-leader", ASSIGN_LEADER)
        .build()
}

/// The same, caching precompiled plugins in `cache_dir`, each artifact
/// authenticated with the node's key kept in `key_file` (created 0600 on
/// first use): an artifact this node did not write is never loaded.
pub fn engine_with_cache(
    cache_dir: Option<std::path::PathBuf>,
    key_file: &std::path::Path,
) -> anyhow::Result<HookEngine> {
    let mut builder = HookEngine::builder()
        .builtin("assign-leader", ASSIGN_LEADER)
        .cache_dir(cache_dir.clone());
    if cache_dir.is_some() {
        let key = leaderhook_hooks::artifact::ArtifactKey::load_or_create(key_file)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        builder = builder.artifact_key(key);
    }
    builder.build()
}
