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

/// The folders that hold this workspace's plugins: the default plugin and
/// the examples, and the test plugins. The root `Cargo.toml` makes every
/// folder in them with a `Cargo.toml` a member (`plugins/*`,
/// `tests/plugins/*`) and `cargo plugins` builds every member but the host
/// crates (`--workspace --exclude 'leaderhook*'`), so a plugin cannot be left
/// out of the build.
pub const PLUGIN_DIRS: [&str; 2] = ["plugins", "tests/plugins"];

/// What a plugin is written in, which says how it is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestKind {
    /// A crate (`Cargo.toml`), built by [`build_guests`].
    Rust,
    /// A module `app.py` (and no `Cargo.toml`), built by
    /// [`build_python_guest`]. The root `Cargo.toml` must exclude it from
    /// the members or cargo refuses the workspace.
    Python,
}

/// One plugin of this workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestPlugin {
    /// Its folder's name, which is also its crate's name.
    pub name: String,
    /// Its folder, relative to the workspace root (`plugins/drain`).
    pub dir: String,
    pub kind: GuestKind,
}

/// Every plugin of this workspace, in [`PLUGIN_DIRS`] order then by name:
/// the one list that the tests derive theirs from. A folder there that is
/// neither a crate nor a Python plugin is an error, so none is skipped
/// unseen.
pub fn workspace_plugins(root: &Path) -> Result<Vec<GuestPlugin>, String> {
    let mut plugins = Vec::new();
    for parent in PLUGIN_DIRS {
        let entries = std::fs::read_dir(root.join(parent))
            .map_err(|e| format!("cannot list {parent}: {e}"))?;
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| format!("cannot list {parent}: {e}"))?;
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let kind = if path.join("Cargo.toml").is_file() {
                GuestKind::Rust
            } else if path.join("app.py").is_file() {
                GuestKind::Python
            } else {
                return Err(format!(
                    "{parent}/{name} is neither a crate (Cargo.toml) nor a Python plugin (app.py)"
                ));
            };
            found.push(GuestPlugin {
                dir: format!("{parent}/{name}"),
                name,
                kind,
            });
        }
        found.sort_by(|a, b| a.name.cmp(&b.name));
        plugins.extend(found);
    }
    Ok(plugins)
}

/// The names of the plugins of `kind` under the folder `parent` (one of
/// [`PLUGIN_DIRS`]); panics, naming the problem, when the plugins cannot
/// be listed (for tests and benches).
pub fn plugin_names(root: &Path, parent: &str, kind: GuestKind) -> Vec<String> {
    workspace_plugins(root)
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .filter(|p| p.kind == kind && p.dir == format!("{parent}/{}", p.name))
        .map(|p| p.name)
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn root() -> PathBuf {
        workspace_root(env!("CARGO_MANIFEST_DIR").as_ref())
    }

    /// What `cargo plugins` builds: the workspace's members but the host
    /// crates, as (name, folder) pairs, from cargo's own view.
    fn built_by_the_alias(root: &Path) -> BTreeSet<(String, String)> {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let output = Command::new(cargo)
            .current_dir(root)
            .args(["metadata", "--no-deps", "--format-version", "1"])
            .output()
            .expect("cargo metadata");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let root = root.canonicalize().unwrap();
        metadata["packages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|package| {
                let name = package["name"].as_str().unwrap().to_string();
                let manifest = Path::new(package["manifest_path"].as_str().unwrap());
                let dir = manifest.parent().unwrap().canonicalize().unwrap();
                let dir = dir
                    .strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                (name, dir)
            })
            .filter(|(name, _)| !name.starts_with("leaderhook"))
            .collect()
    }

    #[test]
    fn cargo_plugins_builds_exactly_the_plugin_folders() {
        let root = root();
        let plugins = workspace_plugins(&root).unwrap();
        let rust: BTreeSet<(String, String)> = plugins
            .iter()
            .filter(|p| p.kind == GuestKind::Rust)
            .map(|p| (p.name.clone(), p.dir.clone()))
            .collect();
        // A crate folder the workspace misses, a crate named unlike its
        // folder, or a member outside the plugin folders that is not a
        // host crate (`leaderhook*`) and so would be built for wasm.
        assert_eq!(built_by_the_alias(&root), rust);
        assert!(rust.len() >= 8, "{rust:?}");
        assert!(
            plugins
                .iter()
                .any(|p| p.kind == GuestKind::Python && p.dir == "plugins/audit-py"),
            "{plugins:?}"
        );

        // The alias selects by workspace, never by a list of its own.
        let config = std::fs::read_to_string(root.join(".cargo/config.toml")).unwrap();
        let alias = config
            .lines()
            .find_map(|line| line.trim().strip_prefix("plugins = "))
            .expect("the `plugins` alias");
        let words: Vec<&str> = alias.trim_matches('"').split_whitespace().collect();
        assert!(
            words.contains(&"--workspace")
                && words.windows(2).any(|w| w == ["--exclude", "leaderhook*"])
                && !words.contains(&"-p")
                && !words.contains(&"--package"),
            "{alias}"
        );
    }

    #[test]
    fn a_folder_that_is_no_plugin_is_refused() {
        let dir = std::env::temp_dir().join(format!("guest-build-{}", std::process::id()));
        for (folder, file) in [
            ("plugins/rusty", Some("Cargo.toml")),
            ("plugins/snake", Some("app.py")),
            ("tests/plugins/odd", None),
        ] {
            std::fs::create_dir_all(dir.join(folder)).unwrap();
            if let Some(file) = file {
                std::fs::write(dir.join(folder).join(file), "").unwrap();
            }
        }
        let err = workspace_plugins(&dir).unwrap_err();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(err.contains("tests/plugins/odd is neither"), "{err}");
    }
}
