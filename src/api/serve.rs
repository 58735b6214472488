//! Serving HTTP/1.1 on a listener within bounds: the accept loop and one task per connection.
//!
//! Owns the connection bound (past it a connection gets one `503` with a JSON error and is
//! closed, counted in `/metrics`), the idle and header timeouts (a connection with no
//! request in progress is closed after `idle_timeout`; a request head that started must be
//! complete within `header_timeout`; a request being answered, a watch stream or a blocking
//! query included, is never idle), and the graceful end of connections at shutdown. Must not
//! know any route: it hands every request to the router it is given.

use crate::agent::shared::AgentShared;
use crate::api::limits::{ApiLimits, ApiLoad};
use crate::api::{Peer, SHUTDOWN_GRACE};
use axum::body::Body;
use axum::extract::connect_info::ConnectInfo;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;

/// Over-bound connections being answered their 503 at once; past it they are just closed.
const MAX_REJECTING: usize = 64;
/// Time given to an over-bound connection to take its 503.
const REJECT_WAIT: Duration = Duration::from_secs(1);

/// A listener the API serves: TCP or a Unix socket.
pub(crate) trait Accept: Send + Sync + 'static {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn accept_conn(&self) -> impl Future<Output = io::Result<(Self::Io, Peer)>> + Send;
}

impl Accept for TcpListener {
    type Io = TcpStream;
    async fn accept_conn(&self) -> io::Result<(TcpStream, Peer)> {
        let (s, addr) = self.accept().await?;
        let _ = s.set_nodelay(true);
        Ok((s, Peer(format!("tcp {addr}"))))
    }
}

impl Accept for UnixListener {
    type Io = UnixStream;
    async fn accept_conn(&self) -> io::Result<(UnixStream, Peer)> {
        let (s, _) = self.accept().await?;
        let peer = match s.peer_cred() {
            Ok(c) => match c.pid() {
                Some(pid) => Peer(format!("uid {} pid {pid}", c.uid())),
                None => Peer(format!("uid {}", c.uid())),
            },
            Err(_) => Peer("unix socket peer".into()),
        };
        Ok((s, peer))
    }
}

/// Serves `app` on `listener` until `stop` turns true, then lets open connections finish
/// (up to `SHUTDOWN_GRACE`).
pub(crate) async fn serve<L: Accept>(
    listener: L,
    app: axum::Router,
    limits: ApiLimits,
    shared: Arc<AgentShared>,
    stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let rejecting = Arc::new(Semaphore::new(MAX_REJECTING));
    let mut stop_rx = stop.clone();
    loop {
        let accepted = tokio::select! {
            r = listener.accept_conn() => r,
            _ = crate::api::routes::shutdown_signal(stop_rx.clone()) => break,
        };
        let (io, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors, or a connection reset before accept: wait a
                // little rather than spin.
                tracing::debug!(error = %e, "API: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        match slots.clone().try_acquire_owned() {
            Ok(permit) => {
                let app = app.clone();
                let shared = shared.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    let load = &shared.api_load;
                    load.connections.fetch_add(1, Ordering::Relaxed);
                    connection(io, peer, app, limits, load, stop).await;
                    load.connections.fetch_sub(1, Ordering::Relaxed);
                    drop(permit);
                });
            }
            Err(_) => {
                shared
                    .api_load
                    .rejected_connections
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(peer = %peer.0, limit = limits.max_connections, "API: connection bound reached, answering 503");
                if let Ok(p) = rejecting.clone().try_acquire_owned() {
                    let max = limits.max_connections;
                    tokio::spawn(async move {
                        reject(io, max).await;
                        drop(p);
                    });
                }
            }
        }
    }
    let _ = stop_rx.borrow_and_update();
    // Wait (bounded by the caller's grace) until every connection has ended.
    let _ = slots.acquire_many(limits.max_connections as u32).await;
}

/// Answers an over-bound connection with one 503 and closes it.
async fn reject<S: AsyncRead + AsyncWrite + Unpin>(mut io: S, max: usize) {
    let body = serde_json::json!({
        "error": format!(
            "the agent's API is at its bound of {max} open connections: retry later, \
             close idle connections, or raise api_max_connections"
        )
    })
    .to_string();
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\nretry-after: 1\r\n\r\n",
        body.len()
    );
    let _ = tokio::time::timeout(REJECT_WAIT, async {
        io.write_all(head.as_bytes()).await?;
        io.write_all(body.as_bytes()).await?;
        io.shutdown().await?;
        // Read what the client sent (a little), so that closing does not reset the
        // connection before it has read the answer.
        let mut buf = [0u8; 4096];
        for _ in 0..4 {
            if io.read(&mut buf).await? == 0 {
                break;
            }
        }
        Ok::<_, io::Error>(())
    })
    .await;
}

/// What a connection is doing, for its timeouts.
struct Activity {
    start: Instant,
    /// Requests being answered (their response bodies not yet finished).
    in_flight: AtomicU32,
    /// Milliseconds since `start` when the connection last became idle.
    idle_since: AtomicU64,
    /// Milliseconds since `start` of the first byte read while idle (`u64::MAX`: none).
    head_started: AtomicU64,
    changed: tokio::sync::Notify,
}

impl Activity {
    fn new() -> Self {
        Activity {
            start: Instant::now(),
            in_flight: AtomicU32::new(0),
            idle_since: AtomicU64::new(0),
            head_started: AtomicU64::new(u64::MAX),
            changed: tokio::sync::Notify::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_waiters();
        InFlight(self.clone())
    }

    fn read_some(&self) {
        if self.in_flight.load(Ordering::SeqCst) == 0
            && self.head_started.load(Ordering::SeqCst) == u64::MAX
        {
            self.head_started.store(self.now_ms(), Ordering::SeqCst);
            self.changed.notify_waiters();
        }
    }

    /// When the connection times out as things stand (`None`: a request is in progress).
    fn deadline(&self, limits: &ApiLimits) -> Option<Instant> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let ms = |v: u64| Duration::from_millis(v);
        let head = self.head_started.load(Ordering::SeqCst);
        let idle = self.start + ms(self.idle_since.load(Ordering::SeqCst)) + limits.idle_timeout;
        Some(if head == u64::MAX {
            idle
        } else {
            (self.start + ms(head) + limits.header_timeout).min(idle)
        })
    }

    /// Resolves when the connection has been idle (or slow with a head) too long.
    async fn expired(&self, limits: &ApiLimits) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match self.deadline(limits) {
                None => changed.await,
                Some(d) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(d.into()) => {
                            if self.deadline(limits).is_some_and(|d2| d2 <= Instant::now()) {
                                return;
                            }
                        }
                        _ = changed => {}
                    }
                }
            }
        }
    }
}

/// A request in progress; dropped when its response body is finished or dropped.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        if a.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            a.idle_since.store(a.now_ms(), Ordering::SeqCst);
            a.head_started.store(u64::MAX, Ordering::SeqCst);
        }
        a.changed.notify_waiters();
    }
}

/// The connection's socket, noting when bytes arrive (for the header timeout).
struct Watched<S> {
    inner: S,
    act: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.act.read_some();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Serves one connection until it ends, times out, or the server stops.
async fn connection<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    io: S,
    peer: Peer,
    app: axum::Router,
    limits: ApiLimits,
    load: &ApiLoad,
    stop: watch::Receiver<bool>,
) {
    let act = Arc::new(Activity::new());
    let io = Watched {
        inner: io,
        act: act.clone(),
    };
    let svc_act = act.clone();
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer.clone()));
        let guard = svc_act.begin();
        let app = app.clone();
        async move {
            let resp = app.oneshot(req.map(Body::new)).await?;
            // The request stays in progress until its body is sent (or dropped): a watch
            // stream is never idle.
            Ok::<_, std::convert::Infallible>(resp.map(move |b| {
                Body::new(b.map_err(move |e| {
                    let _in_flight = &guard;
                    e
                }))
            }))
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .header_read_timeout(None)
        .serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "API: connection ended with an error");
            }
            return;
        }
        _ = act.expired(&limits) => {
            load.timed_out.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("API: closing an idle connection");
            return;
        }
        _ = crate::api::routes::shutdown_signal(stop) => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn).await;
}
