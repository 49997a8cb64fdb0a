//! Contract line 0.2 (`wit/since_v0.2.0`), the newest: its generated types
//! are the runtime's internal model, and `state.rs` implements its imports.

wasmtime::component::bindgen!({
    path: "../../wit/since_v0.2.0",
    world: "leadership-hook",
    // Exports are called as futures, so a call blocked in a WASI host
    // future can be abandoned at its deadline (see `plugin.rs`).
    exports: { default: async },
    additional_derives: [PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize],
});

/// The version `wit/since_v0.2.0/leaderhook.wit` declares, read from it
/// (`tests/contract_versions.rs` checks it against the directory's name and
/// the SDK's).
pub const VERSION: &str =
    super::wit_package_version(include_str!("../../../../wit/since_v0.2.0/leaderhook.wit"));
