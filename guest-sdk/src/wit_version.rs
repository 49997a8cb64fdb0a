//! Reads a contract line's version from its WIT at compile time. Shared by
//! the SDK and the host (`host/hooks/src/contract/mod.rs` includes this file
//! by path), so both read the version the one way, from the one place it is
//! written.

/// The version a contract line's WIT declares (`package
/// leaderhook:plugin@<version>;`), read at compile time: the WIT is the one
/// place a line's version is written. Fails the build if the WIT declares
/// none.
pub const fn wit_package_version(wit: &'static str) -> &'static str {
    const PREFIX: &[u8] = b"package leaderhook:plugin@";
    let bytes = wit.as_bytes();
    let mut start = 0;
    while start + PREFIX.len() <= bytes.len() {
        let mut i = 0;
        while i < PREFIX.len() && bytes[start + i] == PREFIX[i] {
            i += 1;
        }
        if i == PREFIX.len() {
            let (_, rest) = bytes.split_at(start + PREFIX.len());
            let mut end = 0;
            while end < rest.len() && rest[end] != b';' {
                end += 1;
            }
            let (version, _) = rest.split_at(end);
            return match core::str::from_utf8(version) {
                Ok(version) => version,
                Err(_) => panic!("the WIT package version is not UTF-8"),
            };
        }
        start += 1;
    }
    panic!("the WIT declares no `package leaderhook:plugin@<version>;`")
}
