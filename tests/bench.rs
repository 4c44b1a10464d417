//! The bench harness measured against fakes whose behaviour is known:
//! a planted stall must show in the corrected percentiles (not only in the
//! uncorrected ones), the open-loop dispatcher must keep its rate while the
//! system under test stalls, and a sweep must find the knee of a fake with
//! a fixed capacity.
//!
//! These run in real time (the dispatcher is a thread with a real clock);
//! the fakes' times are in milliseconds, far above the harness's own
//! scheduling noise, and the bounds leave a wide margin.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use strata::bench::harness::{self, Mode, OpenLoop, Workload, from_fn};

/// A system that answers at once, except that everything stops for
/// `stall` from `at` after its creation: a request arriving, or already
/// in progress, during the stall is answered when it ends (a
/// stop-the-world pause).
fn stalling(at: Duration, stall: Duration) -> (Arc<dyn Workload>, Arc<AtomicU64>) {
    let origin = tokio::time::Instant::now();
    let (begin, end) = (origin + at, origin + at + stall);
    let calls = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&calls);
    let workload = from_fn(move |_seq| {
        let calls = Arc::clone(&counted);
        async move {
            calls.fetch_add(1, Ordering::Relaxed);
            let now = tokio::time::Instant::now();
            if now >= begin && now < end {
                tokio::time::sleep_until(end).await;
            }
            Ok(())
        }
    });
    (workload, calls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_shows_in_the_corrected_percentiles_not_only_the_uncorrected() {
    let rate = 1_000.0;
    let stall = Duration::from_millis(300);
    let (workload, _) = stalling(Duration::from_millis(1_000), stall);
    let m = harness::open_loop(
        &workload,
        &OpenLoop {
            rate,
            duration: Duration::from_millis(2_500),
            connections: 4,
            timeout: Duration::from_secs(5),
            drain: Duration::from_secs(2),
        },
    )
    .await
    .unwrap();
    assert_eq!(m.errors, 0, "{:?}", m.first_error);
    assert_eq!(m.ok, 2_500, "every request due was answered");
    // About 300 of 2,500 requests fell due during the stall, each waiting
    // for its end: 12% of the corrected latencies spread over 0..300 ms,
    // so the 99th percentile is near 270 ms.
    assert!(
        m.corrected.p99_us > 150_000.0,
        "corrected p99 {} µs must show the 300 ms stall",
        m.corrected.p99_us
    );
    assert!(
        m.corrected.p90_us > 10_000.0,
        "corrected p90 {} µs",
        m.corrected.p90_us
    );
    // Only the 4 requests in flight when it began saw the stall from
    // their send: the uncorrected 99th percentile stays small, the stall
    // shows in its maximum alone.
    assert!(
        m.uncorrected.p99_us < 50_000.0,
        "uncorrected p99 {} µs",
        m.uncorrected.p99_us
    );
    assert!(
        m.uncorrected.max_us > 250_000.0,
        "uncorrected max {} µs",
        m.uncorrected.max_us
    );
    assert!(m.corrected.p99_us > 5.0 * m.uncorrected.p99_us);
    assert_eq!(
        m.mode,
        Mode::Open {
            rate,
            connections: 4
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dispatcher_keeps_its_rate_while_the_system_stalls() {
    let rate = 1_000.0;
    let duration = Duration::from_millis(2_000);
    let (workload, calls) = stalling(Duration::from_millis(500), Duration::from_millis(400));
    let started = Instant::now();
    let m = harness::open_loop(
        &workload,
        &OpenLoop {
            rate,
            duration,
            connections: 4,
            timeout: Duration::from_secs(5),
            drain: Duration::from_secs(2),
        },
    )
    .await
    .unwrap();
    let took = started.elapsed();
    // Every request due in the 2 s was handed out and sent, the 400 due
    // during the stall included: the schedule did not wait for the
    // system.
    assert_eq!(calls.load(Ordering::Relaxed), 2_000);
    assert_eq!(m.ok, 2_000);
    assert_eq!(m.unfinished, 0);
    let late = m
        .dispatch_late
        .expect("the open loop reports its dispatcher");
    assert!(
        late.max_us < 50_000.0,
        "the dispatcher handed requests out up to {} µs late during a 400 ms stall",
        late.max_us
    );
    // The backlog was worked off after the stall, so the run ended about
    // on time and the throughput is the offered rate.
    assert!(took < duration + Duration::from_millis(700), "{took:?}");
    assert!(
        m.throughput > 0.85 * rate && m.throughput < 1.15 * rate,
        "throughput {} /s at an offered {rate} /s",
        m.throughput
    );

    // A closed loop under the same stall sends nothing while it lasts.
    let (workload, calls) = stalling(Duration::from_millis(200), Duration::from_millis(400));
    let closed = harness::closed_loop(
        &workload,
        4,
        Duration::from_millis(800),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert!(closed.ok > 0);
    assert_eq!(calls.load(Ordering::Relaxed), closed.ok);
    assert!(
        closed.corrected.max_us > 300_000.0,
        "a closed loop sees the stall as one long request per session: {} µs",
        closed.corrected.max_us
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_finds_the_knee_of_a_rate_limited_fake() {
    // Serves at most `capacity` requests a second, one after another
    // (`next_free` is when it can take the next), each taking 1/capacity,
    // then answers `floor` later (a pipeline: the floor does not hold the
    // server). The floor is well above a shared machine's scheduling
    // noise, so that a stall of a few tens of milliseconds does not pass
    // for the knee (p99 over 3 × the floor's); past the capacity the queue
    // grows by hundreds of milliseconds a second.
    let capacity = 400.0;
    let service = Duration::from_secs_f64(1.0 / capacity);
    let floor = Duration::from_millis(25);
    let next_free = Arc::new(std::sync::Mutex::new(tokio::time::Instant::now()));
    let workload = from_fn(move |_seq| {
        let next_free = Arc::clone(&next_free);
        async move {
            let done = {
                let mut free = next_free.lock().unwrap();
                let start = (*free).max(tokio::time::Instant::now());
                *free = start + service;
                *free + floor
            };
            tokio::time::sleep_until(done).await;
            Ok(())
        }
    });
    let rates = [100.0, 200.0, 300.0, 600.0, 800.0, 1_000.0];
    let sweep = harness::sweep(
        &workload,
        &rates,
        &OpenLoop {
            rate: 1.0,
            duration: Duration::from_millis(1_000),
            connections: 16,
            timeout: Duration::from_secs(5),
            drain: Duration::from_millis(500),
        },
    )
    .await
    .unwrap();
    let knee = sweep.knee.expect("a knee");
    let steps = &sweep.steps;
    assert_eq!(
        steps[knee].offered, 600.0,
        "the knee is the first rate above the capacity of {capacity} /s: {steps:#?}"
    );
    // Below the capacity the latency stays on its floor; at the knee the
    // throughput stops following the offered rate.
    for step in &steps[..knee] {
        assert!(step.achieved > 0.9 * step.offered, "{step:?}");
        // 25 ms of floor and 2.5 ms of service, plus timer and scheduling
        // noise of a shared machine; past the knee it is hundreds of
        // milliseconds.
        assert!(step.p99_us < 100_000.0, "{step:?}");
    }
    assert!(steps[knee].achieved < 0.8 * 600.0, "{:?}", steps[knee]);
    // The sweep stops one step past the knee.
    assert!(steps.len() <= knee + 2, "{steps:#?}");
}

// --- strata bench as a user runs it ------------------------------------------

mod common;

use std::path::Path;
use std::process::{Command, Output};

/// `strata ARGS` with the repository's configuration and no `STRATA_*`
/// variable of this process; `TMPDIR` is `tmp`, so the sandbox it makes
/// can be looked for afterwards.
fn strata(tmp: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_strata"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("STRATA_") {
            command.env_remove(key);
        }
    }
    command
        .env(
            "STRATA_CONFIG_DIR",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("config"),
        )
        .env("TMPDIR", tmp)
        .current_dir(tmp)
        .args(args)
        .output()
        .expect("run strata")
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("the results file"))
        .expect("the results are JSON")
}

/// What the sandbox left in `tmp`: nothing, once the bench is over.
fn leftovers(tmp: &Path) -> Vec<String> {
    std::fs::read_dir(tmp)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("strata_bench_"))
        .collect()
}

#[test]
fn bench_measures_writes_compares_and_reports_on_the_embedded_profile() {
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("run.json");
    let out = strata(
        tmp.path(),
        &[
            "bench",
            "--quick",
            "--seconds",
            "0.2",
            "--rounds",
            "2",
            "--concurrency",
            "1,4",
            "--only",
            "kv.read,relational.read,cache.l1",
            "--sweep",
            "kv.read",
            "--json-file",
            json.to_str().unwrap(),
            "--markdown",
            "run.md",
            "--chart",
            "run.svg",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    for id in ["kv.read", "relational.read", "cache.l1"] {
        assert!(table.contains(id), "{id} missing from the table:\n{table}");
    }
    assert!(
        leftovers(tmp.path()).is_empty(),
        "{:?}",
        leftovers(tmp.path())
    );

    let run = read_json(&json);
    assert_eq!(run["schema"], 1);
    assert!(run["machine"]["cores"].as_u64().unwrap() >= 1);
    let profile = &run["profiles"][0];
    assert_eq!(profile["profile"], "embedded");
    let workloads = profile["workloads"].as_array().unwrap();
    assert_eq!(workloads.len(), 3, "{profile:#}");
    for w in workloads {
        assert_eq!(w["open"].as_array().unwrap().len(), 2, "two rounds: {w:#}");
        assert_eq!(w["closed"].as_array().unwrap().len(), 2, "×1 and ×4: {w:#}");
        for m in w["open"]
            .as_array()
            .unwrap()
            .iter()
            .chain(w["closed"].as_array().unwrap())
        {
            assert!(m["ok"].as_u64().unwrap() > 0, "{m:#}");
            assert_eq!(m["errors"], 0, "{m:#}");
            assert!(m["corrected"]["p99_us"].as_f64().unwrap() > 0.0);
        }
    }
    let ratios = profile["ratios"].as_array().unwrap();
    assert!(
        ratios
            .iter()
            .any(|r| r["id"] == "kv-vs-relational-read" && r["value"].as_f64().unwrap() > 0.0),
        "{ratios:#?}"
    );
    assert!(
        !profile["sweep"]["sweep"]["steps"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let skipped = profile["skipped"].to_string();
    assert!(
        skipped.contains("redis-benchmark") && skipped.contains("pgbench"),
        "{skipped}"
    );
    let svg = std::fs::read_to_string(tmp.path().join("run.svg")).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("kv.read"),
        "{}",
        &svg[..svg.len().min(300)]
    );
    let md = std::fs::read_to_string(tmp.path().join("run.md")).unwrap();
    assert!(md.contains("| kv.read"), "{md}");

    // A run against itself: nothing beyond the noise.
    let out = strata(tmp.path(), &["bench", "compare", "run.json", "run.json"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("0 slower, 0 faster"),
        "{}",
        text(&out)
    );

    let out = strata(
        tmp.path(),
        &["bench", "report", "run.json", "--out", "ANALYSIS.md"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let analysis = std::fs::read_to_string(tmp.path().join("ANALYSIS.md")).unwrap();
    assert!(
        analysis.contains("run.json"),
        "the analysis names its source"
    );
    assert!(
        analysis.contains("strata bench report"),
        "and how to regenerate it"
    );

    let out = strata(tmp.path(), &["explain", "--from", "run.json"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("sqlite"),
        "{}",
        text(&out)
    );
}

/// With `--url`, the HTTP workloads are measured on that server, whose
/// engines are its own: the report names it, not the bench's profile.
#[tokio::test]
async fn bench_against_a_url_names_that_server_as_the_engine() {
    let stack = common::serve::Stack::embedded();
    let server = stack.serve(&[]).await;
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("run.json");
    let url = format!("http://{}", server.address);
    let out = strata(
        tmp.path(),
        &[
            "bench",
            "--quick",
            "--seconds",
            "0.2",
            "--rounds",
            "1",
            "--concurrency",
            "1",
            "--only",
            "http.features",
            "--sweep",
            "none",
            "--url",
            &url,
            "--json-file",
            json.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let run = read_json(&json);
    let profile = &run["profiles"][0];
    let workload = profile["workloads"]
        .as_array()
        .expect("workloads")
        .iter()
        .find(|w| w["id"] == "http.features")
        .unwrap_or_else(|| panic!("no http.features: {profile}"));
    assert_eq!(
        workload["engine"],
        format!("strata serve at {}", server.address)
    );
    let targets = profile["engines"]["targets"].to_string();
    assert!(
        targets.contains(&format!("the strata serve at {url}, on its own engines")),
        "{targets}"
    );
    stack.cleanup().await;
}

#[test]
fn bench_refuses_bad_input_with_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 5] = [
        (&["bench", "--only", "kv.nope"], "kv.nope"),
        (&["bench", "--sweep", "nope"], "nope"),
        (&["bench", "--seconds", "0"], "above 0"),
        (
            &["bench", "--json-file", "missing/dir/run.json"],
            "does not exist",
        ),
        (&["bench", "compare", "a.json", "b.json"], "a.json"),
    ];
    for (args, names) in cases {
        let out = strata(tmp.path(), args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(names),
            "{args:?} must name {names:?}: {}",
            text(&out)
        );
    }
    std::fs::write(tmp.path().join("other.json"), r#"{"schema": 99}"#).unwrap();
    let out = strata(tmp.path(), &["bench", "report", "other.json", "--out", "-"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("format 99"),
        "{}",
        text(&out)
    );
    assert!(leftovers(tmp.path()).is_empty());
}

#[test]
fn bench_on_the_full_profile_runs_beside_the_native_tools_and_leaves_nothing() {
    let Some(config) = common::full_profile("bench") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = strata(
        tmp.path(),
        &[
            "--profile",
            "full",
            "bench",
            "--quick",
            "--seconds",
            "0.3",
            "--concurrency",
            "1,8",
            "--only",
            "kv.read,relational.read,queue,http.features",
            "--sweep",
            "none",
            "--json-file",
            "full.json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let run = read_json(&tmp.path().join("full.json"));
    let profile = &run["profiles"][0];
    assert_eq!(profile["engines"]["kv"], "redis", "{profile:#}");
    let ids: Vec<&str> = profile["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "kv.read",
            "relational.read",
            "queue.roundtrip",
            "http.features"
        ],
        "{profile:#}"
    );
    let baselines = profile["baselines"].as_array().unwrap();
    for id in ["redis-get", "pgbench-select"] {
        let b = baselines
            .iter()
            .find(|b| b["id"] == id)
            .unwrap_or_else(|| panic!("{id} missing: {profile:#}"));
        assert!(b["throughput_ratio"].as_f64().unwrap() > 0.0, "{b:#}");
        assert!(b["p99_ratio"].as_f64().unwrap() > 0.0, "{b:#}");
        assert!(
            !b["command"].as_str().unwrap().contains("strata-dev"),
            "no password: {b:#}"
        );
    }
    assert!(leftovers(tmp.path()).is_empty());
    // Its database, keys and queues are gone.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use sea_orm::ConnectionTrait;
        use strata::engines::KvStoreExt;

        let db = strata::engines::open_relational(&config).await.unwrap();
        let rows = db
            .query_all_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                "SELECT datname FROM pg_database WHERE datname LIKE 'strata_bench_%'",
            ))
            .await
            .unwrap();
        // Other benches may run at the same time: this one's by name.
        let name = profile["sandbox"].as_str().unwrap();
        assert!(name.starts_with("strata_bench_"), "{profile:#}");
        for row in rows {
            let left: String = row.try_get_by_index(0).unwrap();
            assert_ne!(left, name, "its PostgreSQL database is left");
        }
        let kv = strata::engines::open_kv(&config).await.unwrap();
        let keys = kv.scan_all(&format!("{name}:*")).await.unwrap();
        assert!(keys.is_empty(), "its keys are left: {keys:?}");
    });
}
