//! A test plugin built against `leaderhook:plugin@0.3.0` (a copy of the
//! 0.1.0 contract with only the version changed), without the SDK: a line
//! the host does not implement. The host must refuse it at load time with an
//! error naming the version it found and the lines it implements.

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
