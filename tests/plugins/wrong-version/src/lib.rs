//! A test plugin built against `leaderhook:plugin@0.2.0` (a copy of the
//! contract with only the version changed), without the SDK. The host
//! implements 0.1.x and must refuse it at load time with an error naming
//! both versions.

#[allow(unsafe_code, missing_docs, clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "leadership-hook",
    });
}

use bindings::leaderhook::plugin::log::{Level, log};
use bindings::{Guest, LeadershipEvent};

struct WrongVersion;

impl Guest for WrongVersion {
    fn init(_config: String) -> Result<(), String> {
        Ok(())
    }

    fn on_events(events: Vec<LeadershipEvent>) -> Result<(), String> {
        log(
            Level::Info,
            &format!("wrong-version saw {} events", events.len()),
        );
        Ok(())
    }
}

#[allow(unsafe_code)]
mod export {
    use super::{WrongVersion, bindings};
    bindings::export!(WrongVersion with_types_in bindings);
}
