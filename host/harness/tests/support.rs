//! Real plugins for the harness tests, built from this workspace.
#![allow(dead_code)]

use leaderhook_hooks::HookEngine;
use leaderhook_hooks::guest_build::{self, GuestKind};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;

pub fn root() -> PathBuf {
    guest_build::workspace_root(env!("CARGO_MANIFEST_DIR").as_ref())
}

/// The example plugins written in Rust (every crate under plugins/, from
/// the workspace's one list): the default plugin and the policies.
pub fn example_plugins() -> Vec<String> {
    guest_build::plugin_names(&root(), "plugins", GuestKind::Rust)
}

/// The path of a plugin's .wasm, building every example plugin once.
pub fn plugin(name: &str) -> String {
    static BUILT: OnceLock<BTreeMap<String, PathBuf>> = OnceLock::new();
    let paths = BUILT.get_or_init(|| {
        let names = example_plugins();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let paths = guest_build::build_guests(&root(), &refs).unwrap_or_else(|e| panic!("{e}"));
        names.into_iter().zip(paths).collect()
    });
    paths
        .get(name)
        .unwrap_or_else(|| panic!("{name} is not an example plugin: {:?}", paths.keys()))
        .to_string_lossy()
        .into_owned()
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
