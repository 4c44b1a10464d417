//! Two real `strata serve` processes on the full profile, sharing Redis:
//! what one instance changes, the other stops serving once the
//! invalidation has reached it. Each test waits on that event (the
//! `received` count of the other's `GET /v1/cache` backplane), never on a
//! sleep standing in for it.

mod common;

use std::time::Duration;

use serde_json::{Value, json};

use common::serve::{Server, Stack, run_on};

/// The backplane messages `server` has applied so far.
async fn received(server: &Server) -> u64 {
    let answer = server.call("GET", "/v1/cache", None).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    answer.body["backplane"]["received"]
        .as_u64()
        .expect("backplane.received")
}

/// Waits until `server` has applied more than `before` invalidations.
async fn invalidation_arrived(server: &Server, before: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while received(server).await <= before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no invalidation reached the other instance; its log:\n{}",
            server.log()
        );
        tokio::task::yield_now().await;
    }
}

async fn ok(server: &Server, method: &str, path: &str, body: Option<&Value>) -> Value {
    let answer = server.call(method, path, body).await;
    assert!(
        (200..300).contains(&answer.status),
        "{method} {path}: {} {:?}",
        answer.status,
        answer.body
    );
    answer.body
}

#[tokio::test]
async fn an_update_through_one_instance_reaches_the_other() {
    run_on(Stack::full("serving_multi").await, |stack| async move {
        let a = stack.serve(&[]).await;
        let b = stack.serve(&[]).await;

        // A row read through the cache: B caches the config...
        let config = json!({"model_name": "churn", "framework": "sklearn",
            "scorer": {"type": "linear", "version": 1, "view": "user_activity",
                       "weights": {"sessions_7d": 1.0}}});
        ok(&a, "PUT", "/v1/models/churn-m/config", Some(&config)).await;
        let first = ok(&b, "GET", "/v1/models/churn-m/config", None).await;
        assert_eq!(first["scorer"]["version"], 1);
        let again = b.call("GET", "/v1/models/churn-m/config", None).await;
        assert_eq!(again.body["scorer"]["version"], 1);

        // ...A changes it; once B has heard, B never serves version 1.
        let before = received(&b).await;
        let mut changed = config.clone();
        changed["scorer"]["version"] = json!(2);
        changed["scorer"]["weights"]["sessions_7d"] = json!(10.0);
        ok(&a, "PUT", "/v1/models/churn-m/config", Some(&changed)).await;
        invalidation_arrived(&b, before).await;
        for _ in 0..20 {
            let seen = ok(&b, "GET", "/v1/models/churn-m/config", None).await;
            assert_eq!(seen["scorer"]["version"], 2, "B served the old config");
        }

        // Predictions: computed on B, cached, invalidated by A's feature
        // write.
        let view = json!({"entity": "user", "ttl_seconds": 3600,
            "features": [{"name": "sessions_7d", "type": "int"}]});
        ok(&a, "PUT", "/v1/feature-views/user_activity", Some(&view)).await;
        let features = json!({"features": {"sessions_7d": 3}});
        ok(&a, "PUT", "/v1/features/user_activity/u1", Some(&features)).await;
        let predict = json!({"entity": "u1"});
        let computed = ok(&b, "POST", "/v1/models/churn-m/predict", Some(&predict)).await;
        assert_eq!(
            (computed["cached"].clone(), computed["score"].clone()),
            (json!(false), json!(30.0))
        );
        let cached = ok(&b, "POST", "/v1/models/churn-m/predict", Some(&predict)).await;
        assert_eq!(cached["cached"], true);
        let before = received(&b).await;
        let written = ok(&a, "PUT", "/v1/features/user_activity/u1", Some(&features)).await;
        assert_eq!(written["predictions_invalidated"], true);
        invalidation_arrived(&b, before).await;
        let after = ok(&b, "POST", "/v1/models/churn-m/predict", Some(&predict)).await;
        assert_eq!(
            after["cached"], false,
            "B answered from the invalidated prediction"
        );

        // A view's new TTL applies on B at once.
        let old = json!({"features": {"sessions_7d": 4}, "event_time": "2026-01-01T00:00:00Z"});
        let before = received(&b).await;
        ok(&a, "PUT", "/v1/features/user_activity/u2", Some(&old)).await;
        invalidation_arrived(&b, before).await;
        let read = ok(&b, "GET", "/v1/features/user_activity/u2", None).await;
        assert_eq!(
            read["features"]["sessions_7d"]["status"], "stale",
            "older than an hour"
        );
        let mut longer = view.clone();
        longer["ttl_seconds"] = json!(315_360_000);
        let before = received(&b).await;
        ok(&a, "PUT", "/v1/feature-views/user_activity", Some(&longer)).await;
        invalidation_arrived(&b, before).await;
        let described = ok(&b, "GET", "/v1/feature-views/user_activity", None).await;
        assert_eq!(described["ttl_seconds"], 315_360_000);
        let read = ok(&b, "GET", "/v1/features/user_activity/u2", None).await;
        assert_eq!(
            read["features"]["sessions_7d"]["status"], "fresh",
            "the new TTL applies at once"
        );

        a.stop().await;
        b.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_rate_limit_holds_across_instances() {
    run_on(Stack::full("serving_multi").await, |stack| async move {
        let limits = [
            ("STRATA_SERVING__RATE_LIMITS__READ__REQUESTS", "10"),
            ("STRATA_SERVING__RATE_LIMITS__READ__PER", "1h"),
        ];
        let a = stack.serve(&limits).await;
        let b = stack.serve(&limits).await;
        // One client (this test's address), alternating instances: ten
        // reads in all are allowed, whichever instance serves them.
        for i in 0..10 {
            let server = if i % 2 == 0 { &a } else { &b };
            let answer = server.call("GET", "/v1/feature-views", None).await;
            assert_eq!(answer.status, 200, "read {i}: {:?}", answer.body);
            assert_eq!(
                answer.header("ratelimit-remaining"),
                Some((9 - i).to_string().as_str())
            );
        }
        for server in [&a, &b] {
            let refused = server.call("GET", "/v1/leaderboard", None).await;
            assert_eq!(refused.status, 429, "{:?}", refused.body);
            assert_eq!(refused.body["error"]["kind"], "rate_limited");
            let wait: u64 = refused
                .header("retry-after")
                .expect("Retry-After")
                .parse()
                .expect("seconds");
            assert!((1..=360).contains(&wait), "{wait}");
            assert_eq!(refused.header("ratelimit-remaining"), Some("0"));
        }
        // The probes never are, and writes are not limited here.
        assert_eq!(a.call("GET", "/healthz", None).await.status, 200);
        let view = json!({"entity": "user", "ttl_seconds": 60,
            "features": [{"name": "n", "type": "int"}]});
        ok(&a, "PUT", "/v1/feature-views/v", Some(&view)).await;
        a.stop().await;
        b.stop().await;
    })
    .await;
}
