//! The DNS interface: an optional UDP and TCP listener (`--dns 127.0.0.1:8600`; loopback
//! unless `listen_remote`)
//! answering the zone `shoal.` from the served view, so that apps that only speak DNS get
//! fail-static discovery too.
//!
//! Owns the sockets, framing (UDP datagrams, TCP with a 2-byte length prefix), the bounds
//! (datagram and message sizes, concurrent TCP connections, idle time, queries per
//! connection), truncation for UDP, the rate limit of UDP answers to other hosts
//! (`ratelimit`: no reflection off an agent with `listen_remote`) and the counters. What a name means is in `answer`. It
//! reads the node under its lock (a copy, never across an await) and never changes it.

pub mod answer;
pub mod ratelimit;

use crate::agent::shared::AgentShared;
use crate::api::limits::Reach;
use answer::{encode_udp, DnsView, Zone};
use hickory_proto::op::{Message, ResponseCode};
use shoal_core::Node;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

/// Largest query datagram read (a query is a few dozen bytes; anything longer is dropped).
pub const MAX_QUERY: usize = 4096;
/// Concurrent TCP connections; more wait in the accept queue.
pub const MAX_TCP_CONNS: usize = 64;
/// A TCP connection idle this long is closed.
pub const TCP_IDLE: Duration = Duration::from_secs(10);
/// Queries answered on one TCP connection before it is closed.
pub const TCP_MAX_QUERIES: usize = 1000;

#[derive(Debug, Error)]
pub enum DnsError {
    #[error("the DNS address {0} is not a loopback address: the DNS interface listens on 127.0.0.0/8 or ::1 unless the operator sets listen_remote = true (--listen-remote)")]
    NotLoopback(SocketAddr),
    #[error("cannot bind the DNS address {addr} ({proto}): {source}")]
    Bind {
        addr: SocketAddr,
        proto: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// Counters of the DNS interface.
#[derive(Debug, Default)]
pub struct DnsStats {
    pub udp_queries: AtomicU64,
    pub tcp_queries: AtomicU64,
    /// UDP answers sent with the TC bit (too large: the client retries over TCP).
    pub truncated: AtomicU64,
    /// Queries that did not decode (answered FORMERR when the header was readable).
    pub malformed: AtomicU64,
    /// Datagrams dropped without an answer (shorter than a header, or over `MAX_QUERY`).
    pub dropped: AtomicU64,
    /// TCP connections closed at once because `MAX_TCP_CONNS` were open.
    pub tcp_refused: AtomicU64,
    /// UDP queries from another host past its rate (`ratelimit`): answered truncated or not.
    pub rate_limited: AtomicU64,
}

/// How answers are made: their TTL (seconds) and the zone.
#[derive(Debug)]
struct Answering {
    ttl: u32,
    zone: Zone,
}

/// What a DNS listener serves besides the view: the answers' TTL, who it is for, the zone.
#[derive(Clone, Debug, Default)]
pub struct DnsOptions {
    /// How long answers live (`dns_ttl`).
    pub ttl: Duration,
    /// Loopback only, or other hosts too (`listen_remote`).
    pub reach: Reach,
    /// The zone answered (`dns_domain`, default `shoal.`).
    pub zone: Zone,
}

/// A copy of what the default zone answers from, read under one lock.
pub fn view(node: &Node) -> DnsView {
    view_in(node, &Zone::default())
}

/// A copy of what `zone` answers from, read under one lock.
pub fn view_in(node: &Node, zone: &Zone) -> DnsView {
    DnsView {
        zone: zone.clone(),
        members: node
            .members()
            .into_iter()
            .map(|m| (m.name.to_ascii_lowercase(), m))
            .collect(),
        services: node.services(),
        index: node.index(),
        rtt_us: node
            .coordinates()
            .into_iter()
            .filter_map(|(name, _)| Some((name.to_string(), node.rtt_to(&name)?)))
            .collect(),
    }
}

/// The answer bytes for one query received over `udp` or TCP, or `None` to stay silent.
fn respond(
    shared: &AgentShared,
    stats: &DnsStats,
    bytes: &[u8],
    how: &Answering,
    udp: bool,
) -> Option<Vec<u8>> {
    let req = match Message::from_vec(bytes) {
        Ok(m) => m,
        Err(_) => {
            stats.malformed.fetch_add(1, Ordering::Relaxed);
            if bytes.len() < 12 {
                return None;
            }
            // Echo the id with FORMERR (and nothing else: never more than was sent).
            let id = u16::from_be_bytes([bytes[0], bytes[1]]);
            let m = Message::error_msg(id, hickory_proto::op::OpCode::Query, ResponseCode::FormErr);
            return m.to_vec().ok();
        }
    };
    let resp = view_in(&shared.lock(), &how.zone).answer(&req, how.ttl);
    if udp {
        let out = encode_udp(&req, &resp)?;
        if out.len() >= 3 && out[2] & 0x02 != 0 {
            stats.truncated.fetch_add(1, Ordering::Relaxed);
        }
        Some(out)
    } else {
        resp.to_vec().ok()
    }
}

/// A truncated answer to `bytes` (header and question, TC set), read without the view: what
/// a source past its rate gets, never larger than its query.
fn truncated_only(bytes: &[u8]) -> Option<Vec<u8>> {
    let req = Message::from_vec(bytes).ok()?;
    let mut m = req.truncate();
    m.metadata.message_type = hickory_proto::op::MessageType::Response;
    m.to_vec().ok().filter(|out| out.len() <= bytes.len())
}

/// The running DNS listener.
pub struct DnsHandle {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    addr: SocketAddr,
    stats: Arc<DnsStats>,
}

impl DnsHandle {
    /// The address bound, UDP and TCP (the real port when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stats(&self) -> Arc<DnsStats> {
        self.stats.clone()
    }

    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for t in std::mem::take(&mut self.tasks) {
            t.abort();
            let _ = t.await;
        }
    }
}

impl Drop for DnsHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Binds UDP and TCP on `addr` (same port; with port 0, the port UDP got) and serves the
/// zone `shoal.` with answers that live `ttl` (loopback only: see `spawn_with`).
pub async fn spawn(
    shared: Arc<AgentShared>,
    addr: SocketAddr,
    ttl: Duration,
) -> Result<DnsHandle, DnsError> {
    spawn_with(
        shared,
        addr,
        DnsOptions {
            ttl,
            ..Default::default()
        },
    )
    .await
}

/// As [`spawn`], with `opts`: a non-loopback address too when its `reach` is `Remote`
/// (`listen_remote`), and its zone.
pub async fn spawn_with(
    shared: Arc<AgentShared>,
    addr: SocketAddr,
    opts: DnsOptions,
) -> Result<DnsHandle, DnsError> {
    let DnsOptions { ttl, reach, zone } = opts;
    if !reach.allows(addr) {
        return Err(DnsError::NotLoopback(addr));
    }
    let bind_err = |proto, source| DnsError::Bind {
        addr,
        proto,
        source,
    };
    // With port 0, UDP picks a port and TCP takes the same one (retried if it is taken).
    let mut attempt = 0;
    let (udp, tcp, local) = loop {
        attempt += 1;
        let udp = UdpSocket::bind(addr)
            .await
            .map_err(|e| bind_err("udp", e))?;
        let local = udp.local_addr().map_err(|e| bind_err("udp", e))?;
        match TcpListener::bind(local).await {
            Ok(tcp) => break (udp, tcp, local),
            Err(e) if addr.port() == 0 && attempt < 8 => {
                tracing::debug!(error = %e, port = local.port(), "DNS: TCP port taken, retrying");
            }
            Err(e) => return Err(bind_err("tcp", e)),
        }
    };
    let ttl = u32::try_from(ttl.as_secs()).unwrap_or(u32::MAX >> 1);
    let stats = Arc::new(DnsStats::default());
    let (stop, _) = watch::channel(false);
    let zone_name = zone.fqdn().to_string();
    let how = Arc::new(Answering { ttl, zone });
    let udp_task = tokio::spawn(serve_udp(
        Arc::new(udp),
        shared.clone(),
        stats.clone(),
        how.clone(),
    ));
    let tcp_task = tokio::spawn(serve_tcp(tcp, shared, stats.clone(), how));
    tracing::info!(addr = %local, ttl, zone = %zone_name, "DNS listening (UDP and TCP)");
    reach.warn_if_remote("DNS", local);
    Ok(DnsHandle {
        stop,
        tasks: vec![udp_task, tcp_task],
        addr: local,
        stats,
    })
}

async fn serve_udp(
    sock: Arc<UdpSocket>,
    shared: Arc<AgentShared>,
    stats: Arc<DnsStats>,
    how: Arc<Answering>,
) {
    let mut buf = vec![0u8; MAX_QUERY + 1];
    let mut limit = ratelimit::RateLimit::default();
    loop {
        let (n, from) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                // ICMP errors surface here on some systems; never a reason to stop.
                tracing::debug!(error = %e, "DNS: UDP receive error");
                continue;
            }
        };
        if n > MAX_QUERY {
            stats.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        stats.udp_queries.fetch_add(1, Ordering::Relaxed);
        let answer = match limit.check(std::time::Instant::now(), from.ip()) {
            ratelimit::Verdict::Answer => respond(&shared, &stats, &buf[..n], &how, true),
            ratelimit::Verdict::Truncate => {
                stats.rate_limited.fetch_add(1, Ordering::Relaxed);
                truncated_only(&buf[..n])
            }
            ratelimit::Verdict::Drop => {
                stats.rate_limited.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        match answer {
            Some(out) => {
                if let Err(e) = sock.send_to(&out, from).await {
                    tracing::debug!(error = %e, "DNS: UDP send error");
                }
            }
            None => {
                stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

async fn serve_tcp(
    listener: TcpListener,
    shared: Arc<AgentShared>,
    stats: Arc<DnsStats>,
    how: Arc<Answering>,
) {
    let slots = Arc::new(Semaphore::new(MAX_TCP_CONNS));
    loop {
        // Accept even past the bound, then close at once: a full server must not leave
        // connections waiting in the kernel's backlog (nor run out of descriptors).
        let (stream, _) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(error = %e, "DNS: TCP accept error");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            stats.tcp_refused.fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        };
        let shared = shared.clone();
        let stats = stats.clone();
        let how = how.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tcp_conn(stream, &shared, &stats, &how).await;
        });
    }
}

async fn tcp_conn(
    mut s: TcpStream,
    shared: &AgentShared,
    stats: &DnsStats,
    how: &Answering,
) -> std::io::Result<()> {
    for _ in 0..TCP_MAX_QUERIES {
        let mut len = [0u8; 2];
        match tokio::time::timeout(TCP_IDLE, s.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            _ => return Ok(()),
        }
        let len = usize::from(u16::from_be_bytes(len));
        if len > MAX_QUERY {
            stats.dropped.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let mut msg = vec![0u8; len];
        if tokio::time::timeout(TCP_IDLE, s.read_exact(&mut msg))
            .await
            .is_err()
        {
            return Ok(());
        }
        stats.tcp_queries.fetch_add(1, Ordering::Relaxed);
        let Some(out) = respond(shared, stats, &msg, how, false) else {
            return Ok(());
        };
        let Ok(n) = u16::try_from(out.len()) else {
            return Ok(());
        };
        s.write_all(&n.to_be_bytes()).await?;
        s.write_all(&out).await?;
    }
    Ok(())
}
