//! Every way a plugin file or its config entry can be wrong gets an error
//! that names the file and says what is wrong; and a good file loads with
//! its contract version and capabilities visible.

mod support;

use leaderhook_hooks::{
    ArtifactKey, CacheStats, Grant, HookEngine, HooksConfig, LoadError, PluginChain, PluginConfig,
};
use std::path::Path;
use support::*;

fn load_error(path: &str) -> String {
    let cluster = cluster();
    let config = PluginConfig::new("p", path, &[]);
    match PluginChain::load(&engine(), &caps(&cluster), &[config]) {
        Ok(_) => panic!("{path} loaded"),
        Err(e) => e.to_string(),
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn missing_file() {
    let message = load_error("/nonexistent/dir/plugin.wasm");
    assert_eq!(
        message,
        "/nonexistent/dir/plugin.wasm: plugin file not found"
    );
}

#[test]
fn a_directory_or_a_device_is_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_string_lossy().into_owned();
    assert_eq!(
        load_error(&path),
        format!(
            "{path}: is not a regular file (a plugin is read from a file, not a device, pipe \
             or directory)"
        )
    );
    // Reading /dev/zero would never end.
    assert!(load_error("/dev/zero").starts_with("/dev/zero: is not a regular file"));
}

#[test]
fn a_plugin_file_above_the_limit_is_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.wasm");
    // Sparse: no disk used, but its length is past the limit.
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(leaderhook_hooks::MAX_PLUGIN_BYTES + 1)
        .unwrap();
    let path = path.to_string_lossy().into_owned();
    assert_eq!(
        load_error(&path),
        format!(
            "{path}: plugin file is larger than {} bytes",
            leaderhook_hooks::MAX_PLUGIN_BYTES
        )
    );
}

#[test]
fn garbage_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "garbage.wasm", b"#!/bin/sh\necho not wasm\n");
    let message = load_error(&path);
    assert!(message.starts_with(&path), "{message}");
    assert!(message.contains("not a WebAssembly file"), "{message}");
}

#[test]
fn truncated_component() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(&plugins().assign_leader).unwrap();
    let path = write(dir.path(), "truncated.wasm", &bytes[..bytes.len() / 2]);
    let message = load_error(&path);
    assert!(
        message.starts_with(&format!("{path}: invalid component:")),
        "{message}"
    );
}

#[test]
fn core_module_instead_of_a_component() {
    let dir = tempfile::tempdir().unwrap();
    let module = wat::parse_str(r#"(module (func (export "on-events")))"#).unwrap();
    let path = write(dir.path(), "core.wasm", &module);
    let message = load_error(&path);
    assert!(message.starts_with(&path), "{message}");
    assert!(
        message.contains("core WebAssembly module, not a component"),
        "{message}"
    );
}

#[test]
fn component_of_another_world() {
    let dir = tempfile::tempdir().unwrap();
    let component = wat::parse_str(r#"(component (core module))"#).unwrap();
    let path = write(dir.path(), "empty-component.wasm", &component);
    let message = load_error(&path);
    assert_eq!(
        message,
        format!(
            "{path}: does not export `init`; is it built against the leaderhook:plugin \
             leadership-hook world?"
        )
    );
}

#[test]
fn wrong_contract_version() {
    let path = &plugins().wrong_version;
    let message = load_error(path);
    assert_eq!(
        message,
        format!(
            "{path}: built against contract leaderhook:plugin@0.3.0, but this host implements \
             leaderhook:plugin@0.1.x and leaderhook:plugin@0.2.x"
        )
    );
}

#[test]
fn unknown_builtin() {
    let engine = HookEngine::builder()
        .builtin("assign-leader", b"\0asm")
        .build()
        .unwrap();
    let message = engine.source("builtin:nope").err().unwrap().to_string();
    assert_eq!(
        message,
        "builtin:nope: no builtin plugin named `nope` (builtins: assign-leader)"
    );
}

#[test]
fn plugin_that_refuses_its_config() {
    let cluster = cluster();
    let config = adversary("picky", "no-such-mode", &[]);
    let err = PluginChain::load(&engine(), &caps(&cluster), &[config])
        .err()
        .unwrap();
    assert!(matches!(err, LoadError::Init { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("plugin `picky` refused to start"),
        "{message}"
    );
    assert!(message.contains("no-such-mode"), "{message}");
}

#[test]
fn good_plugin_reports_contract_and_capabilities() {
    let cluster = cluster();
    let chain = PluginChain::load(&engine(), &caps(&cluster), &[assign_leader()]).unwrap();
    let info = &chain.info()[0];
    assert_eq!(info.contract_version, "0.2.0");
    assert_eq!(info.capabilities, ["assignments", "log"]);
    assert_eq!(info.origin, plugins().assign_leader);
}

fn config_error(toml: &str) -> String {
    HooksConfig::from_toml(toml, Path::new("/etc/leaderhook/node1.toml"))
        .expect_err("config accepted")
        .to_string()
}

#[test]
fn bad_config_entries() {
    let cases = [
        (
            "[[plugins]]\nname = \"a\"\npath = \"a.wasm\"\ngrants = [\"everything\"]\n",
            "unknown variant `everything`, expected one of `assignments`, `leadership`, `notify`",
        ),
        ("[[plugins]]\nname = \"a\"\n", "missing field `path`"),
        (
            "[[plugins]]\nname = \"a\"\npath = \"a.wasm\"\ncolour = \"red\"\n",
            "unknown field `colour`",
        ),
        (
            "[[plugins]]\nname = \"a\"\npath = \"a.wasm\"\nlimits = { timeout_ms = 0 }\n",
            "plugins[0] (name \"a\"): limits.timeout_ms must be at least 1",
        ),
        (
            "[[plugins]]\nname = \"a\"\npath = \"a.wasm\"\n[[plugins]]\nname = \"a\"\npath = \"b.wasm\"\n",
            "plugins[1] (name \"a\"): duplicate plugin name",
        ),
        (
            "[[plugins]]\nname = \"a\"\npath = \"a.wasm\"\non_error = { policy = \"pray\" }\n",
            "unknown variant `pray`, expected one of `skip`, `retry`, `disable`",
        ),
        (
            "[dispatch]\nmax_batch = 0\n",
            "dispatch.max_batch must be at least 1",
        ),
        ("[[plugins]\n", "invalid table header"),
    ];
    for (toml, expected) in cases {
        let message = config_error(toml);
        assert!(
            message.starts_with("/etc/leaderhook/node1.toml: "),
            "{message}"
        );
        assert!(
            message.contains(expected),
            "expected {expected:?} in:\n{message}"
        );
    }
}

#[test]
fn good_config_resolves_paths_against_the_config_file() {
    let config = HooksConfig::from_toml(
        r#"
        [dispatch]
        queue_capacity = 10
        [[plugins]]
        name = "default"
        path = "builtin:assign-leader"
        grants = ["assignments"]
        [[plugins]]
        name = "audit"
        path = "plugins/audit.wasm"
        grants = ["notify"]
        limits = { timeout_ms = 20, memory_mib = 8 }
        on_error = { policy = "disable", disable_after = 5 }
        [plugins.config]
        sink = "audit-log"
        "#,
        Path::new("/etc/leaderhook/node1.toml"),
    )
    .unwrap();
    assert_eq!(config.dispatch.queue_capacity, 10);
    assert_eq!(config.plugins[0].path, "builtin:assign-leader");
    assert_eq!(config.plugins[1].path, "/etc/leaderhook/plugins/audit.wasm");
    assert_eq!(config.plugins[1].grants, [Grant::Notify]);
    assert_eq!(config.plugins[1].limits.memory_mib, 8);
    assert_eq!(config.plugins[1].config_json(), r#"{"sink":"audit-log"}"#);
}

#[test]
fn precompiled_artifacts_are_cached_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster();
    // A fresh engine each time, as a restarted broker would have: only the
    // artifact on disk (and the node's key) carries over.
    let load = || {
        let engine = cached_engine(dir.path(), 7);
        let mut chain = PluginChain::load(&engine, &caps(&cluster), &[assign_leader()]).unwrap();
        chain.deliver(&[became_leader(&cluster, 0, 2, 1)]);
    };
    load();
    let artifacts: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(artifacts.len(), 1, "one artifact for one plugin");
    let written = std::fs::metadata(&artifacts[0])
        .unwrap()
        .modified()
        .unwrap();
    load();
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    let reused = std::fs::metadata(&artifacts[0])
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(
        written, reused,
        "the second engine read the artifact, did not rewrite it"
    );
    assert_eq!(cluster.assignment(&p(0)), Some((Some(2), 1)));
}

#[test]
fn a_corrupt_artifact_is_ignored_and_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster();
    let engine = || cached_engine(dir.path(), 7);
    PluginChain::load(&engine(), &caps(&cluster), &[assign_leader()]).unwrap();
    let artifact = std::fs::read_dir(dir.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::write(&artifact, b"corrupted").unwrap();
    let mut chain = PluginChain::load(&engine(), &caps(&cluster), &[assign_leader()]).unwrap();
    assert!(
        chain
            .deliver(&[became_leader(&cluster, 0, 3, 1)])
            .is_empty()
    );
    assert_eq!(cluster.assignment(&p(0)), Some((Some(3), 1)));
    assert!(
        std::fs::metadata(&artifact).unwrap().len() > 1000,
        "rebuilt"
    );
}

/// An engine caching in `dir` under the key made of `key` bytes.
fn cached_engine(dir: &Path, key: u8) -> HookEngine {
    HookEngine::builder()
        .cache_dir(Some(dir.to_owned()))
        .artifact_key(ArtifactKey::from_bytes([key; 32]))
        .build()
        .unwrap()
}

fn only_artifact(dir: &Path) -> std::path::PathBuf {
    let files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].clone()
}

#[test]
fn an_artifact_written_under_another_key_is_refused_and_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster();
    // Another node's key (or an attacker's): a valid wasmtime artifact of
    // this very plugin, which this node did not write.
    let theirs = cached_engine(dir.path(), 1);
    PluginChain::load(&theirs, &caps(&cluster), &[assign_leader()]).unwrap();
    let artifact = only_artifact(dir.path());
    let foreign = std::fs::read(&artifact).unwrap();

    let ours = cached_engine(dir.path(), 2);
    let mut chain = PluginChain::load(&ours, &caps(&cluster), &[assign_leader()]).unwrap();
    assert_eq!(
        ours.cache_stats(),
        CacheStats {
            hits: 0,
            rejected: 1,
            written: 1
        }
    );
    assert!(
        chain
            .deliver(&[became_leader(&cluster, 0, 2, 1)])
            .is_empty()
    );
    assert_eq!(cluster.assignment(&p(0)), Some((Some(2), 1)));
    assert_ne!(
        std::fs::read(&artifact).unwrap(),
        foreign,
        "rewritten under our key"
    );
    // Which the next engine with our key loads.
    let again = cached_engine(dir.path(), 2);
    PluginChain::load(&again, &caps(&cluster), &[assign_leader()]).unwrap();
    assert_eq!(again.cache_stats().hits, 1);
}

#[test]
fn another_plugins_artifact_under_this_plugins_name_is_never_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster();
    let engine = cached_engine(dir.path(), 3);
    // The adversary's artifact, tagged under this node's own key...
    let notifier = adversary("swapped", "notify", &[Grant::Notify]);
    PluginChain::load(&engine, &caps(&cluster), &[notifier]).unwrap();
    let adversary_artifact = only_artifact(dir.path());
    // ...copied over the name assign-leader's artifact will have.
    let other = tempfile::tempdir().unwrap();
    let probe = cached_engine(other.path(), 3);
    PluginChain::load(&probe, &caps(&cluster), &[assign_leader()]).unwrap();
    let name = only_artifact(other.path()).file_name().unwrap().to_owned();
    std::fs::copy(&adversary_artifact, dir.path().join(&name)).unwrap();

    // Loaded blindly, it would run the adversary (whose init refuses an
    // empty config, or notifies instead of writing).
    let engine = cached_engine(dir.path(), 3);
    let mut chain = PluginChain::load(&engine, &caps(&cluster), &[assign_leader()]).unwrap();
    assert_eq!(engine.cache_stats().rejected, 1);
    assert!(
        chain
            .deliver(&[became_leader(&cluster, 1, 3, 1)])
            .is_empty()
    );
    assert_eq!(
        cluster.assignment(&p(1)),
        Some((Some(3), 1)),
        "assign-leader ran"
    );
    assert!(cluster.notifications().is_empty());
}

#[test]
fn a_tampered_artifact_is_refused_and_recompiled() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster();
    PluginChain::load(
        &cached_engine(dir.path(), 4),
        &caps(&cluster),
        &[assign_leader()],
    )
    .unwrap();
    let artifact = only_artifact(dir.path());
    let mut bytes = std::fs::read(&artifact).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&artifact, &bytes).unwrap();

    let engine = cached_engine(dir.path(), 4);
    let mut chain = PluginChain::load(&engine, &caps(&cluster), &[assign_leader()]).unwrap();
    assert_eq!(
        (engine.cache_stats().rejected, engine.cache_stats().hits),
        (1, 0)
    );
    assert!(
        chain
            .deliver(&[became_leader(&cluster, 2, 1, 1)])
            .is_empty()
    );
    assert_eq!(cluster.assignment(&p(2)), Some((Some(1), 1)));
    assert_ne!(std::fs::read(&artifact).unwrap(), bytes, "rewritten");
}
