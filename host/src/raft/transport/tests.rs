//! The transport over real loopback sockets: delivery and order, reconnection, the peer-lost
//! notice, and every refusal (garbage, strangers, floods, byte bounds).

use super::wire::Handshake;
use super::writer::{BACKOFF_MAX, BACKOFF_MIN, Backoff};
use super::*;
use crate::auth::Secret;
use raft::prelude::MessageType;
use std::sync::mpsc::{Receiver, sync_channel};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TEST_BUDGET: Duration = Duration::from_secs(30);

fn envelope(group: u64, from: u64, to: u64, index: u64) -> Envelope {
    let mut message = Message::default();
    message.set_msg_type(MessageType::MsgAppend);
    message.from = from;
    message.to = to;
    message.term = 3;
    message.index = index;
    Envelope { group, message }
}

/// A free port on 127.0.0.1 (bound then released).
fn reserve_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// The cluster of these tests.
fn auth() -> ClusterAuth {
    ClusterAuth::new("test-cluster", Secret::new(&"s".repeat(32)).unwrap()).unwrap()
}

fn settings(id: u64, listen: SocketAddr, peers: &[(u64, SocketAddr)]) -> TransportSettings {
    TransportSettings {
        node_id: id,
        listen,
        peers: peers.iter().copied().collect(),
        auth: auth(),
        max_connections: 64,
        peer_queue_bytes: MIN_PEER_QUEUE_BYTES,
        inbox_bytes: 64 << 20,
    }
}

fn start(
    id: u64,
    listen: SocketAddr,
    peers: &[(u64, SocketAddr)],
    inbox_capacity: usize,
) -> anyhow::Result<(Transport, Receiver<Envelope>)> {
    start_with(settings(id, listen, peers), inbox_capacity)
}

fn start_with(
    settings: TransportSettings,
    inbox_capacity: usize,
) -> anyhow::Result<(Transport, Receiver<Envelope>)> {
    let (tx, rx) = sync_channel(inbox_capacity);
    let transport = Transport::start(settings, tx, tokio::runtime::Handle::current())?;
    Ok((transport, rx))
}

/// Starts on `listen`, retrying while the previous owner of the port is still closing.
async fn start_retrying(
    id: u64,
    listen: SocketAddr,
    peers: &[(u64, SocketAddr)],
) -> (Transport, Receiver<Envelope>) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match start(id, listen, peers, 65536) {
            Ok(started) => return started,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("cannot rebind {listen}: {e:#}"),
        }
    }
}

/// Collects up to `n` envelopes, giving up after `within`.
async fn collect(rx: &Receiver<Envelope>, n: usize, within: Duration) -> Vec<Envelope> {
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    while out.len() < n && Instant::now() < deadline {
        match rx.try_recv() {
            Ok(envelope) => out.push(envelope),
            Err(_) => tokio::time::sleep(Duration::from_millis(2)).await,
        }
    }
    out
}

/// Polls `cond` until it holds, panicking after `within`.
async fn eventually(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Sends one probe every 20 ms until the receiver gets one; returns what it got.
async fn send_until_received(
    from: &Transport,
    rx: &Receiver<Envelope>,
    make: impl Fn(u64) -> Envelope,
    within: Duration,
) -> Envelope {
    let deadline = Instant::now() + within;
    let mut i = 0;
    loop {
        assert!(
            Instant::now() < deadline,
            "nothing received within {within:?}"
        );
        i += 1;
        from.send(vec![make(i)]);
        if let Some(got) = collect(rx, 1, Duration::from_millis(20)).await.pop() {
            return got;
        }
    }
}

fn assert_in_order(received: &[Envelope], from: u64, groups: u64, per_group: u64) {
    let mut next: HashMap<u64, u64> = (1..=groups).map(|g| (g, 1)).collect();
    for envelope in received {
        assert_eq!(envelope.message.from, from);
        let expected = next.get_mut(&envelope.group).expect("known group");
        assert_eq!(
            envelope.message.index, *expected,
            "group {}",
            envelope.group
        );
        *expected += 1;
    }
    assert!(next.values().all(|n| *n == per_group + 1), "{next:?}");
}

#[test]
fn backoff_doubles_with_jitter_up_to_the_max() {
    let mut backoff = Backoff::new(12345);
    let mut base = BACKOFF_MIN;
    for _ in 0..10 {
        let delay = backoff.next_delay();
        assert!(delay >= base / 2 && delay <= base, "{delay:?} for {base:?}");
        base = (base * 2).min(BACKOFF_MAX);
    }
    backoff.reset();
    assert!(backoff.next_delay() <= BACKOFF_MIN);
}

/// (1) Both directions, several groups, in order per (peer, group).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_both_ways_in_order() {
    tokio::time::timeout(TEST_BUDGET, async {
        let (addr_a, addr_b) = (reserve_addr(), reserve_addr());
        let (a, rx_a) = start(1, addr_a, &[(2, addr_b)], 65536).unwrap();
        let (b, rx_b) = start(2, addr_b, &[(1, addr_a)], 65536).unwrap();
        assert_eq!(a.local_addr(), addr_a);

        const GROUPS: u64 = 5;
        const PER_GROUP: u64 = 400;
        // Interleave groups, in several `send` calls of various sizes.
        let all_a: Vec<Envelope> = (1..=PER_GROUP)
            .flat_map(|i| (1..=GROUPS).map(move |g| envelope(g, 1, 2, i)))
            .collect();
        let all_b: Vec<Envelope> = (1..=PER_GROUP)
            .flat_map(|i| (1..=GROUPS).map(move |g| envelope(g, 2, 1, i)))
            .collect();
        let (mut chunks_a, mut chunks_b) = (all_a.chunks(37), all_b.chunks(91));
        loop {
            let (next_a, next_b) = (chunks_a.next(), chunks_b.next());
            if next_a.is_none() && next_b.is_none() {
                break;
            }
            if let Some(chunk) = next_a {
                a.send(chunk.to_vec());
            }
            if let Some(chunk) = next_b {
                b.send(chunk.to_vec());
            }
        }

        let total = (GROUPS * PER_GROUP) as usize;
        let at_b = collect(&rx_b, total, Duration::from_secs(10)).await;
        let at_a = collect(&rx_a, total, Duration::from_secs(10)).await;
        assert_eq!(at_b.len(), total);
        assert_eq!(at_a.len(), total);
        assert_in_order(&at_b, 1, GROUPS, PER_GROUP);
        assert_in_order(&at_a, 2, GROUPS, PER_GROUP);

        // A writer counts a batch as sent once its write returns, which can be
        // after the peer has already read it: wait for the counters to settle.
        let settled = |s: &TransportStats| (s.sent, s.received) == (total as u64, total as u64);
        eventually(Duration::from_secs(5), "sent counters", || {
            settled(&a.stats()) && settled(&b.stats())
        })
        .await;
        let (sa, sb) = (a.stats(), b.stats());
        assert_eq!((sa.sent, sa.received), (total as u64, total as u64));
        assert_eq!((sb.sent, sb.received), (total as u64, total as u64));
        assert_eq!(sa.connected_peers, vec![2]);
        assert_eq!(sb.connected_peers, vec![1]);
        assert_eq!(sa.dropped_full + sa.dropped_io + sa.dropped_inbox_full, 0);
        a.shutdown();
        b.shutdown();
        eventually(Duration::from_secs(5), "disconnect", || {
            a.stats().connected_peers.is_empty() && b.stats().connected_peers.is_empty()
        })
        .await;
        // After shutdown, sends are dropped and counted.
        a.send(vec![envelope(1, 1, 2, 1)]);
        assert_eq!(a.stats().dropped_closed, 1);
    })
    .await
    .expect("test timed out");
}

/// (2) A peer that comes up later gets messages: the writer retries with backoff.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_peer_receives_after_backoff() {
    tokio::time::timeout(TEST_BUDGET, async {
        let addr_b = reserve_addr();
        let (a, _rx_a) = start(1, reserve_addr(), &[(2, addr_b)], 16).unwrap();
        a.send(vec![envelope(7, 1, 2, 1)]);
        eventually(Duration::from_secs(5), "refused connections", || {
            a.stats().connect_failures >= 2
        })
        .await;
        assert!(a.stats().connected_peers.is_empty());

        let (_b, rx_b) = start(2, addr_b, &[(1, a.local_addr())], 65536).unwrap();
        let got =
            send_until_received(&a, &rx_b, |i| envelope(7, 1, 2, i), Duration::from_secs(10)).await;
        assert_eq!((got.group, got.message.from), (7, 1));
        assert_eq!(a.stats().connected_peers, vec![2]);
    })
    .await
    .expect("test timed out");
}

/// (3) A restarted peer (new transport on the same port) gets messages again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_peer_receives_again() {
    tokio::time::timeout(TEST_BUDGET, async {
        let (addr_a, addr_b) = (reserve_addr(), reserve_addr());
        let (a, _rx_a) = start(1, addr_a, &[(2, addr_b)], 65536).unwrap();
        let (b, rx_b) = start(2, addr_b, &[(1, addr_a)], 65536).unwrap();
        send_until_received(&a, &rx_b, |i| envelope(1, 1, 2, i), Duration::from_secs(5)).await;

        b.shutdown();
        eventually(Duration::from_secs(5), "a to notice the close", || {
            a.stats().connected_peers.is_empty()
        })
        .await;

        let (_b2, rx_b2) = start_retrying(2, addr_b, &[(1, addr_a)]).await;
        let got = send_until_received(
            &a,
            &rx_b2,
            |i| envelope(2, 1, 2, i),
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(got.group, 2);
        assert!(a.stats().reconnects >= 1, "{:?}", a.stats());
    })
    .await
    .expect("test timed out");
}

/// A peer's connection ending becomes a local notice at once (a killed node's sockets
/// close), and a peer cannot forge such notices over the wire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_peer_connection_is_noticed() {
    tokio::time::timeout(TEST_BUDGET, async {
        let (addr_a, addr_b) = (reserve_addr(), reserve_addr());
        let (_a, rx_a) = start(1, addr_a, &[(2, addr_b)], 65536).unwrap();
        let (b, _rx_b) = start(2, addr_b, &[(1, addr_a)], 65536).unwrap();
        let mut forged = peer_lost_notice(3);
        forged.message.to = 1;
        b.send(vec![forged]);
        let first =
            send_until_received(&b, &rx_a, |i| envelope(1, 2, 1, i), Duration::from_secs(5)).await;
        assert_eq!(lost_peer(&first), None, "the forged notice got through");

        b.shutdown();
        let mut notices = Vec::new();
        eventually(Duration::from_secs(5), "the peer-lost notice", || {
            notices.extend(rx_a.try_iter().filter_map(|e| lost_peer(&e)));
            !notices.is_empty()
        })
        .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        notices.extend(rx_a.try_iter().filter_map(|e| lost_peer(&e)));
        assert_eq!(notices, vec![2]);
    })
    .await
    .expect("test timed out");
}

/// Reads until the transport closes the socket (EOF or reset); panics if it stays open.
async fn assert_closed_by_peer(mut stream: TcpStream) {
    let mut buf = [0u8; 256];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "connection left open");
}

/// A valid handshake from node 1 to node 2, as a second connection of node 1 would open.
fn handshake_to_b() -> [u8; HANDSHAKE_LEN] {
    Handshake::new(&auth(), 1, 2, now_ms()).encode()
}

/// (4) Garbage closes that connection only; proper peers keep being served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_closes_the_connection_only() {
    tokio::time::timeout(TEST_BUDGET, async {
        let (addr_a, addr_b) = (reserve_addr(), reserve_addr());
        let (a, _rx_a) = start(1, addr_a, &[(2, addr_b)], 65536).unwrap();
        let (b, rx_b) = start(2, addr_b, &[(1, addr_a)], 65536).unwrap();
        send_until_received(&a, &rx_b, |i| envelope(1, 1, 2, i), Duration::from_secs(5)).await;

        // Not our protocol at all.
        let mut junk = TcpStream::connect(addr_b).await.unwrap();
        junk.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        assert_closed_by_peer(junk).await;

        // Good handshake, then an oversize length.
        let mut oversize = TcpStream::connect(addr_b).await.unwrap();
        oversize.write_all(&handshake_to_b()).await.unwrap();
        oversize.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        assert_closed_by_peer(oversize).await;

        // Good handshake, then a frame whose payload does not decode.
        let mut undecodable = TcpStream::connect(addr_b).await.unwrap();
        undecodable.write_all(&handshake_to_b()).await.unwrap();
        undecodable.write_all(&8u32.to_be_bytes()).await.unwrap();
        undecodable
            .write_all(&[0, 0, 0, 3, 1, 2, 3, 4])
            .await
            .unwrap();
        assert_closed_by_peer(undecodable).await;

        // Wrong version.
        let mut version = TcpStream::connect(addr_b).await.unwrap();
        let mut handshake = handshake_to_b();
        handshake[5] = 99;
        version.write_all(&handshake).await.unwrap();
        assert_closed_by_peer(version).await;

        eventually(Duration::from_secs(5), "rejections counted", || {
            b.stats().rejected_connections == 4
        })
        .await;
        assert_eq!(b.stats().inbound_connections, 1);

        // The proper peer is still served, on its original connection.
        a.send((1..=50).map(|i| envelope(3, 1, 2, i)).collect());
        let got: Vec<Envelope> = collect(&rx_b, 1000, Duration::from_millis(500))
            .await
            .into_iter()
            .filter(|e| e.group == 3)
            .collect();
        let indices: Vec<u64> = got.iter().map(|e| e.message.index).collect();
        assert_eq!(indices, (1..=50).collect::<Vec<_>>());
        assert_eq!(a.stats().reconnects, 0);
    })
    .await
    .expect("test timed out");
}

/// (5) With the peer down, a full queue drops and counts without blocking.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_drops_without_blocking() {
    tokio::time::timeout(TEST_BUDGET, async {
        let down = reserve_addr();
        let (a, _rx_a) = start(1, reserve_addr(), &[(2, down)], 16).unwrap();
        const N: usize = 3 * PEER_QUEUE_CAPACITY;

        // From a plain thread, like the Raft loop.
        let sender = a.clone();
        let elapsed = std::thread::spawn(move || {
            let started = Instant::now();
            sender.send((1..=N as u64).map(|i| envelope(1, 1, 2, i)).collect());
            sender.send((1..=5).map(|i| envelope(1, 1, 9, i)).collect());
            sender.send(vec![envelope(1, 1, 1, 1)]);
            started.elapsed()
        })
        .join()
        .unwrap();
        assert!(
            elapsed < Duration::from_secs(2),
            "send blocked for {elapsed:?}"
        );

        let stats = a.stats();
        // The queue holds its capacity, the writer at most one more (waiting to connect).
        let kept = (N as u64) - stats.dropped_full;
        assert!(
            (PEER_QUEUE_CAPACITY as u64..=PEER_QUEUE_CAPACITY as u64 + 1).contains(&kept),
            "{stats:?}"
        );
        assert_eq!(stats.dropped_unknown, 6);
        assert_eq!(stats.sent, 0);
        assert!(stats.connected_peers.is_empty());
    })
    .await
    .expect("test timed out");
}

/// A full inbox drops and counts instead of blocking the reader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_inbox_drops_and_counts() {
    tokio::time::timeout(TEST_BUDGET, async {
        let (addr_a, addr_b) = (reserve_addr(), reserve_addr());
        let (a, _rx_a) = start(1, addr_a, &[(2, addr_b)], 16).unwrap();
        let (b, _rx_b) = start(2, addr_b, &[(1, addr_a)], 10).unwrap();
        a.send((1..=100).map(|i| envelope(1, 1, 2, i)).collect());
        eventually(Duration::from_secs(5), "all accounted for", || {
            let s = b.stats();
            s.received + s.dropped_inbox_full == 100
        })
        .await;
        assert_eq!(b.stats().received, 10);
    })
    .await
    .expect("test timed out");
}

/// A forged heartbeat for `group` at a term no real node has reached.
fn forged(group: u64, from: u64, to: u64) -> Envelope {
    let mut message = Message::default();
    message.set_msg_type(MessageType::MsgHeartbeat);
    message.from = from;
    message.to = to;
    message.term = 1_000_000;
    Envelope { group, message }
}

/// Connects to `addr`, writes `handshake` then a frame of forged messages.
async fn stray(addr: SocketAddr, handshake: &[u8], envelopes: &[Envelope]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(handshake).await.unwrap();
    let _ = stream.write_all(&wire::encode_frame(envelopes)).await;
    stream
}

/// Strangers speaking the protocol without this cluster's proof are closed and counted before
/// any of their messages is read; a recorded handshake cannot be replayed; the same bytes with
/// a valid proof are delivered (so the refusals are the proof's doing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_are_refused_before_any_message_is_read() {
    tokio::time::timeout(TEST_BUDGET, async {
        let addr_b = reserve_addr();
        let (b, rx_b) = start(2, addr_b, &[(1, reserve_addr())], 65536).unwrap();
        let now = now_ms();
        let wrong_secret =
            ClusterAuth::new("test-cluster", Secret::new(&"x".repeat(32)).unwrap()).unwrap();
        let other_cluster =
            ClusterAuth::new("other-cluster", Secret::new(&"s".repeat(32)).unwrap()).unwrap();
        let refused = [
            Handshake::new(&wrong_secret, 1, 2, now).encode(),
            Handshake::new(&other_cluster, 1, 2, now).encode(),
            // A member's proof, but for another node, from a stranger, or from long ago.
            Handshake::new(&auth(), 1, 3, now).encode(),
            Handshake::new(&auth(), 9, 2, now).encode(),
            Handshake::new(&auth(), 1, 2, now - 3_600_000).encode(),
        ];
        let messages = [forged(5, 1, 2)];
        for handshake in &refused {
            assert_closed_by_peer(stray(addr_b, handshake, &messages).await).await;
        }
        eventually(Duration::from_secs(5), "refusals counted", || {
            b.stats().refused_unauthenticated == refused.len() as u64
        })
        .await;

        // The same bytes with a valid proof get through...
        let valid = Handshake::new(&auth(), 1, 2, now_ms()).encode();
        let accepted = stray(addr_b, &valid, &messages).await;
        let got = collect(&rx_b, 1, Duration::from_secs(5)).await;
        assert_eq!(got, messages.to_vec(), "the control message did not arrive");
        drop(accepted);
        // ...once: the same handshake again is a replay.
        assert_closed_by_peer(stray(addr_b, &valid, &messages).await).await;
        eventually(Duration::from_secs(5), "the replay counted", || {
            b.stats().refused_unauthenticated == refused.len() as u64 + 1
        })
        .await;

        let stats = b.stats();
        assert_eq!(stats.received, 1, "{stats:?}");
        assert_eq!(stats.rejected_connections, 0, "{stats:?}");
        let late = collect(&rx_b, 10, Duration::from_millis(200)).await;
        assert!(late.iter().all(|e| e.group == LOCAL_GROUP), "{late:?}");
    })
    .await
    .expect("test timed out");
}

/// An authenticated peer speaks only for itself, and only to this node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_cannot_speak_for_another_node() {
    tokio::time::timeout(TEST_BUDGET, async {
        let addr_b = reserve_addr();
        let (b, rx_b) = start(
            2,
            addr_b,
            &[(1, reserve_addr()), (3, reserve_addr())],
            65536,
        )
        .unwrap();
        let messages = [forged(5, 3, 2), forged(5, 1, 3), forged(5, 1, 2)];
        let _conn = stray(addr_b, &handshake_to_b(), &messages).await;
        let got = collect(&rx_b, 3, Duration::from_secs(2)).await;
        assert_eq!(got, vec![messages[2].clone()]);
        assert_eq!(b.stats().dropped_forged, 2);
    })
    .await
    .expect("test timed out");
}

/// Connections over the limit are accepted and closed at once (not left waiting for a handshake
/// timeout), counted; once the flood is gone the real peer connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_over_the_limit_is_refused() {
    tokio::time::timeout(TEST_BUDGET, async {
        let (addr_a, addr_b) = (reserve_addr(), reserve_addr());
        const LIMIT: usize = 4;
        const FLOOD: usize = 10;
        let (b, rx_b) = start_with(
            TransportSettings {
                max_connections: LIMIT,
                ..settings(2, addr_b, &[(1, addr_a)])
            },
            65536,
        )
        .unwrap();
        let mut flood = Vec::new();
        for _ in 0..FLOOD {
            flood.push(TcpStream::connect(addr_b).await.unwrap());
        }
        eventually(Duration::from_secs(5), "the excess refused", || {
            b.stats().refused_over_limit == (FLOOD - LIMIT) as u64
        })
        .await;
        // The refused ones are closed now, well before any handshake timeout.
        let started = Instant::now();
        let mut closed = 0;
        for stream in &mut flood {
            let mut byte = [0u8; 1];
            if let Ok(Ok(0) | Err(_)) =
                tokio::time::timeout(Duration::from_millis(500), stream.read(&mut byte)).await
            {
                closed += 1;
            }
        }
        assert_eq!(closed, FLOOD - LIMIT);
        assert!(started.elapsed() < HANDSHAKE_TIMEOUT);
        assert_eq!(b.stats().inbound_connections, LIMIT as u64);

        drop(flood);
        let (a, _rx_a) = start(1, addr_a, &[(2, addr_b)], 16).unwrap();
        send_until_received(&a, &rx_b, |i| envelope(1, 1, 2, i), Duration::from_secs(10)).await;
    })
    .await
    .expect("test timed out");
}

/// A frame header claiming the largest frame, followed by a trickle, holds buffers for the
/// bytes that came, not for the bytes claimed; the frame still arrives whole at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_frame_header_reserves_nothing_before_its_bytes() {
    tokio::time::timeout(TEST_BUDGET, async {
        let addr_b = reserve_addr();
        let (b, rx_b) = start(2, addr_b, &[(1, reserve_addr())], 65536).unwrap();
        let mut big = forged(5, 1, 2);
        big.message.context = vec![7u8; MAX_FRAME_LEN - 1024].into();
        let frame = wire::encode_frame(std::slice::from_ref(&big));
        assert!(frame.len() > MAX_FRAME_LEN - 1024);

        let mut conn = TcpStream::connect(addr_b).await.unwrap();
        conn.write_all(&handshake_to_b()).await.unwrap();
        // The header and 4 KiB, in a trickle.
        let (head, rest) = frame.split_at(4 + 4096);
        for chunk in head.chunks(512) {
            conn.write_all(chunk).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        eventually(
            Duration::from_secs(5),
            "the reader to buffer the trickle",
            || b.stats().inbound_buffer_bytes > 0,
        )
        .await;
        let held = b.stats().inbound_buffer_bytes;
        assert!(
            held <= 4 * 64 * 1024,
            "{held} bytes held for 4 KiB received (the frame claims {})",
            frame.len() - 4
        );
        // The rest arrives: delivered whole.
        conn.write_all(rest).await.unwrap();
        let got = collect(&rx_b, 1, Duration::from_secs(10)).await;
        assert_eq!(got, vec![big]);
        drop(conn);
        eventually(Duration::from_secs(5), "the buffer released", || {
            b.stats().inbound_buffer_bytes == 0
        })
        .await;
    })
    .await
    .expect("test timed out");
}

/// A peer queue is bounded in bytes: with the peer down, large messages stop being queued once
/// their bytes reach the budget, long before the count bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_queue_is_bounded_in_bytes() {
    tokio::time::timeout(TEST_BUDGET, async {
        let (a, _rx_a) = start(1, reserve_addr(), &[(2, reserve_addr())], 16).unwrap();
        const MIB: usize = 1 << 20;
        let big = |i| {
            let mut e = envelope(1, 1, 2, i);
            e.message.context = vec![1u8; MIB].into();
            e
        };
        a.send((1..=100).map(big).collect());
        let stats = a.stats();
        let kept = 100 - stats.dropped_full;
        let budget = MIN_PEER_QUEUE_BYTES as u64;
        // Each costs a little over 1 MiB: at most budget / 1 MiB of them fit (one more may
        // wait in the writer, still charged).
        assert!(kept <= budget / MIB as u64, "{stats:?}");
        assert!(kept >= budget / MIB as u64 - 2, "{stats:?}");
        assert!(stats.queued_bytes <= budget, "{stats:?}");
        assert!(stats.queued_bytes >= kept * MIB as u64, "{stats:?}");
        // An envelope larger than the whole budget can never be queued.
        let mut huge = envelope(1, 1, 2, 1);
        huge.message.context = vec![1u8; MIN_PEER_QUEUE_BYTES + 1].into();
        a.send(vec![huge]);
        assert_eq!(a.stats().dropped_oversize, 1);
    })
    .await
    .expect("test timed out");
}
