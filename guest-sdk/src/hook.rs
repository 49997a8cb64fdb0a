//! The [`Hook`] trait a plugin implements, and [`register_hook!`](crate::register_hook!), which
//! exports it as the component's `init`, `on-events` and `on-tick`.

use crate::types::LeadershipEvent;
use serde::de::DeserializeOwned;

/// A leadership hook: implement it and export it with [`register_hook!`](crate::register_hook!).
///
/// The host keeps one long-lived instance per plugin per node, so a hook may
/// keep state across calls. If the instance traps (a panic, a time or
/// memory limit) it is discarded and the next call gets a fresh one,
/// starting with [`Hook::init`].
pub trait Hook: Sized + 'static {
    /// The plugin's configuration, deserialised from the operator's `config`
    /// table (passed as JSON; `{}` when there is none). Use
    /// [`NoConfig`](crate::NoConfig) when the hook takes none.
    type Config: DeserializeOwned;

    /// Builds the hook. Called once per instance before any event. An `Err`
    /// is reported by the host as the plugin's init failure.
    fn init(config: Self::Config) -> Result<Self, String>;

    /// Handles one event. The default does nothing.
    fn on_event(&mut self, event: &LeadershipEvent) -> Result<(), String> {
        let _ = event;
        Ok(())
    }

    /// Handles a batch of events; a partition's events are in term order.
    ///
    /// The default calls [`Hook::on_event`] for each event and stops at the
    /// first error. Override it to see the whole batch at once (for example
    /// to coalesce per partition, or to keep going past failures with
    /// [`BatchFailures`](crate::BatchFailures)).
    fn on_events(&mut self, events: &[LeadershipEvent]) -> Result<(), String> {
        events.iter().try_for_each(|event| self.on_event(event))
    }

    /// Called every `tick_ms` milliseconds when the operator sets `tick_ms`
    /// on the plugin's entry, with the host's clock (ms since the Unix
    /// epoch; the harness's simulated clock in tests). Same time limit,
    /// quotas and `on_error` policy as a batch. The default does nothing.
    fn on_tick(&mut self, now_ms: u64) -> Result<(), String> {
        let _ = now_ms;
        Ok(())
    }
}

/// Exports a [`Hook`] implementation as the plugin's component.
///
/// Use it once, in the plugin's `cdylib` crate:
/// `leaderhook_sdk::register_hook!(MyHook);` (the crate documentation has a
/// complete plugin, compiled as a doc test).
///
/// The instance lives in a thread-local slot: `init` replaces it (an `Err`
/// from [`Hook::init`] or an invalid config leaves it empty), and
/// `on-events` or `on-tick` before a successful `init` return
/// `Err("on-events called before init")` (or `on-tick`).
#[macro_export]
macro_rules! register_hook {
    ($hook:ty) => {
        #[doc(hidden)]
        #[allow(unsafe_code)]
        const _: () = {
            ::std::thread_local! {
                static __LEADERHOOK_INSTANCE: ::core::cell::RefCell<::core::option::Option<$hook>> =
                    const { ::core::cell::RefCell::new(::core::option::Option::None) };
            }

            struct __LeaderhookComponent;

            impl $crate::__private::Guest for __LeaderhookComponent {
                fn init(
                    config: ::std::string::String,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    $crate::__private::init::<$hook>(&__LEADERHOOK_INSTANCE, config)
                }

                fn on_events(
                    events: ::std::vec::Vec<$crate::__private::LeadershipEvent>,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    $crate::__private::on_events::<$hook>(&__LEADERHOOK_INSTANCE, events)
                }

                fn on_tick(now_ms: u64) -> ::core::result::Result<(), ::std::string::String> {
                    $crate::__private::on_tick::<$hook>(&__LEADERHOOK_INSTANCE, now_ms)
                }
            }

            $crate::__private::__export_leaderhook!(
                __LeaderhookComponent with_types_in $crate::__private
            );
        };
    };
}

/// Support for [`register_hook!`](crate::register_hook!); not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::wit::{
        __export_leaderhook, __export_world_leadership_hook_cabi, __post_return_init,
        __post_return_on_events, __post_return_on_tick, _export_init_cabi, _export_on_events_cabi,
        _export_on_tick_cabi, Guest, LeadershipEvent,
    };

    use super::Hook;
    use crate::convert::event_from_wit;
    use serde::de::DeserializeOwned;
    use std::cell::RefCell;
    use std::thread::LocalKey;

    /// The slot a registered hook's instance lives in.
    pub type Slot<H> = LocalKey<RefCell<Option<H>>>;

    /// `init`: deserialises the config and replaces the instance.
    pub fn init<H: Hook>(slot: &'static Slot<H>, config: String) -> Result<(), String> {
        crate::link_sdk_version_section();
        // Drop any previous instance before building the new one.
        slot.with(|s| s.borrow_mut().take());
        let hook = parse_config::<H::Config>(&config).and_then(H::init)?;
        slot.with(|s| *s.borrow_mut() = Some(hook));
        Ok(())
    }

    /// `on-events`: converts the batch and hands it to the instance.
    pub fn on_events<H: Hook>(
        slot: &'static Slot<H>,
        events: Vec<LeadershipEvent>,
    ) -> Result<(), String> {
        let events: Vec<crate::LeadershipEvent> = events.into_iter().map(event_from_wit).collect();
        with_instance(slot, "on-events", |hook| hook.on_events(&events))
    }

    /// `on-tick`: hands the host's clock to the instance.
    pub fn on_tick<H: Hook>(slot: &'static Slot<H>, now_ms: u64) -> Result<(), String> {
        with_instance(slot, "on-tick", |hook| hook.on_tick(now_ms))
    }

    fn with_instance<H: Hook>(
        slot: &'static Slot<H>,
        call: &str,
        f: impl FnOnce(&mut H) -> Result<(), String>,
    ) -> Result<(), String> {
        slot.with(|s| match s.borrow_mut().as_mut() {
            Some(hook) => f(hook),
            None => Err(format!("{call} called before init")),
        })
    }

    pub(crate) fn parse_config<C: DeserializeOwned>(config: &str) -> Result<C, String> {
        let config = if config.trim().is_empty() {
            "{}"
        } else {
            config
        };
        serde_json::from_str(config).map_err(|e| format!("invalid config: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::__private::{init, on_events, on_tick, parse_config};
    use super::*;
    use crate::bindings;
    use crate::{NoConfig, PartitionId, Transition};
    use serde::Deserialize;
    use std::cell::RefCell;

    #[derive(Debug, Deserialize)]
    struct Conf {
        n: u32,
    }

    #[test]
    fn config_parsing() {
        assert_eq!(parse_config::<NoConfig>("{}"), Ok(NoConfig {}));
        assert_eq!(parse_config::<NoConfig>(""), Ok(NoConfig {}));
        assert_eq!(parse_config::<NoConfig>("{\"x\": 1}"), Ok(NoConfig {}));
        assert_eq!(parse_config::<Conf>("{\"n\": 4}").unwrap().n, 4);
        let err = parse_config::<Conf>("{}").unwrap_err();
        assert!(err.starts_with("invalid config: "), "{err}");
    }

    struct Counter {
        seen: Vec<u64>,
        ticks: Vec<u64>,
        fail_on: Option<u64>,
    }

    #[derive(Deserialize)]
    struct CounterConfig {
        fail_on: Option<u64>,
    }

    impl Hook for Counter {
        type Config = CounterConfig;
        fn init(config: CounterConfig) -> Result<Self, String> {
            if config.fail_on == Some(0) {
                return Err("refused".into());
            }
            Ok(Counter {
                seen: Vec::new(),
                ticks: Vec::new(),
                fail_on: config.fail_on,
            })
        }
        fn on_event(&mut self, event: &crate::LeadershipEvent) -> Result<(), String> {
            if Some(event.term) == self.fail_on {
                return Err(format!("term {}", event.term));
            }
            self.seen.push(event.term);
            Ok(())
        }
        fn on_tick(&mut self, now_ms: u64) -> Result<(), String> {
            self.ticks.push(now_ms);
            Ok(())
        }
    }

    thread_local! {
        static SLOT: RefCell<Option<Counter>> = const { RefCell::new(None) };
    }

    fn wit_event(term: u64) -> __private::LeadershipEvent {
        bindings::types::LeadershipEvent {
            partition: bindings::types::PartitionId {
                topic: "t".into(),
                partition: 1,
            },
            transition: bindings::types::Transition::BecameLeader,
            observer: 2,
            leader: Some(2),
            previous_leader: None,
            term,
            replicas: vec![2, 3],
            at_ms: 9,
        }
    }

    #[test]
    fn dispatch() {
        assert_eq!(
            on_events(&SLOT, vec![wit_event(1)]),
            Err("on-events called before init".into())
        );
        assert_eq!(on_tick(&SLOT, 5), Err("on-tick called before init".into()));
        assert_eq!(init(&SLOT, "{\"fail_on\": 3}".into()), Ok(()));
        assert_eq!(on_events(&SLOT, vec![wit_event(1), wit_event(2)]), Ok(()));
        assert_eq!(
            on_events(&SLOT, vec![wit_event(3), wit_event(4)]),
            Err("term 3".into())
        );
        assert_eq!(on_tick(&SLOT, 1000), Ok(()));
        SLOT.with(|s| {
            let s = s.borrow();
            let hook = s.as_ref().unwrap();
            assert_eq!(hook.seen, vec![1, 2]);
            assert_eq!(hook.ticks, vec![1000]);
        });
        // init replaces the instance; a failed init leaves none.
        assert_eq!(init(&SLOT, "{}".into()), Ok(()));
        SLOT.with(|s| assert!(s.borrow().as_ref().unwrap().seen.is_empty()));
        assert_eq!(
            init(&SLOT, "{\"fail_on\": 0}".into()),
            Err("refused".into())
        );
        assert!(
            init(&SLOT, "[".into())
                .unwrap_err()
                .starts_with("invalid config")
        );
        assert!(on_events(&SLOT, vec![]).is_err());
    }

    #[test]
    fn event_conversion() {
        let e = crate::convert::event_from_wit(wit_event(5));
        assert_eq!(e.partition, PartitionId::new("t", 1));
        assert_eq!(e.transition, Transition::BecameLeader);
        assert_eq!((e.observer, e.leader, e.term, e.at_ms), (2, Some(2), 5, 9));
        assert_eq!(e.replicas, vec![2, 3]);
    }
}
