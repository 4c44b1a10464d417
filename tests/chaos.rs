//! `scripts/chaos.sh`: fault injection under load (docs/operations.md,
//! "Fault injection").
//!
//! - `embedded_kill_9_mid_load_loses_nothing` runs the embedded variant
//!   (one `strata serve` killed with SIGKILL mid-load and started again) and
//!   expects `lost 0` and exit status 0.
//! - `the_check_counts_a_lost_write` shows that the checker can fail: a log
//!   claiming an acknowledged registration the server never saw is one loss
//!   and exit status 1.
//! - `the_check_counts_a_lost_signup` (full profile) does the same for
//!   tasks: a signup sent and onboarded passes, one the log claims
//!   acknowledged but never sent is one loss.
//! - The full profile stops the shared services (Redis, RabbitMQ, MongoDB,
//!   PostgreSQL) one at a time, which would break every other full-stack
//!   test running beside it, so no test here runs it: `.ci/run` runs
//!   `bash scripts/chaos.sh --seconds 60` as a step of its own after the
//!   full-stack tests. `full_profile_chaos` is `#[ignore]`d for the same
//!   reason; run it alone with
//!   `STRATA_TEST_FULL=1 cargo test --test chaos -- --ignored`.

mod common;

use std::process::Command;

use serde_json::json;

fn chaos(args: &[&str]) -> (bool, String) {
    let output = Command::new("bash")
        .arg("scripts/chaos.sh")
        .args(args)
        .env("STRATA_BIN", env!("CARGO_BIN_EXE_strata"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run scripts/chaos.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn embedded_kill_9_mid_load_loses_nothing() {
    let (ok, text) = chaos(&["--profile", "embedded", "--seconds", "8"]);
    assert!(ok, "{text}");
    assert!(text.contains("kill -9 serve"), "{text}");
    let summary = text
        .lines()
        .find(|l| l.starts_with("acknowledged "))
        .unwrap_or_else(|| panic!("no summary line: {text}"));
    assert!(
        summary.ends_with("lost 0, duplicated 0, orphaned 0"),
        "{summary}"
    );
    let acknowledged: u64 = summary
        .trim_start_matches("acknowledged ")
        .split(',')
        .next()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(acknowledged > 0, "nothing was acknowledged: {text}");
}

/// Runs `load.py check` against `url` on a log of `lines` with `args`;
/// returns its exit status, standard output and standard error.
fn check(url: &str, lines: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("acks.jsonl");
    std::fs::write(&log, lines).expect("write the log");
    let mut command = Command::new("python3");
    for (key, _) in std::env::vars() {
        if key.starts_with("STRATA_") {
            command.env_remove(key);
        }
    }
    let output = command
        .arg("scripts/chaos/load.py")
        .args(["check", "--urls", url, "--prefix", "x", "--log"])
        .arg(&log)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run load.py check");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_check_counts_a_lost_write() {
    let stack = common::serve::Stack::embedded();
    let server = stack.serve(&[]).await;
    let answer = server
        .call(
            "POST",
            "/v1/datasets",
            Some(&json!({"name": "chaos-dataset"})),
        )
        .await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    let (status, stdout, _) = check(
        &format!("http://{}", server.address),
        "{\"kind\": \"day\", \"day\": \"2026-01-01\"}\n\
         {\"kind\": \"run\", \"id\": \"chaos-never-sent\", \"ack\": true, \"status\": 201}\n",
        &["--kinds", "runs", "--deadline", "5"],
    );
    assert_eq!(status, Some(1), "{stdout}");
    assert!(
        stdout.contains("acknowledged 1, lost 1, duplicated 0, orphaned 0"),
        "{stdout}"
    );
    stack.cleanup().await;
}

/// On the full profile only: the checker reads the stores with `strata
/// docs find` beside the running server, and the embedded document store
/// admits one process at a time.
#[tokio::test]
async fn the_check_counts_a_lost_signup() {
    common::serve::run_on(
        common::serve::Stack::full("chaos").await,
        |stack| async move {
            let prefix = format!("c{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
            let env = [("STRATA_PIPELINES__PREFIX", prefix.as_str())];
            let server = stack.serve(&env).await;
            let signup = json!({"id": "x-user-0", "email": "x-user-0@chaos.example",
                            "name": "Chaos", "city": "berlin"});
            let answer = server.call("POST", "/v1/users", Some(&signup)).await;
            assert_eq!(answer.status, 202, "{:?}", answer.body);
            let strata = stack.command_line(&env);
            let (status, stdout, stderr) = check(
                &format!("http://{}", server.address),
                "{\"kind\": \"day\", \"day\": \"2026-01-01\"}\n\
                 {\"kind\": \"signup\", \"id\": \"x-user-0\", \"ack\": true, \"status\": 202}\n\
                 {\"kind\": \"signup\", \"id\": \"x-user-1\", \"ack\": true, \"status\": 202}\n",
                &[
                    "--kinds",
                    "tasks",
                    "--deadline",
                    "15",
                    "--strata",
                    &strata,
                    "--pipelines-prefix",
                    &prefix,
                ],
            );
            assert_eq!(status, Some(1), "{stdout}{stderr}");
            assert!(
                stdout.contains("signups 2/2 acknowledged (1 onboarded, 0 dead-lettered)"),
                "{stdout}{stderr}"
            );
            assert!(
                stdout.contains("acknowledged 2, lost 1, duplicated 0, orphaned 0"),
                "{stdout}{stderr}"
            );
            assert!(
                stderr.contains("signup x-user-1 was acknowledged and is nowhere"),
                "{stderr}"
            );
        },
    )
    .await;
}

#[test]
#[ignore = "stops the shared services; .ci/run runs scripts/chaos.sh on its own"]
fn full_profile_chaos() {
    if std::env::var_os("STRATA_TEST_FULL").is_none() {
        return;
    }
    let (ok, text) = chaos(&["--seconds", "30"]);
    assert!(ok, "{text}");
    assert!(text.contains("lost 0, duplicated 0, orphaned 0"), "{text}");
}
