//! The second guest language: `plugins/audit-py`, written in Python and
//! built with componentize-py, passes its own scenarios and the Rust
//! `audit-notify`'s, through the same runtime and harness as a Rust plugin.
//!
//! componentize-py must be installed (`scripts/test.sh` installs the
//! release in `guest_build::COMPONENTIZE_PY_VERSION`): without it these
//! tests fail, they never skip.

mod support;

use leaderhook_harness::Scenario;
use leaderhook_hooks::{ArtifactKey, HookEngine, guest_build};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use support::{plugin, root};

/// The Python plugin's .wasm, built once, and compiled once before any test
/// uses it: an 18 MB component takes a while to compile in a debug build,
/// so the engine keeps precompiled artifacts in the target directory, as a
/// node keeps them in its data directory, and later runs only verify them.
fn audit_py() -> String {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let path = guest_build::build_python_guest(&root(), "audit-py")
                .unwrap_or_else(|e| panic!("{e}"));
            let engine = engine();
            let source = engine.source(&path.to_string_lossy()).unwrap();
            engine.load(&source).unwrap_or_else(|e| panic!("{e}"));
            path
        })
        .to_string_lossy()
        .into_owned()
}

/// An engine with `builtin:assign-leader` and a precompiled-artifact cache
/// under `target/`, under a fixed test key.
fn engine() -> HookEngine {
    static ENGINE: OnceLock<HookEngine> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let bytes = std::fs::read(plugin("assign-leader")).expect("assign-leader.wasm");
            let cache = guest_build::guest_target_dir(&root()).join("python/artifacts");
            std::fs::create_dir_all(&cache).unwrap();
            HookEngine::builder()
                .builtin("assign-leader", Box::leak(bytes.into_boxed_slice()))
                .cache_dir(Some(cache))
                .artifact_key(ArtifactKey::from_bytes([0x5a; 32]))
                .build()
                .expect("engine")
        })
        .clone()
}

fn scenarios(plugin: &str) -> Vec<PathBuf> {
    let dir = root().join("plugins").join(plugin).join("scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
}

fn run(file: &Path) -> leaderhook_harness::Report {
    let scenario = Scenario::from_file(file).unwrap();
    scenario.run(engine(), Some(&audit_py())).unwrap()
}

#[test]
fn the_python_plugin_passes_its_scenarios() {
    let files = scenarios("audit-py");
    assert!(files.len() >= 2, "{files:?}");
    for file in files {
        let report = run(&file);
        assert!(report.passed(), "{}:\n{}", file.display(), report.render());
        assert!(report.checks().count() >= 3, "{}", file.display());
    }
}

#[test]
fn the_python_plugin_passes_the_rust_audit_plugins_scenarios() {
    for file in scenarios("audit-notify") {
        let report = run(&file);
        assert!(report.passed(), "{}:\n{}", file.display(), report.render());
    }
}

#[test]
fn the_python_plugin_fails_a_wrong_expectation() {
    let file = root().join("plugins/audit-py/scenarios/summary-on-tick.toml");
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace(r#""events":2,"leaders""#, r#""events":5,"leaders""#);
    let report = Scenario::from_toml(&text, &file)
        .unwrap()
        .run(engine(), Some(&audit_py()))
        .unwrap();
    assert!(!report.passed());
    let rendered = report.render();
    assert!(
        rendered.contains("expected 3 notifications on sink audit matching regex"),
        "{rendered}"
    );
}

#[test]
fn the_python_plugin_refuses_a_bad_config_and_reports_its_line() {
    let engine = engine();
    let validated = engine.load(&engine.source(&audit_py()).unwrap()).unwrap();
    assert_eq!(
        validated.contract_version,
        leaderhook_hooks::CONTRACT_VERSION
    );
    assert_eq!(validated.sdk_version, None, "not built with the Rust SDK");
    let file = root().join("plugins/audit-py/scenarios/audit-trail.toml");
    let text = std::fs::read_to_string(&file).unwrap().replace(
        r#"config = { sink = "audit" }"#,
        r#"config = { sink = "audit", colour = "red" }"#,
    );
    let err = Scenario::from_toml(&text, &file)
        .unwrap()
        .run(engine, Some(&audit_py()))
        .expect_err("init refused");
    let message = format!("{err:#}");
    assert!(message.contains("unknown keys ['colour']"), "{message}");
}
