//! `strata chaos-sandbox` (hidden): the sandbox of `scripts/chaos.sh`.
//!
//! It opens the same sandbox `strata bench` runs in (a temporary data dir;
//! on the real services a PostgreSQL database, a MongoDB database, a Redis
//! key prefix and a pipelines prefix of its own, the schema applied), prints
//! what a `strata` child needs to reach it, one `NAME=VALUE` line each
//! (`DATA_DIR` for `--data-dir`, then `STRATA_*` variables), then `READY`,
//! and holds it until its standard input ends. Then it removes everything
//! the sandbox holds (also what the children wrote there) and prints
//! `REMOVED`; SIGINT and SIGTERM do the same. A script that dies closes the
//! pipe, so the sandbox goes with it (not after SIGKILL of this process).

use std::io::{BufRead, Write};
use std::process::ExitCode;

use crate::bench::sandbox::Sandbox;
use crate::config::Config;
use crate::error::{Error, Result};

/// Opens the sandbox, prints how to reach it, waits for the end of
/// standard input, removes it.
pub async fn sandbox(config: &Config) -> Result<ExitCode> {
    let sandbox = Sandbox::open(config).await?;
    let printed = (|| {
        let mut out = std::io::stdout().lock();
        writeln!(out, "DATA_DIR={}", sandbox.data_dir().display())?;
        for (name, value) in sandbox.overrides() {
            writeln!(out, "{name}={value}")?;
        }
        writeln!(out, "READY")?;
        out.flush()
    })();
    if printed.is_ok() {
        // A thread of its own reads until the holder closes the pipe; SIGINT
        // or SIGTERM end the wait as well.
        let closed = tokio::task::spawn_blocking(|| {
            let stdin = std::io::stdin();
            let mut line = String::new();
            while stdin.lock().read_line(&mut line).is_ok_and(|n| n > 0) {
                line.clear();
            }
        });
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| Error::internal(format!("cannot watch SIGTERM: {e}")))?;
        tokio::select! {
            _ = closed => {}
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    sandbox.remove().await;
    match printed {
        Ok(()) => {
            println!("REMOVED");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(Error::internal(format!("cannot print the sandbox: {e}"))),
    }
}
