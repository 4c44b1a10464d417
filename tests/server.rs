//! The HTTP server under `strata serve` (`strata::api::serve`), over real
//! TCP on loopback: the header-read bound, the idle keep-alive bound, the
//! connection bound and graceful shutdown. Each test serves a small router
//! of its own, since these are properties of the server, not of the
//! routes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use strata::config::ApiConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

/// Far above every bound the tests configure: a test that waits this long
/// for something has found a bug.
const PATIENCE: Duration = Duration::from_secs(10);

struct Server {
    address: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<strata::Result<()>>,
}

async fn start(config: ApiConfig, router: Router) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        strata::api::serve(listener, router, &config, async {
            let _ = stopped.await;
        })
        .await
    });
    Server {
        address,
        stop: Some(stop),
        task,
    }
}

impl Server {
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("serve returns after shutdown")
            .expect("serve task")
            .expect("serve");
    }
}

fn hello() -> Router {
    Router::new().route("/hello", get(|| async { "hello" }))
}

fn request(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").into_bytes()
}

/// Reads one response with a `content-length` body; the connection stays
/// open.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut buf))
            .await
            .expect("an answer in time")
            .expect("read");
        assert!(
            n > 0,
            "closed before answering: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&seen).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .expect("content-length");
            if body.len() >= length {
                return text;
            }
        }
    }
}

/// Waits until the peer closes the connection (EOF or reset); panics if it
/// sends anything or is still open after [`PATIENCE`].
async fn closed_by_server(stream: &mut TcpStream) {
    let mut buf = [0u8; 256];
    match tokio::time::timeout(PATIENCE, stream.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => {}
        Ok(Ok(n)) => panic!("unexpected bytes: {:?}", String::from_utf8_lossy(&buf[..n])),
        Err(_) => panic!("the connection is still open after {PATIENCE:?}"),
    }
}

/// A client that sends one header line every 50 ms and never ends its
/// headers is cut off once `api.header_read_timeout` has passed since it
/// connected, however busy it keeps the connection.
#[tokio::test]
async fn headers_sent_slowly_are_cut_off_at_the_header_read_timeout() {
    let bound = Duration::from_millis(400);
    let server = start(
        ApiConfig {
            header_read_timeout: bound,
            ..Default::default()
        },
        hello(),
    )
    .await;
    let mut stream = TcpStream::connect(server.address).await.expect("connect");
    let started = Instant::now();
    stream
        .write_all(b"GET /hello HTTP/1.1\r\nHost: test\r\n")
        .await
        .expect("write");
    let mut pace = tokio::time::interval(Duration::from_millis(50));
    let mut buf = [0u8; 256];
    let mut lines = 0;
    let open_for = loop {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => break started.elapsed(),
                Ok(n) => panic!("answered incomplete headers: {:?}", String::from_utf8_lossy(&buf[..n])),
            },
            _ = pace.tick() => {
                lines += 1;
                let line = format!("X-Slow-{lines}: still coming\r\n");
                if stream.write_all(line.as_bytes()).await.is_err() {
                    break started.elapsed();
                }
                assert!(started.elapsed() < PATIENCE, "still open after {lines} header lines");
            }
        }
    };
    assert!(
        open_for >= bound,
        "closed after {open_for:?}, before the bound"
    );
    assert!(lines >= 4, "the client kept sending: {lines} lines");
    server.stop().await;
}

/// After a complete exchange, a kept-alive connection that sends nothing
/// more is closed after the header-read timeout too.
#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed() {
    let server = start(
        ApiConfig {
            header_read_timeout: Duration::from_millis(300),
            ..Default::default()
        },
        hello(),
    )
    .await;
    let mut stream = TcpStream::connect(server.address).await.expect("connect");
    stream.write_all(&request("/hello")).await.expect("write");
    let answer = read_response(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("hello"), "{answer}");
    // Kept alive: a second request on the same connection is answered.
    stream.write_all(&request("/hello")).await.expect("write");
    assert!(read_response(&mut stream).await.starts_with("HTTP/1.1 200"));
    closed_by_server(&mut stream).await;
    server.stop().await;
}

/// With `api.max_connections = 2`, a third connection is not served while
/// two are open, and is served as soon as one closes.
#[tokio::test]
async fn connections_beyond_the_bound_wait_for_a_free_slot() {
    let server = start(
        ApiConfig {
            max_connections: 2,
            ..Default::default()
        },
        hello(),
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(server.address).await.expect("connect");
        stream.write_all(&request("/hello")).await.expect("write");
        // Answered, so accepted and holding a slot (kept alive).
        assert!(read_response(&mut stream).await.starts_with("HTTP/1.1 200"));
        held.push(stream);
    }
    let mut third = TcpStream::connect(server.address)
        .await
        .expect("the OS accepts into the backlog");
    third.write_all(&request("/hello")).await.expect("write");
    // Not a wait for something to happen: a check that nothing does while
    // both slots are held. A server ignoring the bound answers in
    // microseconds.
    let mut buf = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(500), third.read(&mut buf)).await;
    assert!(early.is_err(), "served beyond the bound: {early:?}");
    drop(held.pop());
    let answer = read_response(&mut third).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    server.stop().await;
}

/// On shutdown a request in flight finishes and is answered, `serve`
/// returns only after it has, and the port then refuses connections.
#[tokio::test]
async fn shutdown_lets_the_request_in_flight_finish() {
    let entered = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let router = {
        let (entered, release) = (entered.clone(), release.clone());
        Router::new().route(
            "/slow",
            get(move || async move {
                entered.notify_one();
                release.notified().await;
                "finished"
            }),
        )
    };
    let mut server = start(ApiConfig::default(), router).await;
    let mut client = TcpStream::connect(server.address).await.expect("connect");
    client.write_all(&request("/slow")).await.expect("write");
    tokio::time::timeout(PATIENCE, entered.notified())
        .await
        .expect("the handler runs");

    server
        .stop
        .take()
        .expect("running")
        .send(())
        .expect("signal");
    // Nothing may finish while the handler is held: serve must wait.
    let early = tokio::time::timeout(Duration::from_millis(300), &mut server.task).await;
    assert!(early.is_err(), "serve returned with a request in flight");

    release.notify_one();
    let answer = read_response(&mut client).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("finished"), "{answer}");
    closed_by_server(&mut client).await;
    tokio::time::timeout(PATIENCE, server.task)
        .await
        .expect("serve returns once the request is done")
        .expect("task")
        .expect("serve");
    let refused = TcpStream::connect(server.address).await;
    assert!(refused.is_err(), "still accepting after shutdown");
}
