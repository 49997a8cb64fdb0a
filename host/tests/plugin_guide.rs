//! Follows docs/plugin-guide.md from an empty directory: writes every block
//! that names a file, runs every `sh` block in order, and so ends with the
//! guide's custom plugin built, passing its scenario and its Rust test,
//! and loaded into a running loopback cluster.

use std::path::{Path, PathBuf};
use std::process::Command;

enum Block {
    File { path: String, text: String },
    Shell(String),
}

/// Fenced blocks of the guide: "```lang file=PATH" and "```sh".
fn blocks(markdown: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut lines = markdown.lines();
    while let Some(line) = lines.next() {
        let Some(info) = line.strip_prefix("```") else {
            continue;
        };
        let body: Vec<&str> = lines
            .by_ref()
            .take_while(|l| !l.starts_with("```"))
            .collect();
        let text = body.join("\n") + "\n";
        if let Some(path) = info
            .split_whitespace()
            .find_map(|w| w.strip_prefix("file="))
        {
            blocks.push(Block::File {
                path: path.to_owned(),
                text,
            });
        } else if info.trim() == "sh" {
            blocks.push(Block::Shell(text));
        }
    }
    blocks
}

#[test]
fn the_plugin_guide_works_as_written() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let guide = std::fs::read_to_string(root.join("docs/plugin-guide.md")).unwrap();
    let blocks = blocks(&guide);
    assert!(
        blocks
            .iter()
            .filter(|b| matches!(b, Block::Shell(_)))
            .count()
            >= 3
    );

    let dir = tempfile::tempdir().unwrap();
    // "a checkout of leaderhook next to your plugin's directory"
    std::os::unix::fs::symlink(root, dir.path().join("leaderhook")).unwrap();
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_leaderhook"))
        .parent()
        .unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );

    let mut cwd: PathBuf = dir.path().to_owned();
    let mut transcript = String::new();
    for block in blocks {
        match block {
            Block::File { path, text } => {
                std::fs::write(dir.path().join(&path), text)
                    .unwrap_or_else(|e| panic!("writing {path}: {e}"));
            }
            Block::Shell(script) => {
                let state = dir.path().join(".cwd");
                // Step 6's `cargo test` compiles the plugin runtime
                // (wasmtime) for the author's test crate: keep that build
                // in this checkout's target dir, so only the first run pays
                // for it. Nothing else of the author's commands changes.
                let cache = root.join("target/plugin-guide");
                let output = Command::new("bash")
                    .arg("-c")
                    .arg(format!(
                        "set -euo pipefail\n\
                         cargo() {{ if [ \"$1\" = test ]; then command cargo \"$@\" --target-dir '{}'; \
                         else command cargo \"$@\"; fi; }}\n{script}pwd > '{}'\n",
                        cache.display(),
                        state.display()
                    ))
                    .current_dir(&cwd)
                    .env("PATH", &path)
                    // The outer build's settings must not leak into the author's build.
                    .env_remove("CARGO_TARGET_DIR")
                    .env_remove("CARGO_ENCODED_RUSTFLAGS")
                    .env_remove("RUSTFLAGS")
                    .env_remove("CARGO_MAKEFLAGS")
                    .output()
                    .unwrap();
                transcript += &format!(
                    "$ {script}{}{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                );
                assert!(output.status.success(), "guide step failed:\n{transcript}");
                cwd = std::fs::read_to_string(&state).unwrap().trim().into();
            }
        }
    }
    // The last step ran the scenario: every expectation passed.
    assert!(
        transcript.contains("PASS notification contents"),
        "{transcript}"
    );
    assert!(transcript.contains("5 passed, 0 failed"), "{transcript}");
    assert!(transcript.contains("imports: notify\n"), "{transcript}");
    // Step 6: the Rust test ran and passed.
    assert!(
        transcript.contains("test survivors_alert_when_a_leader_dies ... ok"),
        "{transcript}"
    );
    // Step 7: loaded into the running cluster on every node, after the
    // default plugin, enabled.
    assert_eq!(
        transcript
            .matches("applied: added leader-lost-alert")
            .count(),
        3,
        "{transcript}"
    );
    let listed = transcript
        .lines()
        .filter(|l| l.trim_start().starts_with("leader-lost-alert ") && l.contains("enabled"))
        .count();
    assert_eq!(listed, 3, "{transcript}");
}
