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

/// The Python plugins of this workspace: `plugins/<name>/app.py`, built
/// with componentize-py (see `docs/plugin-guide.md`).
pub const PYTHON_PLUGINS: [&str; 1] = ["audit-py"];

/// The contract line Python plugins are built against.
pub const PYTHON_WIT: &str = "wit/since_v0.2.0";

/// The componentize-py release the Python plugins are built and tested with
/// (`scripts/test.sh` installs it).
pub const COMPONENTIZE_PY_VERSION: &str = "0.25.1";

/// Builds the Python plugin `plugins/<name>` (its module `app`) into a
/// component with componentize-py (`$COMPONENTIZE_PY`, else
/// `componentize-py` on the PATH) and returns its path. The build is
/// skipped while the `.wasm` is newer than every file of the plugin and of
/// the contract line (a build takes a minute on a loaded machine).
pub fn build_python_guest(root: &Path, name: &str) -> Result<PathBuf, String> {
    let source = root.join("plugins").join(name);
    let wit = root.join(PYTHON_WIT);
    let out_dir = guest_target_dir(root).join("python");
    let out = out_dir.join(format!("{}.wasm", name.replace('-', "_")));
    if is_newer_than(&out, &[&source, &wit]) {
        return Ok(out);
    }
    std::fs::create_dir_all(&out_dir)
        .map_err(|e| format!("cannot create {}: {e}", out_dir.display()))?;
    let tool = std::env::var_os("COMPONENTIZE_PY").unwrap_or_else(|| "componentize-py".into());
    // Built to a temporary name, renamed when complete: an interrupted
    // build never leaves a file that looks fresh.
    let partial = out.with_extension("wasm.partial");
    let output = Command::new(&tool)
        .current_dir(root)
        .arg("-d")
        .arg(&wit)
        .args(["-w", "leadership-hook", "componentize", "-p"])
        .arg(&source)
        .arg("app")
        .arg("-o")
        .arg(&partial)
        .output()
        .map_err(|e| {
            format!(
                "cannot run {} to build plugins/{name} ({e}): install it with \
                 `python3 -m pip install componentize-py=={COMPONENTIZE_PY_VERSION}`",
                tool.to_string_lossy()
            )
        })?;
    if !output.status.success() {
        return Err(format!(
            "componentize-py failed to build plugins/{name}:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    std::fs::rename(&partial, &out)
        .map_err(|e| format!("cannot move {} into place: {e}", partial.display()))?;
    Ok(out)
}

/// Whether `file` exists and is newer than every file under `inputs`.
fn is_newer_than(file: &Path, inputs: &[&Path]) -> bool {
    let Ok(built) = std::fs::metadata(file).and_then(|m| m.modified()) else {
        return false;
    };
    fn newest(dir: &Path) -> Option<std::time::SystemTime> {
        let meta = std::fs::metadata(dir).ok()?;
        if !meta.is_dir() {
            return meta.modified().ok();
        }
        let mut newest = meta.modified().ok()?;
        for entry in std::fs::read_dir(dir).ok()? {
            let path = entry.ok()?.path();
            if path.file_name().is_some_and(|n| n == "__pycache__") {
                continue;
            }
            newest = newest.max(newest_or_now(&path));
        }
        Some(newest)
    }
    fn newest_or_now(path: &Path) -> std::time::SystemTime {
        newest(path).unwrap_or_else(std::time::SystemTime::now)
    }
    inputs.iter().all(|input| newest_or_now(input) < built)
}
