//! A node's metrics in the Prometheus text format, served over HTTP at
//! `http://<metrics_listen>/metrics`.
//!
//! Three sources, one page:
//! - the process-wide default registry: raft-engine's own write and fsync
//!   histograms, and the counters below that the Raft loop and the Kafka
//!   front end bump as things happen ([`raft()`], [`kafka()`]);
//! - a snapshot taken at each scrape ([`NodeCollector`]): Raft groups by
//!   role, the partitions whose stored assignment differs from the Raft
//!   leader this node knows (the bug leaderhook exists to fix, as a gauge),
//!   and every plugin's counters, call times, capability calls, queue and
//!   shadow comparisons, from the hook runtime's own stats.
//!
//! The page is read-only and names no secret. The same listener carries the
//! admin API over HTTP (`POST /v1/admin`, signed requests only:
//! [`crate::admin::http`]). Bounded: at most [`MAX_CONNECTIONS`] connections
//! at once (more wait in the kernel's backlog), each closed after
//! [`CONNECTION_LIFETIME`] unless an authenticated admin request is being
//! handled on it; the page grows with plugins and label values only (API
//! names, error codes, roles, outcomes: fixed sets), not with partitions.

use crate::raft::shared::{Role, Shared};
use leaderhook_hooks::HookRuntime;
use leaderhook_hooks::calls::{Capability, Outcome};
use leaderhook_hooks::stats::LATENCY_BUCKETS_US;
use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, TextEncoder,
};
use std::sync::{Arc, OnceLock, PoisonError};
use std::time::Duration;

/// Connections the metrics endpoint serves at once.
pub const MAX_CONNECTIONS: usize = 16;

/// Counters the Raft loop bumps.
pub struct RaftMetrics {
    pub elections_started: IntCounter,
    pub elections_won: IntCounter,
    pub leadership_changes: IntCounter,
    pub resync_redeliveries: IntCounter,
    /// Entry and snapshot bytes from peers one loop round took: a round
    /// stops taking once it holds the inbox budget, so it stays under twice
    /// that.
    pub round_inbound_bytes: prometheus::Histogram,
}

impl RaftMetrics {
    /// A replica's role went from `old` to `new`.
    pub fn role_changed(&self, old: Role, new: Role) {
        if old == new {
            return;
        }
        match new {
            Role::Candidate => self.elections_started.inc(),
            Role::Leader => self.elections_won.inc(),
            Role::Follower | Role::PreCandidate => {}
        }
    }
}

/// Counters and histograms the Kafka front end feeds.
pub struct KafkaMetrics {
    requests: IntCounterVec,
    latency: HistogramVec,
    pub bytes_in: IntCounter,
    pub bytes_out: IntCounter,
}

fn register<T: prometheus::core::Collector + Clone + 'static>(metric: T) -> T {
    // Registered once per process (the statics below); a second
    // registration can only come from a test creating its own.
    let _ = prometheus::register(Box::new(metric.clone()));
    metric
}

fn counter(name: &str, help: &str) -> IntCounter {
    register(IntCounter::new(name, help).expect("valid metric"))
}

/// The Raft loop's counters (registered on first use).
pub fn raft() -> &'static RaftMetrics {
    static RAFT: OnceLock<RaftMetrics> = OnceLock::new();
    RAFT.get_or_init(|| RaftMetrics {
        elections_started: counter(
            "leaderhook_raft_elections_started_total",
            "Elections this node's replicas started (became candidate).",
        ),
        elections_won: counter(
            "leaderhook_raft_elections_won_total",
            "Elections this node's replicas won (became leader).",
        ),
        leadership_changes: counter(
            "leaderhook_raft_leadership_changes_total",
            "Leadership events this node's replicas produced for the plugins.",
        ),
        resync_redeliveries: counter(
            "leaderhook_resync_redeliveries_total",
            "Leaderships re-delivered by the resync because the stored assignment did not show \
             them.",
        ),
        round_inbound_bytes: register(
            prometheus::Histogram::with_opts(
                HistogramOpts::new(
                    "leaderhook_raft_round_inbound_bytes",
                    "Entry and snapshot bytes received from peers that one Raft loop round took \
                     (under twice transport.inbox_bytes).",
                )
                .buckets(prometheus::exponential_buckets(65536.0, 2.0, 12).expect("valid buckets")),
            )
            .expect("valid metric"),
        ),
    })
}

/// The Kafka front end's metrics (registered on first use).
pub fn kafka() -> &'static KafkaMetrics {
    static KAFKA: OnceLock<KafkaMetrics> = OnceLock::new();
    KAFKA.get_or_init(|| KafkaMetrics {
        requests: register(
            IntCounterVec::new(
                Opts::new(
                    "leaderhook_kafka_requests_total",
                    "Kafka requests answered, by API and the first error code of the response \
                     (0: none).",
                ),
                &["api", "error_code"],
            )
            .expect("valid metric"),
        ),
        latency: register(
            HistogramVec::new(
                HistogramOpts::new(
                    "leaderhook_kafka_request_seconds",
                    "Time from a Kafka request read to its response encoded, by API.",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0, 30.0,
                ]),
                &["api"],
            )
            .expect("valid metric"),
        ),
        bytes_in: counter(
            "leaderhook_kafka_bytes_in_total",
            "Bytes of Kafka request frames read.",
        ),
        bytes_out: counter(
            "leaderhook_kafka_bytes_out_total",
            "Bytes of Kafka response frames written.",
        ),
    })
}

impl KafkaMetrics {
    /// One answered request.
    pub fn request(&self, api: kafka_protocol::messages::ApiKey, error_code: i16, took: Duration) {
        let api = format!("{api:?}");
        self.requests
            .with_label_values(&[api.as_str(), &error_code.to_string()])
            .inc();
        self.latency
            .with_label_values(&[api.as_str()])
            .observe(took.as_secs_f64());
    }
}

/// The first non-zero error code of a response (0 if none): top-level
/// codes first, then per topic and partition for the busiest APIs.
pub fn error_code(response: &kafka_protocol::messages::ResponseKind) -> i16 {
    use kafka_protocol::messages::ResponseKind as R;
    match response {
        R::Produce(r) => first(
            r.responses
                .iter()
                .flat_map(|t| t.partition_responses.iter().map(|p| p.error_code)),
        ),
        R::Fetch(r) => first(
            std::iter::once(r.error_code).chain(
                r.responses
                    .iter()
                    .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
            ),
        ),
        R::Metadata(r) => first(r.topics.iter().flat_map(|t| {
            std::iter::once(t.error_code).chain(t.partitions.iter().map(|p| p.error_code))
        })),
        R::ListOffsets(r) => first(
            r.topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
        ),
        R::CreateTopics(r) => first(r.topics.iter().map(|t| t.error_code)),
        R::DeleteTopics(r) => first(r.responses.iter().map(|t| t.error_code)),
        R::ApiVersions(r) => r.error_code,
        R::FindCoordinator(r) => {
            first(std::iter::once(r.error_code).chain(r.coordinators.iter().map(|c| c.error_code)))
        }
        R::JoinGroup(r) => r.error_code,
        R::SyncGroup(r) => r.error_code,
        R::Heartbeat(r) => r.error_code,
        R::LeaveGroup(r) => r.error_code,
        R::InitProducerId(r) => r.error_code,
        R::OffsetFetch(r) => r.error_code,
        R::OffsetCommit(r) => first(
            r.topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
        ),
        _ => 0,
    }
}

/// The first non-zero code, or 0.
fn first(mut codes: impl Iterator<Item = i16>) -> i16 {
    codes.find(|c| *c != 0).unwrap_or(0)
}

/// What a scrape reads besides the registry.
pub struct NodeCollector {
    pub shared: Arc<Shared>,
    pub hooks: Arc<HookRuntime>,
}

impl NodeCollector {
    /// The whole page, in the Prometheus text format.
    pub fn render(&self) -> String {
        // Make sure the event counters exist even before their first event.
        let _ = (raft(), kafka());
        let mut families = prometheus::gather();
        families.extend(self.collect());
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&families, &mut out)
            .expect("encoding to memory");
        String::from_utf8(out).expect("the text format is UTF-8")
    }

    /// The families computed at scrape time.
    pub fn collect(&self) -> Vec<MetricFamily> {
        let mut families = self.raft_families();
        families.extend(self.plugin_families());
        families
    }

    fn raft_families(&self) -> Vec<MetricFamily> {
        let replicas = self
            .shared
            .replicas
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let metadata = self
            .shared
            .metadata
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let mut by_role = [0u64; 4];
        let mut mismatched = 0;
        for replica in replicas.values() {
            by_role[match replica.role {
                Role::Follower => 0,
                Role::Candidate => 1,
                Role::PreCandidate => 2,
                Role::Leader => 3,
            }] += 1;
            let (Some(partition), Some(leader)) = (&replica.partition, replica.leader) else {
                continue; // the metadata group, or an election running
            };
            if let Some(stored) = metadata.partition(partition)
                && (stored.leader != Some(leader) || stored.epoch != replica.term)
            {
                mismatched += 1;
            }
        }
        let roles = ["follower", "candidate", "pre-candidate", "leader"];
        vec![
            family(
                "leaderhook_raft_groups",
                "Raft groups of this node (partitions and the metadata group) by role.",
                MetricType::GAUGE,
                roles
                    .iter()
                    .zip(by_role)
                    .map(|(role, n)| gauge(&[("role", role)], n as f64))
                    .collect(),
            ),
            family(
                "leaderhook_assignment_mismatch",
                "Partitions of this node whose stored assignment (leader, epoch) differs from \
                 the Raft leader and term this node knows.",
                MetricType::GAUGE,
                vec![gauge(&[], f64::from(mismatched))],
            ),
        ]
    }

    fn plugin_families(&self) -> Vec<MetricFamily> {
        let stats = self.hooks.stats();
        let mut plugins: Vec<&leaderhook_hooks::PluginStats> = stats.plugins.iter().collect();
        if let Some(fallback) = &stats.fallback {
            plugins.push(&fallback.plugin);
        }
        let mut batches = Vec::new();
        let mut events = Vec::new();
        let mut failures = Vec::new();
        let mut latency = Vec::new();
        let mut calls = Vec::new();
        let mut depth = Vec::new();
        let mut coalesced = Vec::new();
        let mut dropped = Vec::new();
        let mut state = Vec::new();
        let mut agreements = Vec::new();
        let mut disagreements = Vec::new();
        for p in plugins {
            let name = p.name.as_str();
            let plugin = [("plugin", name)];
            batches.push(counter_metric(
                &[("plugin", name), ("mode", p.mode.name())],
                p.batches + p.failures(),
            ));
            events.push(counter_metric(&plugin, p.events));
            for (kind, n) in [
                ("trap", p.traps),
                ("panic", p.panics),
                ("timeout", p.timeouts),
                ("out-of-memory", p.out_of_memory),
                ("error", p.errors),
                ("init", p.init_failures),
            ] {
                failures.push(counter_metric(&[("plugin", name), ("kind", kind)], n));
            }
            latency.push(histogram(&plugin, &p.latency));
            for capability in Capability::ALL {
                for outcome in Outcome::ALL {
                    let n = p
                        .calls
                        .iter()
                        .find(|c| c.capability == capability && c.outcome == outcome)
                        .map_or(0, |c| c.count);
                    // Every capability's `ok` always, so rates start at 0.
                    if n > 0 || outcome == Outcome::Ok {
                        calls.push(counter_metric(
                            &[
                                ("plugin", name),
                                ("capability", capability.name()),
                                ("outcome", outcome.name()),
                            ],
                            n,
                        ));
                    }
                }
            }
            depth.push(gauge(&plugin, p.queue.pending as f64));
            coalesced.push(counter_metric(&plugin, p.queue.coalesced));
            dropped.push(counter_metric(&plugin, p.queue.dropped));
            state.push(gauge(&[("plugin", name), ("state", p.state.name())], 1.0));
            if let Some(shadow) = &p.shadow {
                agreements.push(counter_metric(&plugin, shadow.agreements));
                disagreements.push(counter_metric(&plugin, shadow.disagreements));
            }
        }
        let mut out = vec![
            family(
                "leaderhook_plugin_calls_total",
                "on-events calls (each attempt), by plugin and mode.",
                MetricType::COUNTER,
                batches,
            ),
            family(
                "leaderhook_plugin_events_total",
                "Events delivered in successful on-events calls.",
                MetricType::COUNTER,
                events,
            ),
            family(
                "leaderhook_plugin_failures_total",
                "Failed plugin calls by kind.",
                MetricType::COUNTER,
                failures,
            ),
            family(
                "leaderhook_plugin_call_seconds",
                "Time of each on-events call.",
                MetricType::HISTOGRAM,
                latency,
            ),
            family(
                "leaderhook_plugin_capability_calls_total",
                "Capability calls (set-leader, transfer, emit) by outcome.",
                MetricType::COUNTER,
                calls,
            ),
            family(
                "leaderhook_plugin_queue_depth",
                "Events waiting in the plugin's queue.",
                MetricType::GAUGE,
                depth,
            ),
            family(
                "leaderhook_plugin_coalesced_total",
                "Events replaced by a newer event of their partition in a full queue.",
                MetricType::COUNTER,
                coalesced,
            ),
            family(
                "leaderhook_plugin_dropped_total",
                "Events dropped by a full queue (the resync re-delivers leadership).",
                MetricType::COUNTER,
                dropped,
            ),
            family(
                "leaderhook_plugin_state",
                "1 for the plugin's state: enabled, disabled, failing, auto-disabled.",
                MetricType::GAUGE,
                state,
            ),
            family(
                "leaderhook_shadow_agreements_total",
                "Groups of events where a shadow plugin decided what the active chain did.",
                MetricType::COUNTER,
                agreements,
            ),
            family(
                "leaderhook_shadow_disagreements_total",
                "Groups of events where a shadow plugin decided otherwise.",
                MetricType::COUNTER,
                disagreements,
            ),
        ];
        if let Some(fallback) = &stats.fallback {
            out.push(family(
                "leaderhook_fallback_engaged",
                "1 while the embedded default plugin writes the assignments because no healthy \
                 active plugin holding the assignments grant is in the chain.",
                MetricType::GAUGE,
                vec![gauge(&[], if fallback.engaged { 1.0 } else { 0.0 })],
            ));
            out.push(family(
                "leaderhook_fallback_switches_total",
                "Times the embedded default plugin took over or handed back.",
                MetricType::COUNTER,
                vec![counter_metric(&[], fallback.switches)],
            ));
        }
        out.retain(|f| !f.get_metric().is_empty());
        out
    }
}

fn labels(pairs: &[(&str, &str)]) -> Vec<LabelPair> {
    pairs
        .iter()
        .map(|(name, value)| {
            let mut pair = LabelPair::default();
            pair.set_name((*name).to_owned());
            pair.set_value((*value).to_owned());
            pair
        })
        .collect()
}

fn gauge(pairs: &[(&str, &str)], value: f64) -> Metric {
    let mut g = Gauge::default();
    g.set_value(value);
    let mut m = Metric::default();
    m.set_label(labels(pairs).into());
    m.set_gauge(g);
    m
}

fn counter_metric(pairs: &[(&str, &str)], value: u64) -> Metric {
    let mut c = Counter::default();
    c.set_value(value as f64);
    let mut m = Metric::default();
    m.set_label(labels(pairs).into());
    m.set_counter(c);
    m
}

fn histogram(pairs: &[(&str, &str)], stats: &leaderhook_hooks::LatencyStats) -> Metric {
    let mut h = Histogram::default();
    let mut cumulative = 0;
    let mut buckets = Vec::new();
    for (bound, count) in LATENCY_BUCKETS_US.iter().zip(&stats.counts) {
        cumulative += count;
        let mut b = Bucket::default();
        b.set_upper_bound(*bound as f64 / 1e6);
        b.set_cumulative_count(cumulative);
        buckets.push(b);
    }
    h.set_bucket(buckets.into());
    h.set_sample_count(stats.count);
    h.set_sample_sum(stats.sum_us as f64 / 1e6);
    let mut m = Metric::default();
    m.set_label(labels(pairs).into());
    m.set_histogram(h);
    m
}

fn family(name: &str, help: &str, kind: MetricType, metrics: Vec<Metric>) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.to_owned());
    f.set_help(help.to_owned());
    f.set_field_type(kind);
    f.set_metric(metrics.into());
    f
}

/// Serves `GET /metrics`, and the routes of `extra` (the admin API), on
/// `listener` until the process ends.
pub async fn serve(
    collector: Arc<NodeCollector>,
    extra: axum::Router,
    listener: tokio::net::TcpListener,
) {
    let render = Arc::new(move || collector.render());
    serve_with(
        render,
        extra,
        listener,
        MAX_CONNECTIONS,
        CONNECTION_LIFETIME,
    )
    .await;
}

/// How long one connection may stay open, whatever its client does (a
/// scrape takes milliseconds): a client that connects and sends nothing
/// cannot hold one of the [`MAX_CONNECTIONS`] slots for longer. A handler
/// may hold it open while it works ([`ConnInfo::busy`]); the connection
/// then has this long again from the moment it is done.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(10);

pub use limit::{Busy, ConnInfo};

/// A page renderer, called off the async workers.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

async fn serve_with(
    render: Render,
    extra: axum::Router,
    listener: tokio::net::TcpListener,
    max: usize,
    lifetime: Duration,
) {
    use axum::routing::get;
    let app = axum::Router::new().merge(extra).route(
        "/metrics",
        get(move || {
            let render = render.clone();
            async move {
                let page = tokio::task::spawn_blocking(move || render())
                    .await
                    .unwrap_or_default();
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    page,
                )
            }
        }),
    );
    let listener = limit::Limited::new(listener, max, lifetime);
    let app = app.into_make_service_with_connect_info::<ConnInfo>();
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!("the metrics endpoint stopped: {e}");
    }
}

/// A listener that holds at most N connections open at once: the next
/// accept waits for a slot.
mod limit {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex, PoisonError};
    use std::task::{Context, Poll};
    use std::time::Duration;
    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::{OwnedSemaphorePermit, Semaphore};
    use tokio::time::{Instant, Sleep};

    /// When a connection expires, shared with its handlers.
    struct Lifetime {
        /// Handlers working for it now: it does not expire meanwhile.
        busy: AtomicUsize,
        deadline: Mutex<Instant>,
        lifetime: Duration,
    }

    /// What a handler knows of its connection (axum's `ConnectInfo`).
    #[derive(Clone)]
    pub struct ConnInfo {
        pub peer: std::net::SocketAddr,
        lifetime: Arc<Lifetime>,
    }

    impl ConnInfo {
        /// Keeps the connection open while the guard lives (past its
        /// lifetime if need be), and for a lifetime after.
        pub fn busy(&self) -> Busy {
            self.lifetime.busy.fetch_add(1, Ordering::AcqRel);
            Busy(self.lifetime.clone())
        }
    }

    /// See [`ConnInfo::busy`].
    pub struct Busy(Arc<Lifetime>);

    impl Drop for Busy {
        fn drop(&mut self) {
            let mut deadline = self
                .0
                .deadline
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            *deadline = (*deadline).max(Instant::now() + self.0.lifetime);
            self.0.busy.fetch_sub(1, Ordering::AcqRel);
        }
    }

    impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, Limited>> for ConnInfo {
        fn connect_info(stream: axum::serve::IncomingStream<'_, Limited>) -> Self {
            Self {
                peer: *stream.remote_addr(),
                lifetime: stream.io().lifetime.clone(),
            }
        }
    }

    pub struct Limited {
        listener: TcpListener,
        slots: Arc<Semaphore>,
        lifetime: Duration,
    }

    impl Limited {
        pub fn new(listener: TcpListener, max: usize, lifetime: Duration) -> Self {
            Self {
                listener,
                slots: Arc::new(Semaphore::new(max)),
                lifetime,
            }
        }
    }

    /// A connection and its slot, freed when it closes; past its deadline
    /// (unless a handler is busy for it) every read and write fails, so the
    /// server drops it.
    pub struct Conn {
        stream: TcpStream,
        deadline: Pin<Box<Sleep>>,
        lifetime: Arc<Lifetime>,
        _slot: OwnedSemaphorePermit,
    }

    impl Conn {
        fn expired(&mut self, cx: &mut Context<'_>) -> bool {
            if self.lifetime.busy.load(Ordering::Acquire) > 0 {
                return false;
            }
            let deadline = *self
                .lifetime
                .deadline
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if self.deadline.deadline() != deadline {
                self.deadline.as_mut().reset(deadline);
            }
            self.deadline.as_mut().poll(cx).is_ready()
        }
    }

    fn timed_out() -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "metrics connection open too long",
        )
    }

    impl axum::serve::Listener for Limited {
        type Io = Conn;
        type Addr = std::net::SocketAddr;

        async fn accept(&mut self) -> (Conn, std::net::SocketAddr) {
            let slot = self
                .slots
                .clone()
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            loop {
                match self.listener.accept().await {
                    Ok((stream, addr)) => {
                        let deadline = Instant::now() + self.lifetime;
                        return (
                            Conn {
                                stream,
                                deadline: Box::pin(tokio::time::sleep_until(deadline)),
                                lifetime: Arc::new(Lifetime {
                                    busy: AtomicUsize::new(0),
                                    deadline: Mutex::new(deadline),
                                    lifetime: self.lifetime,
                                }),
                                _slot: slot,
                            },
                            addr,
                        );
                    }
                    Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
                }
            }
        }

        fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
            self.listener.local_addr()
        }
    }

    impl AsyncRead for Conn {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            if self.expired(cx) {
                return Poll::Ready(Err(timed_out()));
            }
            Pin::new(&mut self.stream).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Conn {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            if self.expired(cx) {
                return Poll::Ready(Err(timed_out()));
            }
            Pin::new(&mut self.stream).poll_write(cx, buf)
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.stream).poll_flush(cx)
        }

        fn poll_shutdown(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.stream).poll_shutdown(cx)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn get(addr: std::net::SocketAddr) -> String {
        get_path(addr, "/metrics").unwrap()
    }

    /// Clients that connect and send nothing fill every slot; a scrape
    /// still gets its page once their connections reach their lifetime.
    #[test]
    fn idle_connections_cannot_hold_the_endpoint() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let render: Render = Arc::new(|| "leaderhook_test 1\n".to_owned());
        runtime.spawn(serve_with(
            render,
            axum::Router::new(),
            listener,
            2,
            Duration::from_millis(300),
        ));
        let idle: Vec<std::net::TcpStream> = (0..2)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        std::thread::sleep(Duration::from_millis(50));
        let started = std::time::Instant::now();
        let page = get(addr);
        assert!(page.starts_with("HTTP/1.1 200"), "{page}");
        assert!(page.ends_with("leaderhook_test 1\n"), "{page}");
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(200),
            "both slots were taken: the scrape waited ({waited:?})"
        );
        assert!(waited < Duration::from_secs(5), "{waited:?}");
        drop(idle);
    }

    fn get_path(addr: std::net::SocketAddr, path: &str) -> std::io::Result<String> {
        let mut stream = std::net::TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )?;
        let mut page = String::new();
        stream.take(1 << 20).read_to_string(&mut page)?;
        Ok(page)
    }

    /// A handler that says it is busy keeps its connection past the
    /// lifetime and gets its answer out; one that does not loses it.
    #[test]
    fn a_busy_handler_keeps_its_connection_past_the_lifetime() {
        use axum::extract::ConnectInfo;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let lifetime = Duration::from_millis(300);
        let extra = axum::Router::new()
            .route(
                "/busy",
                axum::routing::get(|ConnectInfo(conn): ConnectInfo<ConnInfo>| async move {
                    let _busy = conn.busy();
                    tokio::time::sleep(Duration::from_millis(1000)).await;
                    "done while busy"
                }),
            )
            .route(
                "/idle",
                axum::routing::get(|| async {
                    tokio::time::sleep(Duration::from_millis(1000)).await;
                    "done"
                }),
            );
        let render: Render = Arc::new(String::new);
        runtime.spawn(serve_with(render, extra, listener, 2, lifetime));
        let page = get_path(addr, "/busy").unwrap();
        assert!(page.starts_with("HTTP/1.1 200"), "{page}");
        assert!(page.ends_with("done while busy"), "{page}");
        // Without the guard the connection is closed at its lifetime.
        let page = get_path(addr, "/idle").unwrap_or_default();
        assert!(!page.contains("done"), "{page}");
    }
}
