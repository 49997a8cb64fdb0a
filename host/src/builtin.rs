//! Plugins shipped inside the binary. Embedded is not privileged: they are
//! loaded, checked and sandboxed exactly like a plugin read from a file.

use leaderhook_hooks::HookEngine;

/// The default plugin, built by `build.rs` for wasm32-wasip2.
pub const ASSIGN_LEADER: &[u8] = include_bytes!(env!("LEADERHOOK_ASSIGN_LEADER_WASM"));

/// An engine that knows the builtin plugins.
pub fn engine() -> anyhow::Result<HookEngine> {
    engine_with_cache(None)
}

/// The same, caching precompiled plugins in `cache_dir`.
pub fn engine_with_cache(cache_dir: Option<std::path::PathBuf>) -> anyhow::Result<HookEngine> {
    HookEngine::builder()
        .builtin("assign-leader", ASSIGN_LEADER)
        .cache_dir(cache_dir)
        .build()
}
