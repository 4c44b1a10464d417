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
    // (`next_free` is when it can take the next), each taking 1/capacity.
    let capacity = 400.0;
    let service = Duration::from_secs_f64(1.0 / capacity);
    let next_free = Arc::new(std::sync::Mutex::new(tokio::time::Instant::now()));
    let workload = from_fn(move |_seq| {
        let next_free = Arc::clone(&next_free);
        async move {
            let done = {
                let mut free = next_free.lock().unwrap();
                let start = (*free).max(tokio::time::Instant::now());
                *free = start + service;
                *free
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
        assert!(step.p99_us < 20_000.0, "{step:?}");
    }
    assert!(steps[knee].achieved < 0.8 * 600.0, "{:?}", steps[knee]);
    // The sweep stops one step past the knee.
    assert!(steps.len() <= knee + 2, "{steps:#?}");
}
