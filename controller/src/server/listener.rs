//! The accept loop and each connection's task: TLS, then HTTP/1.1, under a watchdog that closes
//! the connection when its current step (handshake, waiting, headers, body) takes longer than
//! the [`Limits`] allow or when it is evicted to make room.
//!
//! What a client controls here: when and how fast it sends bytes, and how many connections it
//! opens. None of it can hold a connection past its limits, and running out of file descriptors
//! makes the loop wait and shed an idle connection rather than spin.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use http::Request;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::Service;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::connections::{Conn, Phase, Registry};
use super::limits::Limits;

/// How long the accept loop pauses when the process is out of file descriptors or memory.
/// (when no connection can be evicted to free one).
const RESOURCE_BACKOFF: Duration = Duration::from_millis(20);
/// How long it pauses after evicting a connection to free a descriptor.
const EVICTION_PAUSE: Duration = Duration::from_millis(1);

/// Accepts TLS connections and serves HTTP/1.1 on each until told to stop.
pub(super) async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    router: Router,
    limits: Limits,
    mut stopped: watch::Receiver<bool>,
) {
    let limits = Arc::new(limits);
    let registry = Registry::new(&limits);
    let mut connections = JoinSet::new();
    let mut failing = false;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    failing = false;
                    // Over the per-address cap, or full of busy connections: closed at once.
                    let Some(admission) = registry.admit(peer.ip()) else { continue };
                    let _ = tcp.set_nodelay(true);
                    let acceptor = acceptor.clone();
                    let router = router.clone();
                    let limits = Arc::clone(&limits);
                    connections.spawn(async move {
                        run(&admission.conn, tcp, acceptor, router, &limits).await;
                        drop(admission);
                    });
                }
                Err(error) if is_per_connection(&error) => {}
                Err(error) => {
                    if !failing {
                        eprintln!("lichen-controller: accepting connections: {error}");
                        failing = true;
                    }
                    // Out of descriptors (or memory): free one held by a connection that waits
                    // for nothing, and give closing connections time to release theirs.
                    // Having evicted one, wait just long enough for it to close.
                    let pause = if registry.evict_one() { EVICTION_PAUSE } else { RESOURCE_BACKOFF };
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = stopped.changed() => break,
                    }
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = stopped.changed() => break,
        }
    }
    connections.shutdown().await;
}

/// Whether an accept error concerns only the connection being accepted (the next may succeed).
fn is_per_connection(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::ECONNABORTED | libc::ECONNRESET | libc::EPROTO | libc::EPERM | libc::EINTR)
    )
}

/// One connection, from its TLS handshake to its close.
async fn run(
    conn: &Arc<Conn>,
    tcp: TcpStream,
    acceptor: TlsAcceptor,
    router: Router,
    limits: &Limits,
) {
    let work = async {
        let Ok(tls) = acceptor.accept(tcp).await else {
            return;
        };
        conn.enter(Phase::Idle);
        let service = Metered {
            conn: Arc::clone(conn),
            inner: TowerToHyperService::new(router),
        };
        let io = TokioIo::new(Tracked {
            inner: tls,
            conn: Arc::clone(conn),
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(io, service)
            .await;
    };
    tokio::pin!(work);
    loop {
        if conn.evicted() {
            return;
        }
        let deadline = conn.deadline(limits);
        tokio::select! {
            () = &mut work => return,
            () = conn.wake.notified() => {}
            () = sleep_until(deadline) => {
                if conn.deadline(limits).is_some_and(|at| at <= tokio::time::Instant::now().into_std()) {
                    return;
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// The connection's stream, noting the first bytes of each request.
struct Tracked<T> {
    inner: T,
    conn: Arc<Conn>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.conn.on_read();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
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

/// The router, telling the connection when a request starts and ends and metering its body.
struct Metered {
    conn: Arc<Conn>,
    inner: TowerToHyperService<Router>,
}

impl Service<Request<Incoming>> for Metered {
    type Response = <TowerToHyperService<Router> as Service<Request<MeteredBody>>>::Response;
    type Error = <TowerToHyperService<Router> as Service<Request<MeteredBody>>>::Error;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let (parts, body) = request.into_parts();
        self.conn.begin_request(!body.is_end_stream());
        let body = MeteredBody {
            inner: body,
            conn: Arc::clone(&self.conn),
        };
        let response = self.inner.call(Request::from_parts(parts, body));
        let conn = Arc::clone(&self.conn);
        Box::pin(async move {
            let response = response.await;
            conn.end_request();
            response
        })
    }
}

/// A request body that reports its progress to the connection's watchdog.
struct MeteredBody {
    inner: Incoming,
    conn: Arc<Conn>,
}

impl Body for MeteredBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.conn.on_body(data.len());
                }
                if self.inner.is_end_stream() {
                    self.conn.body_done();
                }
            }
            Poll::Ready(_) => self.conn.body_done(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
