//! Engines that stop answering, for tests of what strata does then: a
//! shared service paused with SIGSTOP ([`Paused`], resumed when dropped,
//! also when the test fails), and a TCP gate in front of a service
//! ([`Gate`]) that can refuse connections and reset the ones open, which
//! only the process pointed at the gate sees.
//!
//! Pausing a shared service affects every process that uses it: tests
//! that do take [`exclusive`], and the other full-profile tests of the
//! same binary take [`shared`], so that they never run at once.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use tokio::task::JoinHandle;

use super::serve::signal;

static SERVICES: RwLock<()> = RwLock::const_new(());

/// Held by a test that uses the shared services undisturbed.
pub async fn shared() -> RwLockReadGuard<'static, ()> {
    SERVICES.read().await
}

/// Held by a test that pauses a shared service.
pub async fn exclusive() -> RwLockWriteGuard<'static, ()> {
    SERVICES.write().await
}

/// The state folder of `scripts/services.sh`.
fn services_dir() -> std::path::PathBuf {
    std::env::var_os("STRATA_SERVICES_DIR")
        .map(Into::into)
        .unwrap_or_else(|| "/var/tmp/strata-services".into())
}

/// How long a service may stay paused if the test process itself dies
/// before resuming it (a watchdog resumes it then).
const WATCHDOG: Duration = Duration::from_secs(180);

/// A shared service stopped with SIGSTOP; SIGCONT when dropped.
pub struct Paused {
    service: &'static str,
    pid: u32,
    watchdog: Option<std::process::Child>,
}

impl Paused {
    /// Pauses the service `name` of `scripts/services.sh` (`redis`,
    /// `mongo`), by the pid in its state folder.
    pub fn pause(service: &'static str) -> Paused {
        let pid_file = services_dir().join(service).join(format!("{service}.pid"));
        let pid: u32 = std::fs::read_to_string(&pid_file)
            .unwrap_or_else(|e| panic!("{}: {e}", pid_file.display()))
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{}: {e}", pid_file.display()));
        // Should this process be killed before it resumes the service, the
        // watchdog does: a shared service never stays paused for good.
        let watchdog = std::process::Command::new("sh")
            .args([
                "-c",
                &format!("sleep {}; kill -CONT {pid}", WATCHDOG.as_secs()),
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn the resume watchdog");
        signal(pid, "STOP");
        Paused {
            service,
            pid,
            watchdog: Some(watchdog),
        }
    }

    /// The paused service's name.
    pub fn service(&self) -> &'static str {
        self.service
    }

    /// Resumes it now.
    pub fn resume(self) {
        drop(self);
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        signal(self.pid, "CONT");
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
    }
}

/// A TCP gate in front of `upstream`: open, it forwards every connection;
/// closed, it refuses new connections and resets the open ones, as a
/// server that went down would.
pub struct Gate {
    port: u16,
    upstream: String,
    state: Arc<Mutex<GateState>>,
}

#[derive(Default)]
struct GateState {
    acceptor: Option<JoinHandle<()>>,
    connections: Vec<JoinHandle<()>>,
}

impl Gate {
    /// An open gate on a free loopback port.
    pub async fn open(upstream: &str) -> Gate {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind gate");
        let port = listener.local_addr().expect("gate address").port();
        let gate = Gate {
            port,
            upstream: upstream.to_owned(),
            state: Arc::new(Mutex::new(GateState::default())),
        };
        gate.accept_on(listener);
        gate
    }

    /// The port to connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn accept_on(&self, listener: TcpListener) {
        let upstream = self.upstream.clone();
        let state = Arc::clone(&self.state);
        let acceptor = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let forward = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                let mut state = state.lock().expect("gate lock");
                state.connections.retain(|c| !c.is_finished());
                state.connections.push(forward);
            }
        });
        self.state.lock().expect("gate lock").acceptor = Some(acceptor);
    }

    /// Refuses new connections and drops the open ones.
    pub async fn close(&self) {
        let (acceptor, connections) = {
            let mut state = self.state.lock().expect("gate lock");
            (
                state.acceptor.take(),
                std::mem::take(&mut state.connections),
            )
        };
        // Aborting the acceptor drops the listener (new connections are
        // refused); aborting a forwarder drops both its sockets.
        for task in acceptor.into_iter().chain(connections) {
            task.abort();
            let _ = task.await;
        }
    }

    /// Accepts and forwards again, on the same port.
    pub async fn reopen(&self) {
        let socket = tokio::net::TcpSocket::new_v4().expect("gate socket");
        socket.set_reuseaddr(true).expect("SO_REUSEADDR");
        socket
            .bind(([127, 0, 0, 1], self.port).into())
            .expect("bind the gate again");
        self.accept_on(socket.listen(128).expect("listen"));
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        let mut state = self.state.lock().expect("gate lock");
        for task in state
            .acceptor
            .take()
            .into_iter()
            .chain(state.connections.drain(..))
        {
            task.abort();
        }
    }
}
