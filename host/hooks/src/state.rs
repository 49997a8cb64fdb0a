//! What a plugin's store holds, and the host side of every import: grants
//! are checked here, term fencing is applied here, and the rest is handed
//! to [`Capabilities`].

use crate::cancel::CancelToken;
use crate::capabilities::Capabilities;
use crate::config::Grant;
use crate::contract::latest::leaderhook::plugin::{
    assignments, cluster, leadership, log, notify, types,
};
use crate::contract::{
    CapError, LeaderCount, Level, NodeId, NodeInfo, PartitionAssignment, PartitionId, Quota,
    QuotaWindow, WriteOutcome,
};
use crate::fence;
use crate::limits::{InstanceLimiter, OverQuota, Quotas, Quoted};
use crate::loggate::LogGate;
use crate::stats::PluginCounters;
use crate::stdio::LogStream;
use crate::text::{self, MAX_PAYLOAD, MAX_TEXT};
use std::sync::Arc;
use std::time::Instant;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Most WASI resources (streams, pollables) one instance may hold at once.
const MAX_RESOURCES: usize = 1024;
/// Largest `wasi:random` request served, in bytes.
const MAX_RANDOM_BYTES: u64 = 64 * 1024;

/// Receives every line a plugin logs through the `log` import (those the
/// log limits let through), beside the host log: the harness records them
/// per simulated node so scenarios can expect them.
pub trait LogTap: Send + Sync + 'static {
    fn line(&self, plugin: &str, level: Level, message: &str);
}

/// Everything about a plugin its imports need, shared by its instances.
pub struct PluginContext {
    pub name: Arc<str>,
    pub grants: Vec<Grant>,
    pub caps: Arc<dyn Capabilities>,
    pub counters: Arc<PluginCounters>,
    /// `log` calls and stdout/stderr lines share it.
    pub(crate) log_gate: Arc<LogGate>,
    /// The host's warnings about this plugin's failures.
    pub(crate) failure_gate: LogGate,
    tap: Option<Arc<dyn LogTap>>,
}

impl PluginContext {
    pub(crate) fn new(
        name: &str,
        grants: Vec<Grant>,
        caps: Arc<dyn Capabilities>,
        counters: Arc<PluginCounters>,
        limits: &crate::config::Limits,
        tap: Option<Arc<dyn LogTap>>,
    ) -> Self {
        let name: Arc<str> = name.into();
        Self {
            log_gate: Arc::new(LogGate::output(
                name.clone(),
                counters.clone(),
                limits.log_per_batch,
                limits.log_per_sec,
            )),
            failure_gate: LogGate::failures(name.clone()),
            name,
            grants,
            caps,
            counters,
            tap,
        }
    }
}

pub struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: InstanceLimiter,
    stdout: LogStream,
    pub(crate) stderr: LogStream,
    pub(crate) quotas: Quotas,
    /// Epoch ticks the call in progress may still run (counted down by the
    /// epoch callback).
    pub(crate) ticks_left: u64,
    pub(crate) cancel: CancelToken,
    ctx: Arc<PluginContext>,
}

impl PluginState {
    pub(crate) fn new(
        ctx: Arc<PluginContext>,
        memory_limit: usize,
        quotas: Quotas,
        cancel: CancelToken,
    ) -> Self {
        let stdout = LogStream::new(&ctx, "stdout");
        let stderr = LogStream::new(&ctx, "stderr");
        // The builder's defaults: no preopened directories, no environment,
        // no arguments, stdin closed. Network access is switched off too;
        // clocks and randomness stay (Rust's std needs them).
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .max_random_size(MAX_RANDOM_BYTES)
            .build();
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        Self {
            wasi,
            table,
            limiter: InstanceLimiter::new(memory_limit),
            stdout,
            stderr,
            quotas,
            ticks_left: 0,
            cancel,
            ctx,
        }
    }

    /// A call (`init` or `on-events`) starts at `now`: fresh per-batch
    /// allowances, fresh trap evidence, and the ticks the epoch callback
    /// allows it.
    pub(crate) fn begin_call(&mut self, now: Instant, timeout: std::time::Duration) {
        self.ticks_left = crate::engine::HookEngine::deadline_ticks(timeout);
        self.limiter.hit = false;
        self.stderr.clear_tail();
        self.quotas.begin_batch(now);
        self.ctx.log_gate.begin_batch();
    }

    /// A call ended (however it ended): unfinished output lines go out, and
    /// the log summary if one is due.
    pub(crate) fn end_call(&mut self) {
        self.stdout.flush_partial();
        self.stderr.flush_partial();
        self.ctx.log_gate.summarize();
    }

    fn require(&self, grant: Grant) -> Result<(), CapError> {
        if self.ctx.grants.contains(&grant) {
            return Ok(());
        }
        PluginCounters::bump(&self.ctx.counters.ungranted_calls);
        tracing::warn!(
            plugin = %self.ctx.name,
            capability = grant.name(),
            "plugin called a capability it was not granted"
        );
        Err(CapError::NotGranted(grant.name().to_owned()))
    }

    /// Takes one call from the plugin's quota for `call`, or refuses it
    /// (counted; logged once per batch).
    fn quota(&mut self, call: Quoted) -> Result<(), CapError> {
        let Err(over) = self.quotas.take(call) else {
            return Ok(());
        };
        let c = &self.ctx.counters;
        PluginCounters::bump(match call {
            Quoted::SetLeader => &c.over_quota_set_leader,
            Quoted::Transfer => &c.over_quota_transfer,
            Quoted::Emit => &c.over_quota_emit,
        });
        if self.quotas.first_refusal(call) {
            tracing::warn!(
                plugin = %self.ctx.name,
                call = call.name(),
                "{over}; further refusals in this batch are counted, not logged"
            );
        }
        Err(CapError::OverQuota(match over {
            OverQuota::PerBatch(_, limit) => Quota {
                limit,
                window: QuotaWindow::Batch,
            },
            OverQuota::PerSec(_, limit) => Quota {
                limit,
                window: QuotaWindow::Second,
            },
        }))
    }

    fn refused<T>(&self, call: &str, partition: &PartitionId, e: CapError) -> Result<T, CapError> {
        PluginCounters::bump(&self.ctx.counters.refused_calls);
        tracing::debug!(plugin = %self.ctx.name, %partition, "{call} refused: {}", e.describe());
        Err(e)
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for PluginState {}

impl log::Host for PluginState {
    fn log(&mut self, level: log::Level, mut message: String) {
        if !self.ctx.log_gate.admit() {
            return; // suppressed (counted by the gate); the text is dropped here
        }
        PluginCounters::bump(&self.ctx.counters.log_lines);
        if text::bound(&mut message, MAX_TEXT) {
            PluginCounters::bump(&self.ctx.counters.truncated);
        }
        let plugin = &*self.ctx.name;
        if let Some(tap) = &self.ctx.tap {
            tap.line(plugin, level, &message);
        }
        match level {
            log::Level::Trace => tracing::trace!(target: "leaderhook::plugin", plugin, "{message}"),
            log::Level::Debug => tracing::debug!(target: "leaderhook::plugin", plugin, "{message}"),
            log::Level::Info => tracing::info!(target: "leaderhook::plugin", plugin, "{message}"),
            log::Level::Warn => tracing::warn!(target: "leaderhook::plugin", plugin, "{message}"),
            log::Level::Error => tracing::error!(target: "leaderhook::plugin", plugin, "{message}"),
        }
    }
}

impl cluster::Host for PluginState {
    fn local_node(&mut self) -> NodeId {
        self.ctx.caps.local_node()
    }

    fn nodes(&mut self) -> Vec<NodeInfo> {
        self.ctx.caps.nodes()
    }

    fn assignment(&mut self, partition: PartitionId) -> Option<PartitionAssignment> {
        Some(self.ctx.caps.partition(&partition)?.assignment(partition))
    }

    fn assignments(&mut self) -> Vec<PartitionAssignment> {
        self.ctx.caps.assignments()
    }

    fn leader_counts(&mut self) -> Vec<LeaderCount> {
        self.ctx.caps.leader_counts()
    }
}

impl assignments::Host for PluginState {
    fn set_leader(
        &mut self,
        partition: PartitionId,
        leader: NodeId,
        epoch: u64,
    ) -> Result<WriteOutcome, CapError> {
        let result = self.set_leader_unrecorded(&partition, leader, epoch);
        self.ctx
            .counters
            .calls
            .set_leader(&partition, leader, epoch, &result);
        result
    }
}

impl PluginState {
    fn set_leader_unrecorded(
        &mut self,
        partition: &PartitionId,
        leader: NodeId,
        epoch: u64,
    ) -> Result<WriteOutcome, CapError> {
        self.require(Grant::Assignments)?;
        self.quota(Quoted::SetLeader)?;
        let Some(view) = self.ctx.caps.partition(partition) else {
            return self.refused("set-leader", partition, CapError::UnknownPartition);
        };
        match fence::check_set_leader(&view, leader, epoch) {
            Ok(WriteOutcome::Queued) => {}
            Ok(WriteOutcome::Unchanged) => return Ok(WriteOutcome::Unchanged),
            Err(e) => {
                if view.disagrees_with_raft() {
                    // Metadata names a leader Raft did not elect and this
                    // write does not fix it: never silent.
                    PluginCounters::bump(&self.ctx.counters.refused_while_stale);
                    tracing::warn!(
                        plugin = %self.ctx.name,
                        %partition,
                        stored_leader = ?view.leader,
                        stored_epoch = view.epoch,
                        raft_leader = ?view.elected,
                        raft_term = view.highest_term,
                        "set-leader({leader}, {epoch}) refused while the stored assignment \
                         differs from Raft: {}",
                        e.describe()
                    );
                }
                return self.refused("set-leader", partition, e);
            }
        }
        match self.ctx.caps.set_leader(partition, leader, epoch) {
            Ok(()) => Ok(WriteOutcome::Queued),
            Err(why) => self.refused("set-leader", partition, why.to_cap_error()),
        }
    }
}

impl leadership::Host for PluginState {
    fn transfer(&mut self, partition: PartitionId, to: NodeId) -> Result<(), CapError> {
        let result = self.transfer_unrecorded(&partition, to);
        self.ctx.counters.calls.transfer(&partition, to, &result);
        result
    }
}

impl PluginState {
    fn transfer_unrecorded(&mut self, partition: &PartitionId, to: NodeId) -> Result<(), CapError> {
        self.require(Grant::Leadership)?;
        self.quota(Quoted::Transfer)?;
        let Some(view) = self.ctx.caps.partition(partition) else {
            return self.refused("transfer", partition, CapError::UnknownPartition);
        };
        if !view.replicas.contains(&to) {
            return self.refused("transfer", partition, CapError::NotAReplica(to));
        }
        self.ctx
            .caps
            .transfer_leader(partition, to)
            .or_else(|why| self.refused("transfer", partition, why.to_cap_error()))
    }
}

impl notify::Host for PluginState {
    fn emit(&mut self, sink: String, payload: String) -> Result<(), CapError> {
        let ctx = self.ctx.clone();
        let calls = &ctx.counters.calls;
        // The arguments are copied only while calls are captured.
        let kept = calls.capturing().then(|| (sink.clone(), payload.clone()));
        let result = self.emit_unrecorded(sink, payload);
        let (sink, payload) = kept.as_ref().map_or(("", ""), |(s, p)| (s, p));
        calls.emit(sink, payload, &result);
        result
    }
}

impl PluginState {
    fn emit_unrecorded(&mut self, mut sink: String, mut payload: String) -> Result<(), CapError> {
        self.require(Grant::Notify)?;
        self.quota(Quoted::Emit)?;
        if !self.ctx.caps.has_sink(&sink) {
            PluginCounters::bump(&self.ctx.counters.refused_calls);
            text::bound(&mut sink, MAX_TEXT);
            return Err(CapError::UnknownSink(sink));
        }
        if text::bound(&mut payload, MAX_PAYLOAD) {
            PluginCounters::bump(&self.ctx.counters.truncated);
        }
        self.ctx.caps.notify(&sink, &payload).map_err(|why| {
            PluginCounters::bump(&self.ctx.counters.refused_calls);
            why.to_cap_error()
        })
    }
}
