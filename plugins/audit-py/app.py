"""audit-py: the audit policy of `plugins/audit-notify`, in Python.

A leaderhook plugin written in Python and built into a WebAssembly component
with componentize-py against the newest contract line
(`wit/since_v0.2.0`, world `leadership-hook`). It shows that any
component-model language can implement the world, with the same sandbox,
limits and scenarios as a Rust plugin.

What it does:

- every event of a batch, in batch order, becomes one JSON record emitted to
  the operator-named sink, the same record `audit-notify` emits:
  {"topic":"orders","partition":3,"transition":"became-leader","observer":2,
   "leader":2,"previous_leader":1,"term":7,"replicas":[1,2,3],"at_ms":...}
  Every event is tried even if some emits fail; the batch then fails with
  one error naming every failure.
- with `tick_ms` set on its entry, each tick that follows new events emits
  one summary record, {"summary":{"events":N,"leaders":{"1":2,...},
  "at_ms":...}}, with the stored leader counts at that moment, and logs
  "audit-py: N events since the last summary". Quiet ticks emit nothing.

Grants: `notify`. Config: `sink` (string, default "audit").

Build (from the workspace root; `scripts/build-python-plugins.sh` does it):
  componentize-py -d wit/since_v0.2.0 -w leadership-hook componentize \
      -p plugins/audit-py app -o target/wasm-guests/python/audit_py.wasm
"""

import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import cluster, log, notify, types

# The longest error message returned to the host; the host bounds it too,
# but a short one is what an operator reads.
MAX_ERROR = 2048

TRANSITIONS = {
    types.Transition.BECAME_LEADER: "became-leader",
    types.Transition.STEPPED_DOWN: "stepped-down",
    types.Transition.LEADER_OBSERVED: "leader-observed",
    types.Transition.LEADER_LOST: "leader-lost",
}


def describe(error) -> str:
    """A cap-error as a sentence (the variant's name and its value)."""
    name = type(error).__name__.removeprefix("CapError_")
    value = getattr(error, "value", None)
    return name if value is None else f"{name}({value})"


def record(event: types.LeadershipEvent) -> str:
    """One event as audit-notify's single-line JSON record."""
    return json.dumps(
        {
            "topic": event.partition.topic,
            "partition": event.partition.partition,
            "transition": TRANSITIONS[event.transition],
            "observer": event.observer,
            "leader": event.leader,
            "previous_leader": event.previous_leader,
            "term": event.term,
            "replicas": list(event.replicas),
            "at_ms": event.at_ms,
        },
        separators=(",", ":"),
    )


class WitWorld(wit_world.WitWorld):
    sink = "audit"
    since_summary = 0

    def init(self, config: str) -> None:
        try:
            parsed = json.loads(config or "{}")
        except ValueError as e:
            raise Err(f"invalid config: {e}")
        if not isinstance(parsed, dict):
            raise Err("invalid config: expected a table")
        unknown = sorted(set(parsed) - {"sink"})
        if unknown:
            raise Err(f"invalid config: unknown keys {unknown}")
        sink = parsed.get("sink", "audit")
        if not isinstance(sink, str) or not sink:
            raise Err("config: sink must be a non-empty string")
        WitWorld.sink = sink
        WitWorld.since_summary = 0

    def on_events(self, events) -> None:
        failures = []
        for event in events:
            try:
                notify.emit(WitWorld.sink, record(event))
            except Err as e:
                failures.append(
                    f"{event.partition.topic}-{event.partition.partition} "
                    f"term {event.term}: emit to sink {WitWorld.sink!r}: {describe(e.value)}"
                )
        WitWorld.since_summary += len(events) - len(failures)
        if failures:
            message = f"{len(failures)} of {len(events)} events failed: " + "; ".join(failures)
            raise Err(message[:MAX_ERROR])

    def on_tick(self, now_ms: int) -> None:
        count = WitWorld.since_summary
        if count == 0:
            return
        leaders = {str(c.node): c.leaders for c in cluster.leader_counts()}
        summary = {"summary": {"events": count, "leaders": leaders, "at_ms": now_ms}}
        try:
            notify.emit(WitWorld.sink, json.dumps(summary, separators=(",", ":")))
        except Err as e:
            raise Err(f"summary to sink {WitWorld.sink!r}: {describe(e.value)}")
        WitWorld.since_summary = 0
        log.log(log.Level.INFO, f"audit-py: {count} events since the last summary")
