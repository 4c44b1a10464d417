//! A real `strata worker` killed mid-message on RabbitMQ (full profile
//! only): the message is delivered again to another worker and processed
//! exactly once in effect.

mod common;

use std::time::Duration;

use serde_json::{Value, json};

use common::serve::{Stack, run_on};

/// Waits, without sleeping, until `ready` answers true, or panics after
/// `limit` with `what`.
async fn until<F, Fut>(limit: Duration, what: &str, mut ready: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !ready().await {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_worker_killed_mid_message_leaves_it_to_another_exactly_once_in_effect() {
    run_on(Stack::full("worker_process").await, |stack| async move {
        let prefix = format!("k{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        let env = [("STRATA_PIPELINES__PREFIX", prefix.as_str())];
        let api = stack.serve_api_only(&env).await;
        // The first worker hangs once a signup's effects are done, before it
        // acknowledges the message: that is where it is killed.
        let mut first = stack
            .worker(&[
                ("STRATA_PIPELINES__PREFIX", prefix.as_str()),
                ("STRATA_FAILPOINTS", "pipelines.onboarding.after_handler=hang"),
            ])
            .await;
        let answer = api
            .call(
                "POST",
                "/v1/users",
                Some(&json!({"id": "kim", "email": "kim@example.com", "name": "Kim", "city": "Lyon"})),
            )
            .await;
        assert_eq!(answer.status, 202, "{:?}", answer.body);
        until(Duration::from_secs(30), "the first worker onboards kim", || async {
            !stack.sql("SELECT id FROM users WHERE id = 'kim'").await.is_empty()
        })
        .await;
        let done_key = format!("{prefix}:done:onboarding:signup-kim");
        let marker = stack.json(&["kv", "get", &done_key]).await;
        assert_eq!(marker, Value::Null, "not acknowledged yet: {}", first.log());
        first.sigkill().await;

        // Another worker gets the message again and finishes it.
        let second = stack.worker(&env).await;
        until(Duration::from_secs(60), "the second worker settles the signup", || async {
            stack.json(&["kv", "get", &done_key]).await != Value::Null
        })
        .await;
        let users = stack.sql("SELECT id, email FROM users").await;
        assert_eq!(users.len(), 1, "{users:?}");
        let profiles = stack.docs_find("profiles", &json!({"_id": "kim"})).await;
        assert_eq!(profiles.len(), 1);
        assert_eq!(profiles[0]["country_code"], "FR");
        let letters = stack
            .json(&["dlq", "list", "--queue", "onboarding"])
            .await;
        assert_eq!(letters["total"], 0, "{letters}; {}", second.log());
        let queue = format!("{prefix}.onboarding");
        let stats = stack.json(&["queue", "stats", &queue]).await;
        assert_eq!(stats[0]["messages"], 0, "{stats}");
        drop(second);
        drop(api);
        // The test's queues and exchanges go with it.
        let config = stack.full_config().expect("full profile");
        let broker = strata::engines::open_queue(&config).await.unwrap();
        let pipelines = strata::pipelines::PipelinesConfig {
            prefix: prefix.clone(),
            ..Default::default()
        };
        let mut queues = strata::analytics::scenario::Scenario::queues();
        queues.push(strata::pipelines::handlers::read_model_queue());
        let tiers = strata::pipelines::PipelinesConfig::tiers(&pipelines.retry);
        strata::pipelines::Topology::new(&pipelines)
            .delete(broker.as_ref(), &queues, tiers, true)
            .await
            .unwrap();
    })
    .await;
}
