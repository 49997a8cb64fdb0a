//! Real plugins for the harness tests, built from this workspace.
#![allow(dead_code)]

use leaderhook_hooks::{HookEngine, guest_build};
use std::path::PathBuf;
use std::sync::OnceLock;

pub const PLUGINS: [&str; 5] = [
    "assign-leader",
    "preferred-leader",
    "leader-balance",
    "drain",
    "audit-notify",
];

pub fn root() -> PathBuf {
    guest_build::workspace_root(env!("CARGO_MANIFEST_DIR").as_ref())
}

/// The path of a plugin's .wasm, building every example plugin once.
pub fn plugin(name: &str) -> String {
    static BUILT: OnceLock<Vec<PathBuf>> = OnceLock::new();
    let paths = BUILT.get_or_init(|| {
        guest_build::build_guests(&root(), &PLUGINS).unwrap_or_else(|e| panic!("{e}"))
    });
    let i = PLUGINS
        .iter()
        .position(|p| *p == name)
        .expect("a known plugin");
    paths[i].to_string_lossy().into_owned()
}

/// The hostile test plugin's .wasm (tests/plugins/adversary), built once.
pub fn adversary() -> String {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let path = BUILT.get_or_init(|| {
        guest_build::build_guests(&root(), &["adversary"]).unwrap_or_else(|e| panic!("{e}"))[0]
            .clone()
    });
    path.to_string_lossy().into_owned()
}

/// An engine with `builtin:assign-leader`, as the leaderhook binary has.
pub fn engine() -> HookEngine {
    static ENGINE: OnceLock<HookEngine> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let bytes = std::fs::read(plugin("assign-leader")).expect("assign-leader.wasm");
            HookEngine::builder()
                .builtin("assign-leader", Box::leak(bytes.into_boxed_slice()))
                .build()
                .expect("engine")
        })
        .clone()
}
