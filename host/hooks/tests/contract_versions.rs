//! The contract's versions agree everywhere: each line's version is written
//! once, in its WIT (`wit/since_v<version>/`), and the directory's name, the
//! host's lines, the SDK's line and what built plugins import all agree
//! with it. Released lines stay frozen.

mod support;

use leaderhook_hooks::load::sdk_version;
use leaderhook_hooks::{CONTRACT_VERSION, LINES, Line, guest_build};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use support::*;

/// Released lines and the SHA-256 of their WIT: a frozen line is never
/// edited (a change starts a new line). The newest line is not listed
/// until it is released.
const FROZEN: [(&str, &str); 1] = [(
    "0.1.0",
    "32a62fb58cbdb60afee647aadf734473113a6cccbe9620abcb09af327c8d8fdd",
)];

fn root() -> PathBuf {
    guest_build::workspace_root(env!("CARGO_MANIFEST_DIR").as_ref())
}

/// `(directory version, package version)` of every `wit/since_v*`, read
/// here with plain string operations (not the host's compile-time reader).
fn wit_lines() -> Vec<(String, String, PathBuf)> {
    let mut lines: Vec<_> = std::fs::read_dir(root().join("wit"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|dir| {
            let name = dir.file_name()?.to_str()?.to_owned();
            let dir_version = name.strip_prefix("since_v")?.to_owned();
            let wit = dir.join("leaderhook.wit");
            let text = std::fs::read_to_string(&wit).unwrap();
            let package = text
                .lines()
                .find_map(|l| l.trim().strip_prefix("package leaderhook:plugin@"))
                .and_then(|rest| rest.strip_suffix(';'))
                .unwrap_or_else(|| panic!("{}: no package line", wit.display()))
                .to_owned();
            Some((dir_version, package, wit))
        })
        .collect();
    lines.sort_by_key(|(v, _, _)| semver(v));
    lines
}

fn semver(v: &str) -> Vec<u64> {
    v.split('.').map(|p| p.parse().unwrap()).collect()
}

#[test]
fn wit_directories_host_lines_and_sdk_agree() {
    let lines = wit_lines();
    assert!(
        lines.len() >= 2,
        "wit/ holds every line, frozen ones included"
    );
    for (dir_version, package, wit) in &lines {
        assert_eq!(
            dir_version,
            package,
            "{}: the directory names the version the package declares",
            wit.display()
        );
    }
    let versions: Vec<&str> = lines.iter().map(|(v, _, _)| v.as_str()).collect();
    assert_eq!(
        LINES.as_slice(),
        versions.as_slice(),
        "the host implements exactly the lines in wit/, oldest first"
    );
    assert_eq!(Line::ALL.map(Line::version), LINES);
    let newest = *versions.last().unwrap();
    assert_eq!(CONTRACT_VERSION, newest, "the host's newest line");
    assert_eq!(
        leaderhook_sdk::CONTRACT_VERSION,
        newest,
        "the SDK builds plugins against the newest line"
    );
    assert!(
        guest_build::PYTHON_WIT.ends_with(&format!("since_v{newest}")),
        "Python plugins are built against the newest line"
    );
}

#[test]
fn frozen_lines_are_unchanged() {
    for (version, sha) in FROZEN {
        let wit = root().join(format!("wit/since_v{version}/leaderhook.wit"));
        let bytes = std::fs::read(&wit).unwrap();
        let digest: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            digest,
            sha,
            "{} is a released line and must never change: start a new line instead",
            wit.display()
        );
        assert!(LINES.contains(&version), "the host still loads {version}");
    }
}

#[test]
fn a_plugin_built_with_the_sdk_imports_the_newest_line_and_carries_the_sdk_version() {
    let engine = engine();
    let validated = engine
        .load(&engine.source(&plugins().assign_leader).unwrap())
        .unwrap();
    assert_eq!(validated.contract_version, CONTRACT_VERSION);
    assert_eq!(validated.line, Line::V0_2);
    assert_eq!(
        validated.sdk_version.as_deref(),
        Some(leaderhook_sdk::SDK_VERSION)
    );
    // The section is read from the file as built, too.
    let bytes = std::fs::read(Path::new(&plugins().assign_leader)).unwrap();
    assert_eq!(
        sdk_version(&bytes).as_deref(),
        Some(leaderhook_sdk::SDK_VERSION)
    );
}

#[test]
fn a_plugin_built_without_the_sdk_carries_no_sdk_version() {
    let engine = engine();
    let validated = engine
        .load(&engine.source(&plugins().contract_v0_1).unwrap())
        .unwrap();
    assert_eq!(validated.contract_version, "0.1.0");
    assert_eq!(validated.line, Line::V0_1);
    assert_eq!(validated.sdk_version, None);
}
