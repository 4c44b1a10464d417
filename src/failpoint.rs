//! Named fault points, armed from the environment, for tests that must
//! stop a real `strata` process at an exact place: between two steps of a
//! saga, say, to kill it there and check what a restart makes of it.
//!
//! `STRATA_FAILPOINTS` lists `name=action` pairs separated by `;`, read
//! once per process:
//!
//! - `abort`: the process aborts on the spot, as `kill -9` would stop it
//!   (no destructor runs, nothing is flushed);
//! - `error`: the operation fails with an `Unavailable` error naming the
//!   point;
//! - `hang`: the operation never finishes (the task waits forever; the
//!   rest of the process goes on).
//!
//! Names in use: `saga.<kind>.<step>.<apply|compensate>`, checked before a
//! saga step is done or undone (see [`crate::platform::sagas`]);
//! `outbox.after_commit` (a commit wrote an event, the relays are not woken
//! yet), `outbox.relay.after_claim` and `outbox.relay.after_publish`
//! (published and confirmed, not marked sent), see
//! [`crate::platform::outbox`].
//!
//! With the variable unset, a check is one load of an empty map.

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::error::{Error, ErrorKind, Result};

/// What an armed point does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Abort,
    Error,
    Hang,
}

fn armed() -> &'static HashMap<String, Action> {
    static ARMED: OnceLock<HashMap<String, Action>> = OnceLock::new();
    ARMED.get_or_init(|| {
        std::env::var("STRATA_FAILPOINTS")
            .map(|spec| parse(&spec))
            .unwrap_or_default()
    })
}

fn parse(spec: &str) -> HashMap<String, Action> {
    let mut points = HashMap::new();
    for entry in spec.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let parsed = entry.split_once('=').and_then(|(name, action)| {
            let action = match action.trim() {
                "abort" => Action::Abort,
                "error" => Action::Error,
                "hang" => Action::Hang,
                _ => return None,
            };
            Some((name.trim().to_owned(), action))
        });
        match parsed {
            Some((name, action)) => {
                points.insert(name, action);
            }
            None => eprintln!(
                "strata: ignoring STRATA_FAILPOINTS entry `{entry}` (expected NAME=abort|error|hang)"
            ),
        }
    }
    points
}

/// Passes unless the point `name` is armed: then aborts the process, fails
/// or never returns, as armed. Async so that `hang` parks only its task.
pub(crate) async fn check(name: &str) -> Result<()> {
    match armed().get(name) {
        None => Ok(()),
        Some(Action::Abort) => {
            eprintln!("strata: failpoint {name}: aborting");
            std::process::abort()
        }
        Some(Action::Error) => Err(Error::new(
            ErrorKind::Unavailable,
            format!("failpoint {name} injected a failure"),
        )),
        Some(Action::Hang) => {
            eprintln!("strata: failpoint {name}: hanging");
            std::future::pending().await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_entries_and_skips_malformed_ones() {
        let points = parse(" a.b=abort; c=error ;d=hang;e=explode;f;;");
        assert_eq!(points.get("a.b"), Some(&Action::Abort));
        assert_eq!(points.get("c"), Some(&Action::Error));
        assert_eq!(points.get("d"), Some(&Action::Hang));
        assert_eq!(points.len(), 3);
    }

    #[tokio::test]
    async fn unarmed_points_pass() {
        assert!(check("saga.nothing.here.apply").await.is_ok());
    }
}
