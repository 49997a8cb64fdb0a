//! A test plugin built against the frozen contract line 0.1.0
//! (`wit/since_v0.1.0`), hand-written on the raw bindings as a plugin built
//! before 0.2 existed would be: the newest host must load it and run it as
//! it ran then.
//!
//! It does assign-leader's job (on `became-leader`, `set-leader(partition,
//! observer, term)`), logs one line per write (`v0.1 wrote <partition> at
//! <term>`) and, per config, also:
//! - `{"wrong_leader": true}`: names another replica at the same term first
//!   and returns that refusal as the batch's error (`refused: <cap-error>`),
//!   so a test sees how a 0.2 refusal reaches a 0.1 plugin;
//! - `{"sink": "name"}`: emits `v0.1:<partition>:<term>` to the sink for
//!   every event, and reads the cluster view (`cluster.assignment`,
//!   `nodes`, `leader-counts`) into the payload's tail.

#[allow(unsafe_code, missing_docs, clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit/since_v0.1.0",
        world: "leadership-hook",
    });
}

use bindings::leaderhook::plugin::types::{LeadershipEvent, Transition};
use bindings::leaderhook::plugin::{assignments, cluster, log, notify};
use std::cell::RefCell;

#[derive(Default)]
struct Config {
    wrong_leader: bool,
    sink: Option<String>,
}

thread_local! {
    static CONFIG: RefCell<Config> = RefCell::new(Config::default());
}

/// A tiny reader for the two keys this plugin takes (no serde: a plugin of
/// the old line as small as it gets).
fn parse(config: &str) -> Config {
    let compact: String = config.chars().filter(|c| !c.is_whitespace()).collect();
    let sink = compact
        .split("\"sink\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next().map(str::to_owned));
    Config {
        wrong_leader: compact.contains("\"wrong_leader\":true"),
        sink,
    }
}

struct V01;

impl bindings::Guest for V01 {
    fn init(config: String) -> Result<(), String> {
        CONFIG.with(|c| *c.borrow_mut() = parse(&config));
        Ok(())
    }

    fn on_events(events: Vec<LeadershipEvent>) -> Result<(), String> {
        CONFIG.with(|c| {
            let config = c.borrow();
            for event in &events {
                handle(&config, event)?;
            }
            Ok(())
        })
    }
}

fn handle(config: &Config, event: &LeadershipEvent) -> Result<(), String> {
    let name = format!("{}-{}", event.partition.topic, event.partition.partition);
    if let Some(sink) = &config.sink {
        let view = cluster::assignment(&event.partition)
            .map(|a| format!("replicas={:?}", a.replicas))
            .unwrap_or_default();
        let nodes = cluster::nodes().len();
        let counted: u32 = cluster::leader_counts().iter().map(|c| c.leaders).sum();
        let payload = format!(
            "v0.1:{name}:{}:{view}:nodes={nodes}:led={counted}",
            event.term
        );
        notify::emit(sink, &payload).map_err(|e| format!("emit: {e:?}"))?;
    }
    if event.transition != Transition::BecameLeader {
        return Ok(());
    }
    if config.wrong_leader
        && let Some(&other) = event.replicas.iter().find(|&&r| r != event.observer)
        && let Err(e) = assignments::set_leader(&event.partition, other, event.term)
    {
        return Err(format!("refused: {e:?}"));
    }
    match assignments::set_leader(&event.partition, event.observer, event.term) {
        Ok(_) => {
            log::log(
                log::Level::Info,
                &format!("v0.1 wrote {name} at {}", event.term),
            );
            Ok(())
        }
        Err(e) => Err(format!("{name}: {e:?}")),
    }
}

#[allow(unsafe_code)]
mod export {
    use super::{V01, bindings};
    bindings::export!(V01 with_types_in bindings);
}
