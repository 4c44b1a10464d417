//! The pipelines' worker runtime on both profiles: one case list run on the
//! embedded engines and, with `STRATA_TEST_FULL=1`, on PostgreSQL +
//! MongoDB + Redis + RabbitMQ. Every case declares its own topology under a
//! prefix of its own and deletes it afterwards.

mod common;

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use serde_json::json;
use strata::ErrorKind;
use strata::engines::Engines;
use strata::pipelines::worker::WorkerStats;
use strata::pipelines::{
    DeadLetterFilter, HandlerFn, Outcome, Pipelines, PipelinesConfig, Priority, QueueSpec, Task,
    Worker,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use common::engines::{run_case, setup_embedded, setup_full_rabbit};

macro_rules! all_cases {
    ($backend:ident, $setup:expr) => {
        run_cases!($backend, $setup;
            a_task_is_handled_once,
            a_failing_task_is_retried_through_the_broker_until_it_succeeds,
            an_aborted_task_is_a_dead_letter_at_once_with_its_error,
            the_last_failed_attempt_dead_letters_with_the_whole_history,
            a_replayed_dead_letter_is_handled_with_its_id_and_history,
            urgent_tasks_overtake_a_backlog,
            duplicates_of_a_message_are_processed_once,
            a_handler_that_panics_is_dead_lettered_as_poison,
            large_payloads_travel_compressed,
            stopping_lets_running_handlers_finish_and_settle,
            concurrent_publishers_and_two_workers_handle_every_task_exactly_once,
            purge_never_deletes_more_than_asked,
            events_reach_every_queue_bound_to_their_type,
            a_task_for_a_queue_nobody_declared_is_an_error,
        );
    };
}

all_cases!(embedded, setup_embedded());
all_cases!(full, setup_full_rabbit("pipelines"));

/// The longest any wait on a worker's progress may take.
const PATIENCE: Duration = Duration::from_secs(30);

fn config() -> PipelinesConfig {
    let mut config = PipelinesConfig {
        prefix: format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..10]),
        max_deliveries: 3,
        concurrency: 4,
        shutdown_grace: Duration::from_secs(10),
        ..Default::default()
    };
    config.retry.base = Duration::from_millis(20);
    config.retry.max_delay = Duration::from_millis(200);
    config.retry.max_attempts = 4;
    config
}

/// Runs `case` with pipelines under a fresh prefix, then deletes the
/// queues of `specs` and the exchanges, whether it passed or not.
async fn with_pipelines<F, Fut>(
    engines: Engines,
    config: PipelinesConfig,
    specs: Vec<QueueSpec>,
    case: F,
) where
    F: FnOnce(Pipelines) -> Fut,
    Fut: Future<Output = ()>,
{
    let pipelines = Pipelines::with_engines(
        engines.queue.clone(),
        engines.kv.clone(),
        engines.documents.clone(),
        &config,
    )
    .await
    .unwrap();
    let outcome = AssertUnwindSafe(case(pipelines.clone()))
        .catch_unwind()
        .await;
    pipelines.delete(&specs, true).await.unwrap();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Starts `worker`; returns its counters, the token that stops it and its task.
fn start(
    worker: Worker,
) -> (
    Arc<WorkerStats>,
    CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    let stats = worker.stats();
    let stop = CancellationToken::new();
    let token = stop.clone();
    let task = tokio::spawn(async move { worker.run(token).await.unwrap() });
    (stats, stop, task)
}

async fn stop(stop: CancellationToken, task: tokio::task::JoinHandle<()>) {
    stop.cancel();
    tokio::time::timeout(PATIENCE, task)
        .await
        .expect("the worker stops")
        .unwrap();
}

fn get(counter: &std::sync::atomic::AtomicU64) -> u64 {
    WorkerStats::get(counter)
}

async fn a_task_is_handled_once(engines: Engines) {
    let spec = QueueSpec::tasks("jobs");
    with_pipelines(engines, config(), vec![spec.clone()], |p| async move {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        let worker = Worker::new(&p).handle(
            spec.clone(),
            HandlerFn(move |task: Task| {
                let record = Arc::clone(&record);
                async move {
                    let value: serde_json::Value = task.json().unwrap();
                    record
                        .lock()
                        .unwrap()
                        .push((task.id.clone(), task.attempt, value));
                    Outcome::Done
                }
            }),
        );
        worker.declare().await.unwrap();
        let id = p
            .send_task("jobs", &json!({"n": 1}), Priority::Normal, None)
            .await
            .unwrap();
        let (stats, token, task) = start(worker);
        assert!(stats.wait_until(PATIENCE, |s| get(&s.done) == 1).await);
        stop(token, task).await;
        assert_eq!(*seen.lock().unwrap(), vec![(id, 1, json!({"n": 1}))]);
        assert_eq!(
            get(&stats.retried) + get(&stats.dead) + get(&stats.duplicates),
            0
        );
        assert_eq!(p.depth("jobs").await.unwrap(), 0, "acknowledged");
    })
    .await;
}

async fn a_failing_task_is_retried_through_the_broker_until_it_succeeds(engines: Engines) {
    let spec = QueueSpec::tasks("flaky");
    with_pipelines(engines, config(), vec![spec.clone()], |p| async move {
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&attempts);
        let worker = Worker::new(&p).handle(
            spec.clone(),
            HandlerFn(move |task: Task| {
                let record = Arc::clone(&record);
                async move {
                    record
                        .lock()
                        .unwrap()
                        .push((task.attempt, task.history.len()));
                    if task.attempt < 3 {
                        Outcome::retry(format!("not yet ({})", task.attempt))
                    } else {
                        Outcome::Done
                    }
                }
            }),
        );
        let (stats, token, task) = start(worker);
        // The worker declares its queues as it starts; wait for them.
        send_when_declared(&p, "flaky", &json!({}), Priority::Normal, None).await;
        assert!(stats.wait_until(PATIENCE, |s| get(&s.done) == 1).await);
        stop(token, task).await;
        assert_eq!(*attempts.lock().unwrap(), vec![(1, 0), (2, 1), (3, 2)]);
        assert_eq!(get(&stats.retried), 2);
        assert_eq!(get(&stats.dead), 0);
    })
    .await;
}

async fn an_aborted_task_is_a_dead_letter_at_once_with_its_error(engines: Engines) {
    let spec = QueueSpec::tasks("strict");
    with_pipelines(engines, config(), vec![spec.clone()], |p| async move {
        let calls = Arc::new(AtomicU32::new(0));
        let counted = Arc::clone(&calls);
        let worker = Worker::new(&p).handle(
            spec.clone(),
            HandlerFn(move |task: Task| {
                counted.fetch_add(1, Ordering::SeqCst);
                async move {
                    let value: serde_json::Value = task.json().unwrap();
                    Outcome::invalid(format!(
                        "email `{}` is not an address",
                        value["email"].as_str().unwrap_or("")
                    ))
                }
            }),
        );
        let (stats, token, task) = start(worker);
        let id = send_when_declared(
            &p,
            "strict",
            &json!({"email": "nope"}),
            Priority::Normal,
            None,
        )
        .await;
        assert!(stats.wait_until(PATIENCE, |s| get(&s.recorded) == 1).await);
        stop(token, task).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1, "never retried");
        let letters = p
            .dead_letters()
            .list(&DeadLetterFilter::default(), 10)
            .await
            .unwrap();
        assert_eq!(letters.len(), 1);
        let letter = &letters[0];
        assert_eq!(letter.queue, "strict");
        assert_eq!(letter.message_id, id);
        assert_eq!(letter.error_class, "invalid");
        assert_eq!(letter.error, "email `nope` is not an address");
        assert_eq!(letter.attempts, 1);
        assert_eq!(letter.routing_key, "strict");
        assert_eq!(letter.exchange, p.topology().tasks());
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&letter.payload).unwrap(),
            json!({"email": "nope"})
        );
        // Filters: by queue, by error text, by time.
        let by_error = DeadLetterFilter {
            error: Some("NOT AN ADDRESS".into()),
            ..Default::default()
        };
        assert_eq!(p.dead_letters().count(&by_error).await.unwrap(), 1);
        let other = DeadLetterFilter {
            queue: Some("other".into()),
            ..Default::default()
        };
        assert_eq!(p.dead_letters().count(&other).await.unwrap(), 0);
        let later = DeadLetterFilter {
            since: Some(letter.dead_at + chrono::Duration::seconds(1)),
            ..Default::default()
        };
        assert_eq!(p.dead_letters().count(&later).await.unwrap(), 0);
        let shown = p.dead_letters().get(&letter.id).await.unwrap().unwrap();
        assert_eq!(&shown, letter);
    })
    .await;
}

async fn the_last_failed_attempt_dead_letters_with_the_whole_history(engines: Engines) {
    let spec = QueueSpec::tasks("doomed");
    with_pipelines(engines, config(), vec![spec.clone()], |p| async move {
        let worker = Worker::new(&p).handle(
            spec.clone(),
            HandlerFn(
                |task: Task| async move { Outcome::retry(format!("down ({})", task.attempt)) },
            ),
        );
        let (stats, token, task) = start(worker);
        send_when_declared(&p, "doomed", &json!({"x": 1}), Priority::Normal, None).await;
        assert!(stats.wait_until(PATIENCE, |s| get(&s.recorded) == 1).await);
        stop(token, task).await;
        let letters = p
            .dead_letters()
            .list(&DeadLetterFilter::default(), 10)
            .await
            .unwrap();
        assert_eq!(letters.len(), 1);
        let letter = &letters[0];
        assert_eq!(letter.error_class, "exhausted");
        assert_eq!(letter.attempts, 4);
        assert_eq!(letter.error, "down (4) (attempt 4 of 4)");
        let outcomes: Vec<_> = letter
            .history
            .iter()
            .map(|a| (a.attempt, a.outcome.as_str(), a.error.as_str()))
            .collect();
        assert_eq!(
            outcomes,
            vec![
                (1, "retry", "down (1)"),
                (2, "retry", "down (2)"),
                (3, "retry", "down (3)"),
                (4, "exhausted", "down (4) (attempt 4 of 4)"),
            ]
        );
        let policy = p.config().retry_for("doomed");
        for attempt in &letter.history[..3] {
            let delay = Duration::from_millis(attempt.delay_ms.expect("a retry has its delay"));
            assert!(
                delay <= policy.cap(attempt.attempt),
                "{delay:?} within the backoff cap"
            );
        }
        assert_eq!(get(&stats.retried), 3);
    })
    .await;
}

async fn a_replayed_dead_letter_is_handled_with_its_id_and_history(engines: Engines) {
    let spec = QueueSpec::tasks("fixable");
    with_pipelines(engines, config(), vec![spec.clone()], |p| async move {
        let fixed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let handled = Arc::new(Mutex::new(Vec::new()));
        let (flag, record) = (Arc::clone(&fixed), Arc::clone(&handled));
        let worker = Worker::new(&p).handle(
            spec.clone(),
            HandlerFn(move |task: Task| {
                let (flag, record) = (Arc::clone(&flag), Arc::clone(&record));
                async move {
                    if flag.load(Ordering::SeqCst) {
                        record.lock().unwrap().push((
                            task.id.clone(),
                            task.attempt,
                            task.history.len(),
                        ));
                        Outcome::Done
                    } else {
                        Outcome::invalid("city `Atlantis` is unknown")
                    }
                }
            }),
        );
        let (stats, token, task) = start(worker);
        let id = send_when_declared(
            &p,
            "fixable",
            &json!({"city": "Atlantis"}),
            Priority::Normal,
            None,
        )
        .await;
        assert!(stats.wait_until(PATIENCE, |s| get(&s.recorded) == 1).await);
        let everything = DeadLetterFilter::default();
        let dry = p.replay(&everything, 10, 0, true).await.unwrap();
        assert_eq!(dry.replayed.len(), 1);
        assert_eq!(
            p.dead_letters().list(&everything, 10).await.unwrap()[0].replays,
            0,
            "a dry run changes nothing"
        );
        fixed.store(true, Ordering::SeqCst);
        let report = p.replay(&everything, 10, 100, false).await.unwrap();
        assert_eq!(report.replayed.len(), 1);
        assert!(report.failed.is_empty());
        assert!(stats.wait_until(PATIENCE, |s| get(&s.done) == 1).await);
        assert_eq!(
            *handled.lock().unwrap(),
            vec![(id.clone(), 1, 1)],
            "same id, history kept"
        );
        let letter = p
            .dead_letters()
            .get(&report.replayed[0])
            .await
            .unwrap()
            .unwrap();
        assert_eq!(letter.replays, 1);
        assert!(letter.replayed_at.is_some());
        // Its idempotency key holds: a second replay is skipped as a duplicate.
        p.replay(&everything, 10, 0, false).await.unwrap();
        assert!(
            stats
                .wait_until(PATIENCE, |s| get(&s.duplicates) == 1)
                .await
        );
        stop(token, task).await;
        assert_eq!(handled.lock().unwrap().len(), 1);
    })
    .await;
}

async fn urgent_tasks_overtake_a_backlog(engines: Engines) {
    let spec = QueueSpec::tasks("ranked");
    with_pipelines(engines, config(), vec![spec.clone()], |p| async move {
        let order = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&order);
        let worker = Worker::new(&p).concurrency(1).handle(
            spec.clone(),
            HandlerFn(move |task: Task| {
                let record = Arc::clone(&record);
                async move {
                    let value: serde_json::Value = task.json().unwrap();
                    record
                        .lock()
                        .unwrap()
                        .push(value["kind"].as_str().unwrap().to_owned());
                    Outcome::Done
                }
            }),
        );
        worker.declare().await.unwrap();
        for _ in 0..30 {
            p.send_task("ranked", &json!({"kind": "normal"}), Priority::Normal, None)
                .await
                .unwrap();
        }
        for _ in 0..5 {
            p.send_task("ranked", &json!({"kind": "urgent"}), Priority::Urgent, None)
                .await
                .unwrap();
        }
        let (stats, token, task) = start(worker);
        assert!(stats.wait_until(PATIENCE, |s| get(&s.done) == 35).await);
        stop(token, task).await;
        let order = order.lock().unwrap().clone();
        // With a prefetch of 1, at most one normal task was taken before the
        // urgent ones were seen.
        let first_urgent = order.iter().position(|k| k == "urgent").unwrap();
        let last_urgent = order.iter().rposition(|k| k == "urgent").unwrap();
        assert!(first_urgent <= 1 && last_urgent <= 5, "{order:?}");
    })
    .await;
}

async fn duplicates_of_a_message_are_processed_once(engines: Engines) {
    let spec = QueueSpec::tasks("once");
    with_pipelines(engines, config(), vec![spec.clone()], |p| async move {
        let calls = Arc::new(AtomicU32::new(0));
        let counted = Arc::clone(&calls);
        let worker = Worker::new(&p).concurrency(1).handle(
            spec.clone(),
            HandlerFn(move |_task: Task| {
                counted.fetch_add(1, Ordering::SeqCst);
                async { Outcome::Done }
            }),
        );
        worker.declare().await.unwrap();
        for _ in 0..20 {
            p.send_task(
                "once",
                &json!({"same": true}),
                Priority::Normal,
                Some("order-42".into()),
            )
            .await
            .unwrap();
        }
        let (stats, token, task) = start(worker);
        assert!(
            stats
                .wait_until(PATIENCE, |s| get(&s.done) + get(&s.duplicates) == 20)
                .await
        );
        stop(token, task).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(get(&stats.duplicates), 19);
    })
    .await;
}

async fn a_handler_that_panics_is_dead_lettered_as_poison(engines: Engines) {
    let spec = QueueSpec::tasks("poison");
    with_pipelines(engines, config(), vec![spec.clone()], |p| async move {
        let calls = Arc::new(AtomicU32::new(0));
        let counted = Arc::clone(&calls);
        let worker = Worker::new(&p).handle(
            spec.clone(),
            HandlerFn(move |_task: Task| {
                counted.fetch_add(1, Ordering::SeqCst);
                async { panic!("the handler meets data it cannot bear") }
            }),
        );
        let (stats, token, task) = start(worker);
        send_when_declared(&p, "poison", &json!({"bad": true}), Priority::Normal, None).await;
        assert!(stats.wait_until(PATIENCE, |s| get(&s.recorded) == 1).await);
        stop(token, task).await;
        assert_eq!(calls.load(Ordering::SeqCst), 3, "max_deliveries = 3");
        assert_eq!(get(&stats.panics), 3);
        assert_eq!(get(&stats.poison), 1);
        let letters = p
            .dead_letters()
            .list(&DeadLetterFilter::default(), 10)
            .await
            .unwrap();
        assert_eq!(letters[0].error_class, "poison");
        assert!(
            letters[0].error.contains("delivered 4 times"),
            "{}",
            letters[0].error
        );
    })
    .await;
}

async fn large_payloads_travel_compressed(engines: Engines) {
    let spec = QueueSpec::tasks("bulky");
    with_pipelines(engines, config(), vec![spec.clone()], |p| async move {
        let worker =
            Worker::new(&p).handle(spec.clone(), HandlerFn(|_t: Task| async { Outcome::Done }));
        worker.declare().await.unwrap();
        let big = json!({"rows": "0123456789".repeat(20_000)});
        p.send_task("bulky", &big, Priority::Normal, None)
            .await
            .unwrap();
        let raw = p
            .peek("bulky")
            .await
            .unwrap()
            .expect("the task waits in its queue");
        assert_eq!(raw.properties.content_encoding.as_deref(), Some("zstd"));
        assert!(
            raw.body.len() < 10_000,
            "{} bytes on the wire",
            raw.body.len()
        );
        let seen = Arc::new(Mutex::new(None));
        let record = Arc::clone(&seen);
        let worker = Worker::new(&p).handle(
            spec.clone(),
            HandlerFn(move |task: Task| {
                let record = Arc::clone(&record);
                async move {
                    *record.lock().unwrap() = Some(task.json::<serde_json::Value>().unwrap());
                    Outcome::Done
                }
            }),
        );
        let (stats, token, task) = start(worker);
        assert!(stats.wait_until(PATIENCE, |s| get(&s.done) == 1).await);
        stop(token, task).await;
        assert_eq!(seen.lock().unwrap().take().unwrap(), big);
    })
    .await;
}

async fn stopping_lets_running_handlers_finish_and_settle(engines: Engines) {
    let spec = QueueSpec::tasks("slow");
    with_pipelines(engines, config(), vec![spec.clone()], |p| async move {
        let started = Arc::new(Notify::new());
        let release = Arc::new(Notify::new());
        let (s, r) = (Arc::clone(&started), Arc::clone(&release));
        let worker = Worker::new(&p).handle(
            spec.clone(),
            HandlerFn(move |_task: Task| {
                let (s, r) = (Arc::clone(&s), Arc::clone(&r));
                async move {
                    let released = r.notified();
                    s.notify_one();
                    released.await;
                    Outcome::Done
                }
            }),
        );
        worker.declare().await.unwrap();
        let (stats, token, task) = start(worker);
        p.send_task("slow", &json!({}), Priority::Normal, None)
            .await
            .unwrap();
        tokio::time::timeout(PATIENCE, started.notified())
            .await
            .expect("the handler starts");
        token.cancel();
        // The worker is stopping; the message is still being handled.
        assert!(!task.is_finished());
        release.notify_one();
        tokio::time::timeout(PATIENCE, task)
            .await
            .expect("the worker stops")
            .unwrap();
        assert_eq!(get(&stats.done), 1, "finished and acknowledged before exit");
        assert_eq!(p.depth("slow").await.unwrap(), 0);
    })
    .await;
}

async fn concurrent_publishers_and_two_workers_handle_every_task_exactly_once(engines: Engines) {
    let spec = QueueSpec::tasks("shared");
    with_pipelines(engines, config(), vec![spec.clone()], |p| async move {
        let seen: Arc<Mutex<BTreeMap<String, u32>>> = Arc::default();
        let handler = |seen: Arc<Mutex<BTreeMap<String, u32>>>| {
            HandlerFn(move |task: Task| {
                let seen = Arc::clone(&seen);
                async move {
                    *seen.lock().unwrap().entry(task.id.clone()).or_default() += 1;
                    Outcome::Done
                }
            })
        };
        let a = Worker::new(&p).handle(spec.clone(), handler(Arc::clone(&seen)));
        let b = Worker::new(&p)
            .with_stats(a.stats())
            .handle(spec.clone(), handler(Arc::clone(&seen)));
        a.declare().await.unwrap();
        let (stats_a, token_a, task_a) = start(a);
        let (_, token_b, task_b) = start(b);
        let mut senders = Vec::new();
        for writer in 0..8 {
            let p = p.clone();
            senders.push(tokio::spawn(async move {
                let mut ids = Vec::new();
                for n in 0..100 {
                    ids.push(
                        p.send_task(
                            "shared",
                            &json!({"w": writer, "n": n}),
                            Priority::Normal,
                            None,
                        )
                        .await
                        .unwrap(),
                    );
                }
                ids
            }));
        }
        let mut sent = Vec::new();
        for sender in senders {
            sent.extend(sender.await.unwrap());
        }
        assert!(stats_a.wait_until(PATIENCE, |s| get(&s.done) == 800).await);
        stop(token_a, task_a).await;
        stop(token_b, task_b).await;
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 800);
        assert!(seen.values().all(|&n| n == 1));
        sent.sort();
        assert_eq!(sent, seen.keys().cloned().collect::<Vec<_>>());
    })
    .await;
}

async fn purge_never_deletes_more_than_asked(engines: Engines) {
    let spec = QueueSpec::tasks("refused");
    with_pipelines(engines, config(), vec![spec.clone()], |p| async move {
        let worker = Worker::new(&p).handle(
            spec.clone(),
            HandlerFn(|_t: Task| async { Outcome::abort("no") }),
        );
        let (stats, token, task) = start(worker);
        for n in 0..10 {
            send_when_declared(&p, "refused", &json!({"n": n}), Priority::Normal, None).await;
        }
        assert!(stats.wait_until(PATIENCE, |s| get(&s.recorded) == 10).await);
        stop(token, task).await;
        let all = DeadLetterFilter::default();
        assert_eq!(p.dead_letters().purge(&all, 3).await.unwrap(), 3);
        assert_eq!(p.dead_letters().count(&all).await.unwrap(), 7);
        let none = DeadLetterFilter {
            queue: Some("elsewhere".into()),
            ..Default::default()
        };
        assert_eq!(p.dead_letters().purge(&none, 100).await.unwrap(), 0);
        assert_eq!(p.dead_letters().purge(&all, 0).await.unwrap(), 0);
        assert_eq!(p.dead_letters().purge(&all, 100).await.unwrap(), 7);
        assert_eq!(p.dead_letters().count(&all).await.unwrap(), 0);
    })
    .await;
}

async fn events_reach_every_queue_bound_to_their_type(engines: Engines) {
    let clicks = QueueSpec::events("clicks", "event.click");
    let everything = QueueSpec::events("audit", "event.*");
    with_pipelines(
        engines,
        config(),
        vec![clicks.clone(), everything.clone()],
        |p| async move {
            let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
            let handler = |seen: Arc<Mutex<Vec<(String, String)>>>| {
                HandlerFn(move |task: Task| {
                    let seen = Arc::clone(&seen);
                    async move {
                        seen.lock()
                            .unwrap()
                            .push((task.queue.clone(), task.routing_key.clone()));
                        Outcome::Done
                    }
                })
            };
            let worker = Worker::new(&p)
                .handle(clicks.clone(), handler(Arc::clone(&seen)))
                .handle(everything.clone(), handler(Arc::clone(&seen)));
            worker.declare().await.unwrap();
            let results = p
                .publish_events(vec![
                    ("event.click".into(), json!({"p": 1}), None),
                    ("event.view".into(), json!({"p": 2}), None),
                    ("other.thing".into(), json!({"p": 3}), None),
                ])
                .await;
            assert!(results[..2].iter().all(|r| r.is_ok()), "{results:?}");
            // No queue is bound for `other.thing`: the broker would drop
            // it, so it is refused rather than reported taken.
            let refused = results[2]
                .as_ref()
                .expect_err("an unroutable event is refused");
            assert_eq!(refused.kind(), strata::ErrorKind::Unavailable, "{refused}");
            assert!(refused.message().contains("other.thing"), "{refused}");
            let (stats, token, task) = start(worker);
            assert!(stats.wait_until(PATIENCE, |s| get(&s.done) == 3).await);
            stop(token, task).await;
            let mut seen = seen.lock().unwrap().clone();
            seen.sort();
            assert_eq!(
                seen,
                vec![
                    ("audit".into(), "event.click".into()),
                    ("audit".into(), "event.view".into()),
                    ("clicks".into(), "event.click".into()),
                ]
            );
        },
    )
    .await;
}

async fn a_task_for_a_queue_nobody_declared_is_an_error(engines: Engines) {
    with_pipelines(engines, config(), vec![], |p| async move {
        let err = p
            .send_task("nowhere", &json!({}), Priority::Normal, None)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert!(err.message().contains("`nowhere`"), "{err}");
    })
    .await;
}

/// Sends a task once the worker has declared the queue (it declares as it
/// starts).
async fn send_when_declared(
    p: &Pipelines,
    queue: &str,
    payload: &serde_json::Value,
    priority: Priority,
    id: Option<String>,
) -> String {
    p.declare(&QueueSpec::tasks(queue)).await.unwrap();
    p.send_task(queue, payload, priority, id).await.unwrap()
}

/// The waits between attempts, on tokio's paused clock: a handler's own
/// delay is kept to the millisecond, and a backoff wait is the one the
/// history records, within the policy's cap.
#[tokio::test(start_paused = true)]
async fn backoff_waits_are_held_by_the_broker_on_the_paused_clock() {
    use strata::engines::document::embedded::{EmbeddedDocumentOptions, EmbeddedDocumentStore};
    use strata::engines::kv::embedded::{EmbeddedKv, EmbeddedKvOptions};
    use strata::engines::queue::embedded::EmbeddedBroker;

    let dir = tempfile::tempdir().unwrap();
    let documents =
        EmbeddedDocumentStore::open(dir.path(), EmbeddedDocumentOptions::default()).unwrap();
    let mut config = config();
    config.retry.base = Duration::from_secs(1);
    config.retry.factor = 2.0;
    config.retry.max_delay = Duration::from_secs(8);
    config.retry.max_attempts = 5;
    let p = Pipelines::with_engines(
        Arc::new(EmbeddedBroker::new()),
        Arc::new(EmbeddedKv::new(EmbeddedKvOptions::default())),
        Arc::new(documents),
        &config,
    )
    .await
    .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    let worker = Worker::new(&p).handle(
        QueueSpec::tasks("timed"),
        HandlerFn(move |task: Task| {
            let record = Arc::clone(&record);
            async move {
                record
                    .lock()
                    .unwrap()
                    .push((tokio::time::Instant::now(), task.history.clone()));
                match task.attempt {
                    1 => Outcome::retry_after(Duration::from_secs(3), "come back in 3s"),
                    // An engine's open circuit: not before its cooldown,
                    // longer than the backoff's cap for attempt 2 (2 s).
                    2 => Outcome::of(Err(strata::Error::new(
                        strata::ErrorKind::Unavailable,
                        "circuit open",
                    )
                    .with_retry_after(Duration::from_secs(5)))),
                    3 => Outcome::retry("backing off"),
                    _ => Outcome::Done,
                }
            }
        }),
    );
    worker.declare().await.unwrap();
    p.send_task("timed", &json!({}), Priority::Normal, None)
        .await
        .unwrap();
    let (stats, token, task) = start(worker);
    assert!(stats.wait_until(PATIENCE * 10, |s| get(&s.done) == 1).await);
    stop(token, task).await;
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 4);
    let gap = |i: usize| seen[i + 1].0 - seen[i].0;
    let ms = |d: Duration| d.as_millis();
    assert_eq!(ms(gap(0)), 3000, "the handler's own delay");
    let history = &seen[3].1;
    assert_eq!(history.len(), 3);
    for (retry, entry) in history.iter().enumerate().skip(1) {
        let recorded = Duration::from_millis(entry.delay_ms.unwrap());
        if retry == 1 {
            assert_eq!(recorded, Duration::from_secs(5), "the circuit's cooldown");
        } else {
            assert!(
                recorded <= config.retry.cap(retry as u32 + 1),
                "{recorded:?}"
            );
        }
        // Alone in its delay queue, a message waits its own delay (the
        // history keeps whole milliseconds; timers round up to one).
        let waited = ms(gap(retry));
        assert!(
            (ms(recorded)..=ms(recorded) + 1).contains(&waited),
            "retry {retry}: waited {waited} ms for {recorded:?}"
        );
    }
}
