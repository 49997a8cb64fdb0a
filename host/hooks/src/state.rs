//! What a plugin's store holds, and the host side of every import: grants
//! are checked here, term fencing is applied here, and the rest is handed
//! to [`Capabilities`].

use crate::capabilities::Capabilities;
use crate::config::Grant;
use crate::contract::leaderhook::plugin::{assignments, cluster, leadership, log, notify, types};
use crate::contract::{
    CapError, LeaderCount, NodeId, NodeInfo, PartitionAssignment, PartitionId, WriteOutcome,
};
use crate::fence;
use crate::stats::PluginCounters;
use crate::stdio::LogStream;
use std::sync::Arc;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Longest log message forwarded from a plugin.
const MAX_LOG_MESSAGE: usize = 4096;

/// Everything about a plugin its imports need, shared by its instances.
pub struct PluginContext {
    pub name: Arc<str>,
    pub grants: Vec<Grant>,
    pub caps: Arc<dyn Capabilities>,
    pub counters: Arc<PluginCounters>,
}

pub struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) stderr: LogStream,
    ctx: Arc<PluginContext>,
}

impl PluginState {
    pub(crate) fn new(ctx: Arc<PluginContext>, memory_limit: usize) -> Self {
        let stdout = LogStream::new(ctx.name.clone(), "stdout");
        let stderr = LogStream::new(ctx.name.clone(), "stderr");
        // The builder's defaults: no preopened directories, no environment,
        // no arguments, stdin closed. Network access is switched off too;
        // clocks and randomness stay (Rust's std needs them).
        let wasi = WasiCtx::builder()
            .stdout(stdout)
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                limit: memory_limit,
                hit: false,
            },
            stderr,
            ctx,
        }
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

/// Caps linear memory and remembers whether the cap was hit, so the
/// resulting trap is reported as out-of-memory rather than a plain trap.
pub(crate) struct MemoryLimiter {
    limit: usize,
    pub(crate) hit: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

impl types::Host for PluginState {}

impl log::Host for PluginState {
    fn log(&mut self, level: log::Level, mut message: String) {
        PluginCounters::bump(&self.ctx.counters.log_lines);
        if message.len() > MAX_LOG_MESSAGE {
            let mut cut = MAX_LOG_MESSAGE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        let plugin = &*self.ctx.name;
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
        let view = self.ctx.caps.partition(&partition)?;
        Some(PartitionAssignment {
            partition,
            replicas: view.replicas,
            leader: view.leader,
            epoch: view.epoch,
        })
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
        self.require(Grant::Assignments)?;
        let Some(view) = self.ctx.caps.partition(&partition) else {
            return self.refused("set-leader", &partition, CapError::UnknownPartition);
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
                return self.refused("set-leader", &partition, e);
            }
        }
        match self.ctx.caps.set_leader(&partition, leader, epoch) {
            Ok(()) => Ok(WriteOutcome::Queued),
            Err(why) => self.refused("set-leader", &partition, CapError::Unavailable(why)),
        }
    }
}

impl leadership::Host for PluginState {
    fn transfer(&mut self, partition: PartitionId, to: NodeId) -> Result<(), CapError> {
        self.require(Grant::Leadership)?;
        let Some(view) = self.ctx.caps.partition(&partition) else {
            return self.refused("transfer", &partition, CapError::UnknownPartition);
        };
        if !view.replicas.contains(&to) {
            return self.refused("transfer", &partition, CapError::NotAReplica(to));
        }
        self.ctx
            .caps
            .transfer_leader(&partition, to)
            .or_else(|why| self.refused("transfer", &partition, CapError::Unavailable(why)))
    }
}

impl notify::Host for PluginState {
    fn emit(&mut self, sink: String, payload: String) -> Result<(), CapError> {
        self.require(Grant::Notify)?;
        if !self.ctx.caps.has_sink(&sink) {
            PluginCounters::bump(&self.ctx.counters.refused_calls);
            return Err(CapError::UnknownSink(sink));
        }
        self.ctx.caps.notify(&sink, &payload).map_err(|why| {
            PluginCounters::bump(&self.ctx.counters.refused_calls);
            CapError::Unavailable(why)
        })
    }
}
