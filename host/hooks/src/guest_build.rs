//! Builds guest crates of this workspace to `.wasm` (wasm32-wasip2, profile
//! `plugin`) in their own target directory, so a build script or a test can
//! run it while the outer cargo holds the main target directory's lock.
//! Shared with `host/build.rs` through `#[path]`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root, from a crate's manifest dir inside it.
pub fn workspace_root(manifest_dir: &Path) -> PathBuf {
    manifest_dir
        .ancestors()
        .find(|dir| {
            std::fs::read_to_string(dir.join("Cargo.toml"))
                .is_ok_and(|text| text.contains("[workspace]"))
        })
        .unwrap_or(manifest_dir)
        .to_path_buf()
}

/// Where guest builds go.
pub fn guest_target_dir(root: &Path) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let target = if target.is_relative() {
        root.join(target)
    } else {
        target
    };
    target.join("wasm-guests")
}

/// Builds the named crates and returns their `.wasm` paths, in order.
pub fn build_guests(root: &Path, crates: &[&str]) -> Result<Vec<PathBuf>, String> {
    let target_dir = guest_target_dir(root);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args([
            "build",
            "--quiet",
            "--target",
            "wasm32-wasip2",
            "--profile",
            "plugin",
        ])
        .arg("--target-dir")
        .arg(&target_dir);
    for name in crates {
        cmd.args(["-p", name]);
    }
    // Settings of the outer build (flags, wrappers like clippy, the target
    // dir) must not leak into the guest build.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_LLVM_COV",
        "LLVM_PROFILE_FILE",
    ] {
        cmd.env_remove(var);
    }
    let output = cmd
        .output()
        .map_err(|e| format!("cannot run cargo to build {crates:?}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "building {crates:?} for wasm32-wasip2 failed (is the target installed? \
             `rustup target add wasm32-wasip2`):\n{}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(crates
        .iter()
        .map(|name| {
            target_dir
                .join("wasm32-wasip2/plugin")
                .join(format!("{}.wasm", name.replace('-', "_")))
        })
        .collect())
}
