//! Shared set-up of the integration tests.
//!
//! Real-service tests run when `STRATA_TEST_FULL=1` (after
//! `scripts/services.sh up`); otherwise they are skipped and say so once per
//! test binary. They read their connection settings from the repository's
//! `config/full.toml` through the same loader strata uses, plus `STRATA_*`
//! variables, and isolate themselves with names from [`unique_name`].

#![allow(dead_code)]

use std::io::Write;
use std::path::Path;
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};

use strata::config::{Config, Sources};

/// Whether the real services are to be used.
pub fn full_stack_enabled() -> bool {
    std::env::var("STRATA_TEST_FULL").as_deref() == Ok("1")
}

/// The full profile's configuration, or `None` (with one line on stderr per
/// test binary) when `STRATA_TEST_FULL` is not `1`.
pub fn full_profile(suite: &str) -> Option<Config> {
    static SKIP_NOTICE: Once = Once::new();
    if !full_stack_enabled() {
        SKIP_NOTICE.call_once(|| {
            // Written to the handle, not with eprintln!, which the test
            // harness captures and hides for passing tests.
            let _ = writeln!(
                std::io::stderr(),
                "{suite}: real-service cases skipped (set STRATA_TEST_FULL=1 after scripts/services.sh up)"
            );
        });
        return None;
    }
    let sources = Sources {
        config_dir: Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("config")),
        profile: Some("full".into()),
        ..Default::default()
    };
    Some(Config::load(&sources).unwrap_or_else(|e| panic!("config/full.toml: {e}")))
}

/// A name no other test, run or process uses: `prefix` + pid + time +
/// counter. Lower-case ASCII letters, digits and `_` only, so it is valid as
/// a database, schema, queue or key prefix everywhere.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}_{}_{nanos:x}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}
