//! Operations that span engines, as durable sagas
//! (`strata::platform::sagas`): registering and removing a model, their
//! record in the relational engine, failures injected at every step and
//! compensation, a request that runs out of time, a driver that dies and is
//! taken over, identical retries, operations on one model excluding each
//! other, many writers at once, and model info degraded rather than failed
//! when an engine is down.
//!
//! Every case runs on the embedded profile and, with `STRATA_TEST_FULL=1`,
//! on the full profile (a fresh PostgreSQL database, MongoDB database and
//! Redis key prefix of its own, removed when the case ends).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use bson::doc;
use strata::config::SagasConfig;
use strata::engines::{Engines, KvStoreExt};
use strata::platform::entities::RunStatus;
use strata::platform::hybrid::{self, migrate};
use strata::platform::registry::{self, NewArtifact, NewDataset, RunOutcome};
use strata::platform::sagas::{
    FaultPoint, Phase, RegisterRun, Registered, Saga, SagaOutcome, SagaState, register,
};
use strata::platform::{Platform, configs};
use strata::retry::RetryPolicy;
use strata::{Error, ErrorKind};

use common::engines::{Env, setup_embedded};
use common::faulty::{FailingDocs, SwitchableKv, with_docs, with_kv};

async fn setup_full() -> Option<Env> {
    common::engines::setup_full("sagas").await
}

/// Quick retries, so that cases that exhaust them end fast.
fn settings() -> SagasConfig {
    SagasConfig {
        retry: RetryPolicy::default()
            .with_delays(Duration::from_millis(1), Duration::from_millis(5))
            .with_max_attempts(3)
            .with_max_elapsed(Duration::from_secs(2)),
        ..SagasConfig::default()
    }
}

/// Settings of a process whose leases run out at once: what another
/// process sees of one that died.
fn expiring() -> SagasConfig {
    SagasConfig {
        lease: Duration::ZERO,
        sweep_interval: Duration::ZERO,
        ..settings()
    }
}

async fn open_platform(engines: &Engines, sagas: SagasConfig) -> Platform {
    Platform::with_engines(engines.clone(), sagas)
        .await
        .expect("open the platform")
}

/// Runs a case with the platform over the case's engines, the datasets
/// `fraud-train-v1` and `recommendation-train-v2` in place.
async fn run_case<C, F>(setup: impl Future<Output = Option<Env>>, case: C)
where
    C: FnOnce(Platform, Engines) -> F,
    F: Future<Output = ()>,
{
    common::engines::run_case(setup, |engines| async move {
        for name in ["fraud-train-v1", "recommendation-train-v2"] {
            registry::create_dataset(
                &engines.relational,
                NewDataset {
                    name: name.into(),
                    total_rows: Some(1000),
                    ..Default::default()
                },
            )
            .await
            .expect("dataset");
        }
        let platform = open_platform(&engines, settings()).await;
        case(platform, engines).await;
    })
    .await;
}

fn request(model_id: &str, framework: &str) -> RegisterRun {
    RegisterRun {
        dataset_name: "fraud-train-v1".into(),
        model_id: model_id.into(),
        model_name: "fraud-detector".into(),
        framework: framework.into(),
        config: doc! {"training": {"optimizer": "adam", "epochs": 50}},
        tags: BTreeMap::from([("team".into(), "risk".into())]),
        started_at: None,
    }
}

fn done<T: std::fmt::Debug>(outcome: strata::Result<SagaOutcome<T>>) -> T {
    match outcome {
        Ok(SagaOutcome::Done(value)) => value,
        other => panic!("expected a finished saga, got {other:?}"),
    }
}

fn pending<T: std::fmt::Debug>(outcome: strata::Result<SagaOutcome<T>>) -> Saga {
    match outcome {
        Ok(SagaOutcome::Pending(saga)) => *saga,
        other => panic!("expected a saga under way, got {other:?}"),
    }
}

async fn register(platform: &Platform, model_id: &str) -> Registered {
    done(
        platform
            .sagas()
            .register_run(request(model_id, "pytorch"), None)
            .await,
    )
}

/// Everything of `model_id` in every engine: (run row, config document).
async fn traces(platform: &Platform, model_id: &str) -> (bool, bool) {
    let row = match platform.registry().run(model_id).await {
        Ok(_) => true,
        Err(e) if e.kind() == ErrorKind::NotFound => false,
        Err(e) => panic!("{e}"),
    };
    let config = match platform.configs().get(model_id).await {
        Ok(_) => true,
        Err(e) if e.kind() == ErrorKind::NotFound => false,
        Err(e) => panic!("{e}"),
    };
    (row, config)
}

/// Asserts that `model_id` is whole in every engine: its row, its config
/// with the registration's fields, and counted among `framework`'s
/// registrations.
async fn assert_whole(platform: &Platform, model_id: &str) {
    let info = platform.models().info(model_id).await.expect("model info");
    assert_eq!(info.run.status, RunStatus::Running);
    assert_eq!(info.dataset.name, "fraud-train-v1");
    let config = info.config.expect("a config document");
    assert_eq!(config["config"]["training"]["optimizer"], "adam");
    assert!(config.get("_id").is_none());
    assert!(info.unavailable.is_empty());
}

/// The latest saga of `model_id`.
async fn saga_of(platform: &Platform, model_id: &str) -> Saga {
    platform
        .sagas()
        .list(Some(model_id), false, 1)
        .await
        .expect("list sagas")
        .into_iter()
        .next()
        .expect("a saga")
}

fn injected(kind: ErrorKind, what: &str) -> Error {
    Error::new(kind, format!("injected failure {what}"))
}

// ---------------------------------------------------------------- register

async fn register_writes_every_engine_and_records_the_saga(platform: Platform, _: Engines) {
    let registered = register(&platform, "fd-1").await;
    assert_eq!(registered.run.model_id, "fd-1");
    assert_eq!(registered.dataset, "fraud-train-v1");
    assert_eq!(registered.framework_runs, 1);
    assert_whole(&platform, "fd-1").await;
    assert_eq!(platform.models().registrations("pytorch").await.unwrap(), 1);

    let saga = platform.sagas().get(&registered.saga_id).await.unwrap();
    assert_eq!(saga.kind, register::KIND);
    assert_eq!(saga.subject, "fd-1");
    assert_eq!(saga.state, SagaState::Completed);
    let steps: Vec<&str> = saga.steps.iter().map(|s| s.step.as_str()).collect();
    assert_eq!(steps, register::STEPS);
    assert_eq!(saga.result.as_ref().unwrap()["run_id"], registered.run.id);
    assert_eq!(saga.error, None);

    // A second model of the same framework counts once more.
    let second = register(&platform, "fd-2").await;
    assert_eq!(second.framework_runs, 2);

    // A missing dataset is refused before any saga begins.
    let missing = RegisterRun {
        dataset_name: "no-such-dataset".into(),
        ..request("fd-3", "pytorch")
    };
    let err = platform
        .sagas()
        .register_run(missing, None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(
        platform
            .sagas()
            .list(Some("fd-3"), false, 5)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(traces(&platform, "fd-3").await, (false, false));
}

async fn an_identical_retry_answers_with_the_first_registration(platform: Platform, _: Engines) {
    let first = register(&platform, "fd-1").await;
    // The same request (its config's keys in another order) is a retry.
    let mut again = request("fd-1", "pytorch");
    again.config = doc! {"training": {"epochs": 50, "optimizer": "adam"}};
    let retried = done(platform.sagas().register_run(again, None).await);
    assert_eq!(retried.run.id, first.run.id);
    assert_eq!(retried.saga_id, first.saga_id);
    assert_eq!(platform.models().registrations("pytorch").await.unwrap(), 1);

    // Another request for the same model_id is a conflict; nothing changes.
    let mut other = request("fd-1", "pytorch");
    other.model_name = "someone-else".into();
    let err = platform
        .sagas()
        .register_run(other, None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert_eq!(err.field(), Some("model_id"));
    assert_whole(&platform, "fd-1").await;
    assert_eq!(platform.models().registrations("pytorch").await.unwrap(), 1);
}

async fn a_failure_at_each_step_leaves_no_orphan(platform: Platform, _: Engines) {
    // One registration that succeeds, to show compensations touch only the
    // failed one.
    register(&platform, "kept").await;
    for &step in register::STEPS {
        let model_id = format!("failed-at-{step}");
        let sagas = platform
            .sagas()
            .with_retry(RetryPolicy::never())
            .with_faults(Arc::new(move |at: FaultPoint| {
                if at.step == step && at.phase == Phase::Apply {
                    Err(injected(ErrorKind::Unavailable, step))
                } else {
                    Ok(())
                }
            }));
        let err = sagas
            .register_run(request(&model_id, "pytorch"), None)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{step}: {err}");
        assert!(err.to_string().contains("injected"), "{err}");
        assert!(err.to_string().contains("nothing of it was kept"), "{err}");
        assert_eq!(traces(&platform, &model_id).await, (false, false), "{step}");
        assert_eq!(
            platform.models().registrations("pytorch").await.unwrap(),
            1,
            "the count is back after a failure at {step}"
        );
        let saga = saga_of(&platform, &model_id).await;
        assert_eq!(saga.state, SagaState::Compensated, "{step}");
        assert!(saga.error.as_deref().unwrap().contains("injected"));
    }
    assert_whole(&platform, "kept").await;
}

async fn a_failure_a_retry_can_help_is_retried(platform: Platform, _: Engines) {
    let failures = Arc::new(AtomicU32::new(0));
    let seen = Arc::clone(&failures);
    let sagas = platform
        .sagas()
        .with_faults(Arc::new(move |at: FaultPoint| {
            if at.step == "config_document" && seen.fetch_add(1, Ordering::SeqCst) == 0 {
                Err(injected(ErrorKind::Unavailable, "once"))
            } else {
                Ok(())
            }
        }));
    done(sagas.register_run(request("flaky", "pytorch"), None).await);
    assert_whole(&platform, "flaky").await;
    assert!(failures.load(Ordering::SeqCst) >= 2, "tried again");
}

async fn a_compensation_that_fails_once_is_retried(platform: Platform, _: Engines) {
    let compensations = Arc::new(AtomicU32::new(0));
    let seen = Arc::clone(&compensations);
    let sagas = platform
        .sagas()
        .with_faults(Arc::new(move |at: FaultPoint| match (at.step, at.phase) {
            ("registration_counter", Phase::Apply) => {
                Err(injected(ErrorKind::Internal, "at the counter"))
            }
            ("config_document", Phase::Compensate) if seen.fetch_add(1, Ordering::SeqCst) == 0 => {
                Err(injected(ErrorKind::Unavailable, "undoing the config"))
            }
            _ => Ok(()),
        }));
    let err = sagas
        .register_run(request("undo-twice", "pytorch"), None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Internal, "{err}");
    assert_eq!(compensations.load(Ordering::SeqCst), 2);
    assert_eq!(traces(&platform, "undo-twice").await, (false, false));
    assert_eq!(
        saga_of(&platform, "undo-twice").await.state,
        SagaState::Compensated
    );
}

async fn a_compensation_that_keeps_failing_stays_open_until_it_succeeds(
    platform: Platform,
    engines: Engines,
) {
    let broken = Arc::new(AtomicBool::new(true));
    let faults = {
        let broken = Arc::clone(&broken);
        Arc::new(move |at: FaultPoint| match (at.step, at.phase) {
            ("registration_counter", Phase::Apply) => {
                Err(injected(ErrorKind::Internal, "at the counter"))
            }
            ("config_document", Phase::Compensate) if broken.load(Ordering::SeqCst) => {
                Err(injected(ErrorKind::Unavailable, "undoing the config"))
            }
            _ => Ok(()),
        })
    };
    // Leases that run out at once stand for "retried later".
    let sagas = open_platform(&engines, expiring())
        .await
        .sagas()
        .with_faults(faults);
    let saga = pending(sagas.register_run(request("stuck", "pytorch"), None).await);
    // The truth: being undone, not finished; undone in reverse order, it
    // is stuck at the document, so the row is still there too.
    assert_eq!(saga.state, SagaState::Compensating);
    assert!(
        saga.error
            .as_deref()
            .unwrap()
            .contains("undoing the config")
    );
    assert_eq!(traces(&platform, "stuck").await, (true, true));
    // While open, the model is locked: a new registration is refused.
    let err = platform
        .sagas()
        .register_run(request("stuck", "xgboost"), None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(err.to_string().contains(&saga.id), "{err}");

    broken.store(false, Ordering::SeqCst);
    let ended = sagas.recover().await.unwrap();
    assert_eq!(ended, vec![saga.id.clone()]);
    assert_eq!(
        platform.sagas().get(&saga.id).await.unwrap().state,
        SagaState::Compensated
    );
    assert_eq!(traces(&platform, "stuck").await, (false, false));
    assert_eq!(platform.models().registrations("pytorch").await.unwrap(), 0);
}

async fn a_request_out_of_time_gets_the_saga_which_still_finishes(platform: Platform, _: Engines) {
    let blocked = Arc::new(AtomicBool::new(true));
    let sagas = {
        let blocked = Arc::clone(&blocked);
        platform
            .sagas()
            .with_retry(
                RetryPolicy::within(Duration::from_secs(20))
                    .with_delays(Duration::from_millis(1), Duration::from_millis(2)),
            )
            .with_faults(Arc::new(move |at: FaultPoint| {
                if at.step == "config_document" && blocked.load(Ordering::SeqCst) {
                    Err(injected(
                        ErrorKind::Unavailable,
                        "the document engine is slow",
                    ))
                } else {
                    Ok(())
                }
            }))
    };
    // The request's time is up at once: it answers with the saga, which
    // goes on without it.
    let deadline = tokio::time::Instant::now();
    let saga = pending(
        sagas
            .register_run(request("slow", "pytorch"), Some(deadline))
            .await,
    );
    assert_eq!(saga.state, SagaState::Running);
    assert_eq!(saga.subject, "slow");
    // The same request again is answered with the same saga.
    let again = pending(
        sagas
            .register_run(request("slow", "pytorch"), Some(deadline))
            .await,
    );
    assert_eq!(again.id, saga.id);

    blocked.store(false, Ordering::SeqCst);
    assert!(sagas.drain(Duration::from_secs(20)).await, "the saga ends");
    let ended = platform.sagas().get(&saga.id).await.unwrap();
    assert_eq!(ended.state, SagaState::Completed, "{ended:?}");
    assert_whole(&platform, "slow").await;
    // Now a retry answers with the finished registration.
    let retried = done(
        platform
            .sagas()
            .register_run(request("slow", "pytorch"), None)
            .await,
    );
    assert_eq!(retried.saga_id, saga.id);
}

/// A process dies while driving a registration (its task panics, its
/// lease runs out); the next process to look takes it over and finishes it.
async fn a_driver_that_dies_is_taken_over_and_finished(platform: Platform, engines: Engines) {
    let dying = open_platform(&engines, expiring())
        .await
        .sagas()
        .with_faults(Arc::new(|at: FaultPoint| {
            if at.step == "registration_counter" {
                panic!("the process driving the saga dies here");
            }
            Ok(())
        }));
    let saga = pending(dying.register_run(request("orphan", "pytorch"), None).await);
    assert_eq!(saga.state, SagaState::Running);
    // Half done: the row and the document are there, the count is not.
    assert_eq!(traces(&platform, "orphan").await, (true, true));
    assert_eq!(platform.models().registrations("pytorch").await.unwrap(), 0);

    // Another process starts: it recovers open sagas whose lease ran out.
    let next = open_platform(&engines, settings()).await;
    let ended = next.sagas().get(&saga.id).await.unwrap();
    assert_eq!(ended.state, SagaState::Completed, "{ended:?}");
    assert_eq!(ended.attempts, 1);
    assert_whole(&next, "orphan").await;
    assert_eq!(next.models().registrations("pytorch").await.unwrap(), 1);
}

async fn after_repeated_takeovers_a_registration_is_undone(_: Platform, engines: Engines) {
    let dying = open_platform(&engines, expiring())
        .await
        .sagas()
        .with_faults(Arc::new(|at: FaultPoint| {
            if at.step == "registration_counter" {
                panic!("dies again");
            }
            Ok(())
        }));
    let saga = pending(dying.register_run(request("cursed", "pytorch"), None).await);
    let giving_up = SagasConfig {
        max_takeovers: 0,
        ..settings()
    };
    let next = open_platform(&engines, giving_up).await;
    let ended = next.sagas().get(&saga.id).await.unwrap();
    assert_eq!(ended.state, SagaState::Compensated, "{ended:?}");
    assert_eq!(traces(&next, "cursed").await, (false, false));
}

/// A driver stalled past its lease (here inside its config write) is taken
/// over by its own process's sweep, which undoes the registration. When it
/// wakes it must write nothing more of the saga: with the process's name as
/// its only guard, it would record its steps over the undo and mark the
/// registration completed, its run row gone.
async fn a_stalled_driver_taken_over_by_its_own_process_stops(
    platform: Platform,
    engines: Engines,
) {
    // Read from the engines, past every cache.
    async fn stored(engines: &Engines, model_id: &str) -> (bool, bool) {
        let row = registry::run_by_model_id(&engines.relational, model_id).await;
        let config = configs::config_of(engines.documents.as_ref(), model_id).await;
        (row.is_ok(), config.unwrap().is_some())
    }

    let stalling = FailingDocs::stalling(Arc::clone(&engines.documents), configs::MODEL_CONFIGS);
    let undoing = SagasConfig {
        max_takeovers: 0,
        ..expiring()
    };
    let process = open_platform(&with_docs(&engines, stalling.clone()), undoing).await;
    let sagas = process.sagas();
    let saga = pending(
        sagas
            .register_run(
                request("stalled", "pytorch"),
                Some(tokio::time::Instant::now()),
            )
            .await,
    );
    stalling.stalled().await;
    assert_eq!(stored(&engines, "stalled").await, (true, false));

    // Its lease has run out: the same process's sweep takes it over.
    assert_eq!(sagas.recover().await.unwrap(), vec![saga.id.clone()]);
    let undone = platform.sagas().get(&saga.id).await.unwrap();
    assert_eq!(undone.state, SagaState::Compensated, "{undone:?}");
    assert_eq!(stored(&engines, "stalled").await, (false, false));

    // The stalled driver's write lands; there it stops.
    stalling.release();
    assert!(
        sagas.drain(Duration::from_secs(20)).await,
        "the driver ends"
    );
    let ended = platform.sagas().get(&saga.id).await.unwrap();
    assert_eq!(ended.state, SagaState::Compensated, "{ended:?}");
    assert_eq!(ended.steps, undone.steps);
    assert_eq!(platform.models().registrations("pytorch").await.unwrap(), 0);
    // What it wrote after the undo is a late write, which the sweep removes.
    assert_eq!(stored(&engines, "stalled").await, (false, true));
    assert_eq!(platform.sagas().remove_late_writes().await.unwrap(), 1);
    assert_eq!(stored(&engines, "stalled").await, (false, false));
}

/// With the key-value engine down, the sweep for late writes still removes
/// the late config document, and says it failed; the counter field goes
/// with the next sweep.
async fn the_late_write_sweep_goes_on_with_the_kv_engine_down(
    platform: Platform,
    engines: Engines,
) {
    undone_with_late_writes(&platform, &engines, "late").await;
    assert_eq!(platform.models().registrations("pytorch").await.unwrap(), 1);
    let switch = SwitchableKv::new(Arc::clone(&engines.kv));
    let kv_down = open_platform(&with_kv(&engines, switch.clone()), settings()).await;
    switch.set_down(true);
    let err = kv_down.sagas().remove_late_writes().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    let docs = engines.documents.as_ref();
    assert!(configs::config_of(docs, "late").await.unwrap().is_none());
    assert_eq!(platform.models().registrations("pytorch").await.unwrap(), 1);

    assert_eq!(platform.sagas().remove_late_writes().await.unwrap(), 1);
    assert_eq!(platform.models().registrations("pytorch").await.unwrap(), 0);
}

/// A config write whose answer was lost, applied by the server only after
/// the registration was undone, is removed by the sweep for late writes,
/// within its window only, and no other registration's document is; so is
/// a counter field set late.
/// A registration of `model_id` undone because its config write timed
/// out, whose write then lands, and whose counter field is set after the
/// undo too (a driver that lost its lease mid-HSET).
async fn undone_with_late_writes(platform: &Platform, engines: &Engines, model_id: &str) {
    let late = FailingDocs::holding(Arc::clone(&engines.documents), &[configs::MODEL_CONFIGS]);
    let held = open_platform(&with_docs(engines, late.clone()), settings()).await;
    let err = held
        .sagas()
        .register_run(request(model_id, "pytorch"), None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    let undone = saga_of(platform, model_id).await;
    assert_eq!(undone.state, SagaState::Compensated);
    let docs = engines.documents.as_ref();
    assert!(configs::config_of(docs, model_id).await.unwrap().is_none());

    assert_eq!(late.land().await, 1, "the held write lands");
    assert!(configs::config_of(docs, model_id).await.unwrap().is_some());
    engines
        .kv
        .hset(
            &register::registrations_key("pytorch"),
            vec![(undone.id, "late".into())],
        )
        .await
        .unwrap();
}

async fn a_config_write_landing_after_the_undo_is_removed(platform: Platform, engines: Engines) {
    register(&platform, "kept").await;
    undone_with_late_writes(&platform, &engines, "late").await;
    let docs = engines.documents.as_ref();
    assert_eq!(platform.models().registrations("pytorch").await.unwrap(), 2);
    // Read (and so cached) before the sweep, which must drop it.
    assert!(platform.configs().get("late").await.is_ok());
    let closed_window = SagasConfig {
        late_write_window: Duration::ZERO,
        ..settings()
    };
    let outside = open_platform(&engines, closed_window).await;
    assert_eq!(outside.sagas().remove_late_writes().await.unwrap(), 0);
    assert!(configs::config_of(docs, "late").await.unwrap().is_some());
    assert_eq!(platform.models().registrations("pytorch").await.unwrap(), 2);

    assert_eq!(platform.sagas().remove_late_writes().await.unwrap(), 2);
    assert!(configs::config_of(docs, "late").await.unwrap().is_none());
    assert_eq!(platform.models().registrations("pytorch").await.unwrap(), 1);
    assert_eq!(platform.sagas().remove_late_writes().await.unwrap(), 0);
    assert_whole(&platform, "kept").await;
    assert_eq!(traces(&platform, "late").await, (false, false));
}

// ---------------------------------------------------------------- unregister

async fn unregister_removes_a_model_from_every_engine(platform: Platform, engines: Engines) {
    register(&platform, "fd-1").await;
    register(&platform, "fd-2").await;
    platform
        .migration()
        .runs_to_docs(
            migrate::MigrateOptions {
                batch: 10,
                ..Default::default()
            },
            &|_| {},
        )
        .await
        .unwrap();

    assert!(done(platform.sagas().unregister_run("fd-1", None).await));
    assert_eq!(traces(&platform, "fd-1").await, (false, false));
    let copies = engines
        .documents
        .count(migrate::MIGRATED, doc! {"model_id": "fd-1"})
        .await
        .unwrap();
    assert_eq!(copies, 0, "migrated copy left");
    assert_eq!(
        platform.models().registrations("pytorch").await.unwrap(),
        2,
        "the count counts registrations made"
    );
    assert!(platform.migration().verify().await.unwrap().is_clean());
    let saga = saga_of(&platform, "fd-1").await;
    assert_eq!(saga.kind, "unregister_run");
    assert_eq!(saga.state, SagaState::Completed);
    // Removing again: nothing there, no saga needed.
    assert!(!done(platform.sagas().unregister_run("fd-1", None).await));

    // A run with artifacts is refused, and nothing is removed.
    let run = registry::run_by_model_id(&engines.relational, "fd-2")
        .await
        .unwrap();
    registry::create_artifact(
        &engines.relational,
        NewArtifact {
            run_id: run.id,
            uri: "file:///fd-2".into(),
            format: "onnx".into(),
            size_bytes: 1,
            checksum: "c".into(),
        },
    )
    .await
    .unwrap();
    let err = platform
        .sagas()
        .unregister_run("fd-2", None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(err.to_string().contains("artifact"), "{err}");
    assert_eq!(traces(&platform, "fd-2").await, (true, true));

    // Leftover documents without a row (from before sagas) are cleaned up.
    configs::insert_config(
        engines.documents.as_ref(),
        doc! {"model_id": "ghost", "model_name": "g", "framework": "f"},
    )
    .await
    .unwrap();
    assert!(!done(platform.sagas().unregister_run("ghost", None).await));
    assert_eq!(traces(&platform, "ghost").await, (false, false));
}

async fn a_removal_cut_short_is_finished_by_the_next_process(platform: Platform, engines: Engines) {
    register(&platform, "doomed").await;
    let dying = open_platform(&engines, expiring())
        .await
        .sagas()
        .with_faults(Arc::new(|at: FaultPoint| {
            if at.step == "config_document" {
                panic!("dies after the row is gone");
            }
            Ok(())
        }));
    let saga = pending(dying.unregister_run("doomed", None).await);
    assert_eq!(traces(&platform, "doomed").await, (false, true));
    let next = open_platform(&engines, settings()).await;
    assert_eq!(
        next.sagas().get(&saga.id).await.unwrap().state,
        SagaState::Completed
    );
    assert_eq!(traces(&next, "doomed").await, (false, false));
}

async fn operations_on_one_model_exclude_each_other(platform: Platform, _: Engines) {
    let blocked = Arc::new(AtomicBool::new(true));
    let sagas = {
        let blocked = Arc::clone(&blocked);
        platform
            .sagas()
            .with_retry(
                RetryPolicy::within(Duration::from_secs(20))
                    .with_delays(Duration::from_millis(1), Duration::from_millis(2)),
            )
            .with_faults(Arc::new(move |at: FaultPoint| {
                if at.step == "registration_counter" && blocked.load(Ordering::SeqCst) {
                    Err(injected(ErrorKind::Unavailable, "the counter is slow"))
                } else {
                    Ok(())
                }
            }))
    };
    let now = tokio::time::Instant::now();
    let saga = pending(
        sagas
            .register_run(request("busy", "pytorch"), Some(now))
            .await,
    );
    let err = platform
        .sagas()
        .unregister_run("busy", None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert!(err.to_string().contains(&saga.id), "{err}");
    blocked.store(false, Ordering::SeqCst);
    assert!(sagas.drain(Duration::from_secs(20)).await);
    assert!(done(platform.sagas().unregister_run("busy", None).await));
}

// ---------------------------------------------------------------- load

/// Eight writers, each registering and removing its own models and moving
/// an alias, hundreds of operations in all: every one succeeds, and the
/// engines agree afterwards.
async fn concurrent_writers_all_succeed_and_agree(platform: Platform, engines: Engines) {
    const WRITERS: usize = 8;
    const ROUNDS: usize = 15;
    // An artifact for the alias the writers move back and forth.
    register(&platform, "aliased").await;
    let run = registry::run_by_model_id(&engines.relational, "aliased")
        .await
        .unwrap();
    let artifact = registry::create_artifact(
        &engines.relational,
        NewArtifact {
            run_id: run.id,
            uri: "file:///aliased".into(),
            format: "onnx".into(),
            size_bytes: 1,
            checksum: "c".into(),
        },
    )
    .await
    .unwrap();
    let alias: registry::aliases::AliasRef = "fraud-detector@champion".parse().unwrap();
    let tasks = (0..WRITERS).map(|w| {
        let platform = platform.clone();
        let alias = alias.clone();
        tokio::spawn(async move {
            let mut operations = 0;
            for r in 0..ROUNDS {
                let model_id = format!("w{w}-r{r}");
                let framework = ["pytorch", "xgboost"][r % 2];
                done(
                    platform
                        .sagas()
                        .register_run(request(&model_id, framework), None)
                        .await,
                );
                platform
                    .registry()
                    .move_alias(&alias, artifact.id, &format!("writer-{w}"), None)
                    .await
                    .unwrap_or_else(|e| panic!("move alias: {e}"));
                if r % 3 != 0 {
                    platform
                        .registry()
                        .complete_run(
                            &model_id,
                            RunOutcome {
                                status: RunStatus::Completed,
                                accuracy: Some(0.9),
                                loss: None,
                                training_time_seconds: Some(10),
                                completed_at: None,
                            },
                        )
                        .await
                        .unwrap_or_else(|e| panic!("complete {model_id}: {e}"));
                    assert!(done(platform.sagas().unregister_run(&model_id, None).await));
                    operations += 4;
                } else {
                    operations += 2;
                }
            }
            operations
        })
    });
    let mut operations = 0;
    for task in futures::future::join_all(tasks).await {
        operations += task.expect("a writer panicked");
    }
    assert!(operations >= 300, "{operations} operations");

    // Kept: the models of rounds 0, 3, 6, ... of each writer, whole.
    let kept: Vec<String> = (0..WRITERS)
        .flat_map(|w| {
            (0..ROUNDS)
                .filter(|r| r % 3 == 0)
                .map(move |r| format!("w{w}-r{r}"))
        })
        .collect();
    for model_id in &kept {
        let info = platform.models().info(model_id).await.unwrap();
        assert!(info.config.is_some(), "{model_id} lost its config");
    }
    for w in 0..WRITERS {
        for r in (0..ROUNDS).filter(|r| r % 3 != 0) {
            assert_eq!(
                traces(&platform, &format!("w{w}-r{r}")).await,
                (false, false)
            );
        }
    }
    let open = platform.sagas().list(None, true, 100).await.unwrap();
    assert!(open.is_empty(), "open sagas left: {open:?}");
    let total = platform.models().registrations("pytorch").await.unwrap()
        + platform.models().registrations("xgboost").await.unwrap();
    assert_eq!(total as usize, WRITERS * ROUNDS + 1);
    let configs = engines
        .documents
        .count(configs::MODEL_CONFIGS, doc! {})
        .await
        .unwrap();
    assert_eq!(
        configs as usize,
        kept.len() + 1,
        "one config per kept model"
    );
}

// ---------------------------------------------------------------- model info

async fn model_info_gathers_every_engine(platform: Platform, engines: Engines) {
    register(&platform, "info-1").await;
    let key = hybrid::model_counters_key("info-1");
    engines.kv.hincr_by(&key, "predictions", 42).await.unwrap();
    engines.kv.hincr_by(&key, "cache_hits", 7).await.unwrap();
    let info = platform.models().info("info-1").await.unwrap();
    assert_eq!(info.run.model_id, "info-1");
    assert_eq!(info.dataset.name, "fraud-train-v1");
    let config = info.config.clone().unwrap();
    assert_eq!(config["framework"], "pytorch");
    assert_eq!(config["config"]["training"]["epochs"], 50);
    assert_eq!(
        info.counters,
        Some(BTreeMap::from([
            ("cache_hits".into(), 7),
            ("predictions".into(), 42)
        ]))
    );
    assert!(!info.is_degraded());
    let err = platform.models().info("nobody").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(err.field(), Some("model_id"));
}

async fn model_info_is_degraded_not_failed_when_an_engine_is_down(
    platform: Platform,
    engines: Engines,
) {
    register(&platform, "partial").await;
    let kv = SwitchableKv::new(Arc::clone(&engines.kv));
    let down = with_kv(&engines, kv.clone());
    let degraded = Platform::with_engines(down, settings()).await.unwrap();
    kv.set_down(true);
    let info = degraded.models().info("partial").await.unwrap();
    assert_eq!(info.unavailable, ["kv"]);
    assert_eq!(info.counters, None);
    assert!(info.config.is_some());

    let docs_down = with_docs(
        &engines,
        FailingDocs::reads_too(Arc::clone(&engines.documents)),
    );
    let degraded = Platform::with_engines(docs_down, settings()).await.unwrap();
    let info = degraded.models().info("partial").await.unwrap();
    assert_eq!(info.unavailable, ["documents"]);
    assert_eq!(info.config, None);
    assert_eq!(info.counters, Some(BTreeMap::new()));
}

macro_rules! all_cases {
    ($backend:ident, $setup:expr) => {
        run_cases!(
            $backend, $setup;
            register_writes_every_engine_and_records_the_saga,
            an_identical_retry_answers_with_the_first_registration,
            a_failure_at_each_step_leaves_no_orphan,
            a_config_write_landing_after_the_undo_is_removed,
            the_late_write_sweep_goes_on_with_the_kv_engine_down,
            a_stalled_driver_taken_over_by_its_own_process_stops,
            a_failure_a_retry_can_help_is_retried,
            a_compensation_that_fails_once_is_retried,
            a_compensation_that_keeps_failing_stays_open_until_it_succeeds,
            a_request_out_of_time_gets_the_saga_which_still_finishes,
            a_driver_that_dies_is_taken_over_and_finished,
            after_repeated_takeovers_a_registration_is_undone,
            unregister_removes_a_model_from_every_engine,
            a_removal_cut_short_is_finished_by_the_next_process,
            operations_on_one_model_exclude_each_other,
            concurrent_writers_all_succeed_and_agree,
            model_info_gathers_every_engine,
            model_info_is_degraded_not_failed_when_an_engine_is_down,
        );
    };
}

all_cases!(embedded, setup_embedded());
all_cases!(full, setup_full());
