//! Loading a plugin: read the bytes, check they are a component built
//! against this contract, compile (or fetch a precompiled artifact), and
//! pre-link against the host's imports. Every refusal names the file.

use crate::contract::{CONTRACT_PACKAGE, CONTRACT_VERSION, LeadershipHookPre};
use crate::engine::HookEngine;
use crate::state::PluginState;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use wasmtime::component::Component;

/// A plugin's bytes and where they came from (a path or `builtin:<name>`).
#[derive(Clone)]
pub struct PluginSource {
    pub origin: String,
    pub bytes: std::sync::Arc<[u8]>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{origin}: plugin file not found")]
    NotFound { origin: String },
    #[error("{origin}: cannot read plugin file: {source}")]
    Read {
        origin: String,
        source: std::io::Error,
    },
    #[error("{origin}: no builtin plugin named `{name}` (builtins: {known})")]
    UnknownBuiltin {
        origin: String,
        name: String,
        known: String,
    },
    #[error("{origin}: not a WebAssembly file (it does not start with the `\\0asm` magic)")]
    NotWasm { origin: String },
    #[error(
        "{origin}: is a core WebAssembly module, not a component; build the plugin for \
         wasm32-wasip2 (or wrap it with `wasm-tools component new`)"
    )]
    CoreModule { origin: String },
    #[error("{origin}: unsupported WebAssembly binary version {version:02x?}")]
    UnknownBinaryVersion { origin: String, version: [u8; 4] },
    #[error(
        "{origin}: built against contract {CONTRACT_PACKAGE}@{found}, but this host implements \
         {CONTRACT_PACKAGE}@{expected}"
    )]
    WrongContractVersion {
        origin: String,
        found: String,
        expected: &'static str,
    },
    #[error("{origin}: imports `{import}`, which the leadership-hook world does not provide")]
    UnsupportedImport { origin: String, import: String },
    #[error(
        "{origin}: does not export `{export}`; is it built against the {CONTRACT_PACKAGE} \
         leadership-hook world?"
    )]
    MissingExport {
        origin: String,
        export: &'static str,
    },
    #[error("{origin}: invalid component: {message}")]
    Invalid { origin: String, message: String },
    #[error("{origin}: plugin `{name}` refused to start: {message}")]
    Init {
        origin: String,
        name: String,
        message: String,
    },
}

impl PluginSource {
    pub fn from_bytes(origin: impl Into<String>, bytes: impl Into<std::sync::Arc<[u8]>>) -> Self {
        Self {
            origin: origin.into(),
            bytes: bytes.into(),
        }
    }

    pub(crate) fn resolve(
        path: &str,
        builtins: &HashMap<String, &'static [u8]>,
    ) -> Result<Self, LoadError> {
        if let Some(name) = path.strip_prefix(crate::config::BUILTIN_PREFIX) {
            let bytes = builtins.get(name).ok_or_else(|| {
                let mut known: Vec<&str> = builtins.keys().map(String::as_str).collect();
                known.sort();
                LoadError::UnknownBuiltin {
                    origin: path.to_owned(),
                    name: name.to_owned(),
                    known: if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    },
                }
            })?;
            return Ok(Self::from_bytes(path, *bytes));
        }
        match std::fs::read(path) {
            Ok(bytes) => Ok(Self::from_bytes(path, bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(LoadError::NotFound {
                origin: path.to_owned(),
            }),
            Err(source) => Err(LoadError::Read {
                origin: path.to_owned(),
                source,
            }),
        }
    }
}

/// A plugin that passed every load-time check, ready to instantiate.
#[derive(Clone)]
pub struct Validated {
    pub origin: String,
    pub pre: LeadershipHookPre<PluginState>,
    /// The contract version the plugin was built against.
    pub contract_version: String,
    /// The contract interfaces it imports (`log`, `cluster`, `assignments`, ...).
    pub capabilities: Vec<String>,
}

const CORE_VERSION: [u8; 4] = [1, 0, 0, 0];
const COMPONENT_VERSION: [u8; 4] = [0x0d, 0, 1, 0];

pub(crate) fn validate(engine: &HookEngine, source: &PluginSource) -> Result<Validated, LoadError> {
    let origin = source.origin.clone();
    let bytes = &source.bytes[..];
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(LoadError::NotWasm { origin });
    }
    let version: [u8; 4] = bytes[4..8].try_into().expect("length checked above");
    match version {
        COMPONENT_VERSION => {}
        CORE_VERSION => return Err(LoadError::CoreModule { origin }),
        version => return Err(LoadError::UnknownBinaryVersion { origin, version }),
    }
    let invalid = |e: wasmtime::Error| LoadError::Invalid {
        origin: source.origin.clone(),
        message: format!("{e:#}"),
    };
    let component = engine.compile(bytes).map_err(invalid)?;

    let (contract_version, capabilities) = check_world(engine, &component, &origin)?;
    let pre = engine
        .linker()
        .instantiate_pre(&component)
        .and_then(LeadershipHookPre::new)
        .map_err(invalid)?;
    Ok(Validated {
        origin,
        pre,
        contract_version,
        capabilities,
    })
}

/// Checks imports and exports by name before linking, so the common
/// mistakes get an error that says what is wrong rather than a link failure.
fn check_world(
    engine: &HookEngine,
    component: &Component,
    origin: &str,
) -> Result<(String, Vec<String>), LoadError> {
    let ty = component.component_type();
    let prefix = format!("{CONTRACT_PACKAGE}/");
    let mut found_version = None;
    let mut capabilities = Vec::new();
    for (name, _) in ty.imports(engine.engine()) {
        if let Some(rest) = name.strip_prefix(&prefix) {
            let (interface, version) = rest.split_once('@').unwrap_or((rest, ""));
            if !same_minor_line(version, CONTRACT_VERSION) {
                return Err(LoadError::WrongContractVersion {
                    origin: origin.to_owned(),
                    found: version.to_owned(),
                    expected: CONTRACT_VERSION,
                });
            }
            found_version = Some(version.to_owned());
            if interface != "types" {
                capabilities.push(interface.to_owned());
            }
        } else if !name.starts_with("wasi:") {
            return Err(LoadError::UnsupportedImport {
                origin: origin.to_owned(),
                import: name.to_owned(),
            });
        }
    }
    for export in ["init", "on-events"] {
        if ty.get_export(engine.engine(), export).is_none() {
            return Err(LoadError::MissingExport {
                origin: origin.to_owned(),
                export,
            });
        }
    }
    capabilities.sort();
    Ok((
        found_version.unwrap_or_else(|| CONTRACT_VERSION.to_owned()),
        capabilities,
    ))
}

/// Semver compatibility as the component model applies it: same major, and
/// for 0.x the same minor.
fn same_minor_line(found: &str, ours: &str) -> bool {
    let parts = |v: &str| -> Option<(u64, u64)> {
        let mut it = v.split('.');
        Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
    };
    match (parts(found), parts(ours)) {
        (Some((fmaj, fmin)), Some((omaj, omin))) => fmaj == omaj && (omaj != 0 || fmin == omin),
        _ => false,
    }
}

pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use super::same_minor_line;

    #[test]
    fn minor_line_compatibility() {
        assert!(same_minor_line("0.1.0", "0.1.0"));
        assert!(same_minor_line("0.1.3", "0.1.0"));
        assert!(!same_minor_line("0.2.0", "0.1.0"));
        assert!(!same_minor_line("1.1.0", "0.1.0"));
        assert!(!same_minor_line("", "0.1.0"));
        assert!(same_minor_line("1.4.0", "1.0.0"));
    }
}
