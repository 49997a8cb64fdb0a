//! Loading a plugin: read the bytes, check they are a component built
//! against this contract, compile (or fetch a precompiled artifact), and
//! pre-link against the host's imports. Every refusal names the file.

use crate::config::{Grant, PluginConfig};
use crate::contract::{CONTRACT_PACKAGE, HookPre, LINES, Line};
use crate::engine::HookEngine;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use wasmtime::component::Component;

/// Plugin files larger than this are refused unread: the largest plugin
/// built here (Python, with its interpreter) is about 19 MB.
pub const MAX_PLUGIN_BYTES: u64 = 128 << 20;

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
    #[error(
        "{origin}: is not a regular file (a plugin is read from a file, not a device, \
         pipe or directory)"
    )]
    NotAFile { origin: String },
    #[error("{origin}: plugin file is larger than {MAX_PLUGIN_BYTES} bytes")]
    TooLarge { origin: String },
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
         {}",
        implemented()
    )]
    WrongContractVersion { origin: String, found: String },
    #[error(
        "{origin}: imports interfaces of two contract lines, {CONTRACT_PACKAGE}@{first} and \
         @{second}; a plugin is built against one line"
    )]
    MixedContractLines {
        origin: String,
        first: String,
        second: String,
    },
    #[error(
        "{origin}: plugin `{name}` sets tick_ms, but it is built against contract \
         {CONTRACT_PACKAGE}@{version}, which has no on-tick; rebuild it against a newer line or \
         remove tick_ms"
    )]
    TicksUnsupported {
        origin: String,
        name: String,
        version: String,
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
        read_bounded(path).map(|bytes| Self::from_bytes(path, bytes))
    }
}

/// The file's bytes, refusing anything but a regular file (opening a pipe
/// would block, reading a device might never end) and anything above
/// [`MAX_PLUGIN_BYTES`], including a file that grows while it is read.
fn read_bounded(path: &str) -> Result<Vec<u8>, LoadError> {
    use std::io::Read;
    let origin = || path.to_owned();
    let failed = |source: std::io::Error| match source.kind() {
        std::io::ErrorKind::NotFound => LoadError::NotFound { origin: origin() },
        _ => LoadError::Read {
            origin: origin(),
            source,
        },
    };
    let meta = std::fs::metadata(path).map_err(failed)?;
    if !meta.is_file() {
        return Err(LoadError::NotAFile { origin: origin() });
    }
    if meta.len() > MAX_PLUGIN_BYTES {
        return Err(LoadError::TooLarge { origin: origin() });
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_PLUGIN_BYTES + 1).read_to_end(&mut bytes))
        .map_err(failed)?;
    if bytes.len() as u64 > MAX_PLUGIN_BYTES {
        return Err(LoadError::TooLarge { origin: origin() });
    }
    Ok(bytes)
}

/// "leaderhook:plugin@0.1.x and leaderhook:plugin@0.2.x": every line.
fn implemented() -> String {
    LINES
        .map(|v| {
            let minor = v.rsplit_once('.').map_or(v, |(line, _)| line);
            format!("{CONTRACT_PACKAGE}@{minor}.x")
        })
        .join(" and ")
}

/// A plugin that passed every load-time check, ready to instantiate.
#[derive(Clone)]
pub struct Validated {
    pub origin: String,
    pub pre: HookPre,
    /// The contract line the plugin was built against.
    pub line: Line,
    /// The contract version the plugin was built against.
    pub contract_version: String,
    /// The contract interfaces it imports (`log`, `cluster`, `assignments`, ...).
    pub capabilities: Vec<String>,
    /// The `leaderhook:sdk-version` custom section the Rust SDK stamps into
    /// every plugin; `None` for plugins built without it.
    pub sdk_version: Option<String>,
}

impl Validated {
    /// Checks the plugin against its config entry: ticks need a line with
    /// `on-tick`. Warns (once per engine) about each capability the plugin
    /// imports but is not granted: its calls will be refused.
    pub fn check_entry(&self, engine: &HookEngine, config: &PluginConfig) -> Result<(), LoadError> {
        if config.tick_ms.is_some() && !self.line.has_tick() {
            return Err(LoadError::TicksUnsupported {
                origin: self.origin.clone(),
                name: config.name.clone(),
                version: self.contract_version.clone(),
            });
        }
        for capability in self.ungranted(&config.grants) {
            let key = format!("{}\0{}\0{capability}", config.name, self.origin);
            if engine.first_warning(key) {
                tracing::warn!(
                    plugin = %config.name,
                    capability,
                    "plugin imports a capability it is not granted; its calls will be refused"
                );
            }
        }
        Ok(())
    }

    /// The grantable capabilities the plugin imports that `grants` lacks.
    pub fn ungranted<'a>(&'a self, grants: &'a [Grant]) -> impl Iterator<Item = &'static str> + 'a {
        Grant::ALL
            .into_iter()
            .filter(|g| !grants.contains(g))
            .map(Grant::name)
            .filter(|name| self.capabilities.iter().any(|c| c == name))
    }
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

    let (line, contract_version, capabilities) = check_world(engine, &component, &origin)?;
    let pre = engine
        .linker(line)
        .instantiate_pre(&component)
        .and_then(|pre| HookPre::new(line, pre))
        .map_err(invalid)?;
    Ok(Validated {
        origin,
        pre,
        line,
        contract_version,
        capabilities,
        sdk_version: sdk_version(bytes),
    })
}

/// The custom section the Rust SDK stamps into every plugin.
pub const SDK_VERSION_SECTION: &str = "leaderhook:sdk-version";
/// Longest SDK version read from a plugin; a longer section is ignored.
const MAX_SDK_VERSION: usize = 64;

/// The SDK version a plugin carries, if it carries one that is short,
/// printable text (it is the plugin's word, shown to operators, never
/// trusted for anything).
pub fn sdk_version(bytes: &[u8]) -> Option<String> {
    wasmparser::Parser::new(0)
        .parse_all(bytes)
        .map_while(Result::ok)
        .find_map(|payload| match payload {
            wasmparser::Payload::CustomSection(section)
                if section.name() == SDK_VERSION_SECTION =>
            {
                Some(section.data().to_vec())
            }
            _ => None,
        })
        .filter(|data| data.len() <= MAX_SDK_VERSION)
        .and_then(|data| String::from_utf8(data).ok())
        .filter(|text| !text.is_empty() && text.chars().all(|c| c.is_ascii_graphic()))
}

/// Checks imports and exports by name before linking, so the common
/// mistakes get an error that says what is wrong rather than a link failure.
/// The line is the one the imports name; a plugin that imports nothing of
/// the contract is of the newest line whose exports it has.
fn check_world(
    engine: &HookEngine,
    component: &Component,
    origin: &str,
) -> Result<(Line, String, Vec<String>), LoadError> {
    let ty = component.component_type();
    let prefix = format!("{CONTRACT_PACKAGE}/");
    let mut found: Option<(Line, String)> = None;
    let mut capabilities = Vec::new();
    for (name, _) in ty.imports(engine.engine()) {
        if let Some(rest) = name.strip_prefix(&prefix) {
            let (interface, version) = rest.split_once('@').unwrap_or((rest, ""));
            let Some(line) = Line::of_version(version) else {
                return Err(LoadError::WrongContractVersion {
                    origin: origin.to_owned(),
                    found: version.to_owned(),
                });
            };
            match &found {
                Some((first, first_version)) if *first != line => {
                    return Err(LoadError::MixedContractLines {
                        origin: origin.to_owned(),
                        first: first_version.clone(),
                        second: version.to_owned(),
                    });
                }
                Some(_) => {}
                None => found = Some((line, version.to_owned())),
            }
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
    let missing = |names: &[&'static str]| {
        names
            .iter()
            .copied()
            .find(|export| ty.get_export(engine.engine(), export).is_none())
    };
    if let Some(export) = missing(&["init", "on-events"]) {
        return Err(LoadError::MissingExport {
            origin: origin.to_owned(),
            export,
        });
    }
    let ticks = missing(&["on-tick"]).is_none();
    let (line, version) = found.unwrap_or_else(|| {
        let line = if ticks { Line::V0_2 } else { Line::V0_1 };
        (line, line.version().to_owned())
    });
    if line.has_tick() && !ticks {
        return Err(LoadError::MissingExport {
            origin: origin.to_owned(),
            export: "on-tick",
        });
    }
    capabilities.sort();
    capabilities.dedup();
    Ok((line, version, capabilities))
}

pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}
