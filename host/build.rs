//! Builds the default plugin (plugins/assign-leader) for wasm32-wasip2 and
//! hands its path to the binary, which embeds it as `builtin:assign-leader`:
//! `cargo build` then `leaderhook demo` works with no separate plugin build.

#[path = "hooks/src/guest_build.rs"]
#[allow(dead_code)]
mod guest_build;

use std::path::Path;

fn main() {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo");
    let root = guest_build::workspace_root(Path::new(&manifest_dir));
    for input in ["plugins/assign-leader", "guest-sdk", "wit", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(input).display());
    }
    match guest_build::build_guests(&root, &["assign-leader"]) {
        Ok(paths) => println!(
            "cargo:rustc-env=LEADERHOOK_ASSIGN_LEADER_WASM={}",
            paths[0].display()
        ),
        Err(e) => panic!("{e}"),
    }
}
