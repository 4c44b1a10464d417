//! Customers and analytics on both profiles: one case list run on the
//! embedded engines and, with `STRATA_TEST_FULL=1`, on PostgreSQL +
//! MongoDB + Redis.

mod common;

use std::collections::BTreeSet;

use chrono::{DateTime, TimeZone, Utc};
use strata::ErrorKind;
use strata::analytics::population::{self, seed_population};
use strata::analytics::{Analytics, Segment};
use strata::config::{AnalyticsConfig, SagasConfig};
use strata::engines::Engines;
use strata::platform::Platform;
use strata::platform::customers::{Created, NewUser, Order};

use common::engines::{run_case, setup_embedded, setup_full};

macro_rules! all_cases {
    ($backend:ident, $setup:expr) => {
        run_cases!($backend, $setup;
            cities_resolve_in_any_case_with_their_country,
            create_user_is_idempotent_and_refuses_a_taken_email,
            bad_input_names_its_field,
            record_order_is_idempotent_under_concurrent_writers,
            profile_and_revenue_by_country_join_users_to_countries,
            the_models_find_the_planted_signal_and_the_report_is_the_same_everywhere,
            no_orders_is_not_found,
        );
    };
}

all_cases!(embedded, setup_embedded());
all_cases!(full, setup_full("analytics"));

async fn platform(engines: &Engines) -> Platform {
    Platform::with_engines(engines.clone(), SagasConfig::default())
        .await
        .expect("open the platform")
}

fn at(day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, day, 12, 0, 0).unwrap()
}

fn user(id: &str, email: &str, city: &str) -> NewUser {
    NewUser {
        id: id.into(),
        email: email.into(),
        name: format!("User {id}"),
        city: city.into(),
        source: "organic".into(),
        signed_up_at: at(1),
    }
}

fn order(id: &str, user_id: &str, amount: f64, day: u32) -> Order {
    Order {
        id: id.into(),
        user_id: user_id.into(),
        product_id: "p-1".into(),
        category: "books".into(),
        amount,
        ordered_at: at(day),
    }
}

async fn cities_resolve_in_any_case_with_their_country(engines: Engines) {
    let platform = platform(&engines).await;
    let customers = platform.customers();
    let munich = customers.resolve_city("  mUNICH ").await.unwrap().unwrap();
    assert_eq!(munich.city, "Munich");
    assert_eq!(munich.country_code, "DE");
    assert_eq!(munich.country, "Germany");
    assert_eq!(customers.resolve_city("Atlantis").await.unwrap(), None);
}

async fn create_user_is_idempotent_and_refuses_a_taken_email(engines: Engines) {
    let platform = platform(&engines).await;
    let customers = platform.customers();
    let ada = user("u-1", "Ada@Example.com", "London");
    assert_eq!(
        customers.create_user(ada.clone()).await.unwrap(),
        Created::Created
    );
    assert_eq!(
        customers.create_user(ada.clone()).await.unwrap(),
        Created::AlreadyExists
    );
    // The same email in another case is the same email.
    let mut again = ada.clone();
    again.email = "ada@example.COM".into();
    assert_eq!(
        customers.create_user(again).await.unwrap(),
        Created::AlreadyExists
    );

    let taken = customers
        .create_user(user("u-2", "ada@example.com", "Paris"))
        .await
        .unwrap_err();
    assert_eq!(taken.kind(), ErrorKind::Conflict);
    assert_eq!(taken.field(), Some("email"));
    // Nothing of the refused user was written: no user, no address.
    assert_eq!(customers.profile("u-2").await.unwrap(), None);
    assert_eq!(customers.counts().await.unwrap(), (1, 0));

    let mut moved = ada.clone();
    moved.city = "Paris".into();
    let other = customers.create_user(moved).await.unwrap_err();
    assert_eq!(other.kind(), ErrorKind::Conflict);
    assert_eq!(other.field(), Some("id"));
}

async fn bad_input_names_its_field(engines: Engines) {
    let platform = platform(&engines).await;
    let customers = platform.customers();
    let cases = [
        (user("u-1", "not-an-email", "London"), "email"),
        (user("u 1", "a@b.io", "London"), "id"),
        (user("u-1", "a@b.io", "Atlantis"), "city"),
        (
            NewUser {
                name: "  ".into(),
                ..user("u-1", "a@b.io", "London")
            },
            "name",
        ),
    ];
    for (input, field) in cases {
        let error = customers.create_user(input).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidInput, "{field}: {error}");
        assert_eq!(error.field(), Some(field), "{error}");
    }
    let error = customers
        .record_order(order("o-1", "u-1", f64::NAN, 2))
        .await
        .unwrap_err();
    assert_eq!(error.field(), Some("amount"));
    assert_eq!(customers.counts().await.unwrap(), (0, 0));
}

async fn record_order_is_idempotent_under_concurrent_writers(engines: Engines) {
    let platform = platform(&engines).await;
    let customers = platform.customers().clone();
    customers
        .create_user(user("u-1", "a@b.io", "Tokyo"))
        .await
        .unwrap();
    // 8 writers, 60 orders each: 20 shared by every writer, 40 their own.
    let mut tasks = Vec::new();
    for writer in 0..8 {
        let customers = customers.clone();
        tasks.push(tokio::spawn(async move {
            let mut added = 0;
            for i in 0..60 {
                let id = if i % 3 == 0 {
                    format!("shared-{i}")
                } else {
                    format!("own-{writer}-{i}")
                };
                if customers
                    .record_order(order(&id, "u-1", 1.5, 1 + (i % 28)))
                    .await
                    .unwrap()
                {
                    added += 1;
                }
            }
            added
        }));
    }
    let mut added = 0;
    for task in tasks {
        added += task.await.unwrap();
    }
    assert_eq!(added, 20 + 8 * 40);
    assert_eq!(customers.counts().await.unwrap(), (1, 20 + 8 * 40));
    let profile = customers.profile("u-1").await.unwrap().unwrap();
    assert_eq!(profile.orders, 340);
    assert!((profile.revenue - 340.0 * 1.5).abs() < 1e-9);
    // A batch of the same orders adds nothing.
    let again: Vec<Order> = (0..60)
        .filter(|i| i % 3 == 0)
        .map(|i| order(&format!("shared-{i}"), "u-1", 1.5, 1))
        .collect();
    assert_eq!(customers.record_orders(&again).await.unwrap(), 0);
    // An order of nobody is a conflict.
    let orphan = customers
        .record_order(order("o-x", "nobody", 1.0, 2))
        .await
        .unwrap_err();
    assert_eq!(orphan.kind(), ErrorKind::Conflict);
}

async fn profile_and_revenue_by_country_join_users_to_countries(engines: Engines) {
    let platform = platform(&engines).await;
    let customers = platform.customers();
    for (id, city) in [
        ("u-1", "Berlin"),
        ("u-2", "munich"),
        ("u-3", "Lyon"),
        ("u-4", "Rome"),
    ] {
        customers
            .create_user(user(id, &format!("{id}@shop.io"), city))
            .await
            .unwrap();
    }
    let orders = vec![
        order("o-1", "u-1", 10.25, 2),
        order("o-2", "u-1", 4.75, 5),
        order("o-3", "u-2", 20.0, 3),
        order("o-4", "u-3", 7.5, 4),
    ];
    assert_eq!(customers.record_orders(&orders).await.unwrap(), 4);
    let profile = customers.profile("u-1").await.unwrap().unwrap();
    assert_eq!(profile.email, "u-1@shop.io");
    assert_eq!(profile.city.country_code, "DE");
    assert_eq!(profile.orders, 2);
    assert!((profile.revenue - 15.0).abs() < 1e-9);
    assert_eq!(profile.last_order_at, Some(at(5)));
    let idle = customers.profile("u-4").await.unwrap().unwrap();
    assert_eq!(
        (idle.orders, idle.revenue, idle.last_order_at),
        (0, 0.0, None)
    );

    let by_country = customers.revenue_by_country().await.unwrap();
    let summary: Vec<(String, i64, i64, f64)> = by_country
        .iter()
        .map(|c| (c.country_code.clone(), c.customers, c.orders, c.revenue))
        .collect();
    assert_eq!(
        summary,
        vec![("DE".into(), 2, 3, 35.0), ("FR".into(), 1, 1, 7.5)]
    );

    let history = customers.customer_history(at(4)).await.unwrap();
    let ids: BTreeSet<&str> = history.iter().map(|h| h.user_id.as_str()).collect();
    assert_eq!(ids.len(), 4);
    let u1 = history.iter().find(|h| h.user_id == "u-1").unwrap();
    assert_eq!((u1.orders, u1.last_order_at), (1, Some(at(2))));
    assert_eq!(customers.latest_order_at().await.unwrap(), Some(at(5)));
}

async fn the_models_find_the_planted_signal_and_the_report_is_the_same_everywhere(
    engines: Engines,
) {
    let platform = platform(&engines).await;
    let seeded = seed_population(&platform, 400, 20_000, 42, &|_| {})
        .await
        .unwrap();
    assert_eq!((seeded.users_added, seeded.events_added), (400, 20_000));
    // Seeding again adds nothing.
    let again = seed_population(&platform, 400, 20_000, 42, &|_| {})
        .await
        .unwrap();
    assert_eq!(
        (again.users_added, again.events_added, again.orders_added),
        (0, 0, 0)
    );
    assert_eq!(
        engines
            .documents
            .count(population::EVENTS, bson::doc! {})
            .await
            .unwrap(),
        20_000
    );

    let analytics = Analytics::new(&platform, AnalyticsConfig::default());
    assert_eq!(analytics.load().await.unwrap(), None);
    let trained = analytics.train().await.unwrap();
    let report = &trained.report;

    let churn = &report.churn;
    let (auc, recency) = (churn.auc.unwrap(), churn.recency_auc.unwrap());
    assert!(auc > 0.7, "churn AUC {auc}");
    assert!(auc > recency, "churn AUC {auc} vs recency alone {recency}");
    let recs = &report.recommendations;
    assert!(
        recs.precision > recs.popularity_precision,
        "precision@10 {} vs popularity {}",
        recs.precision,
        recs.popularity_precision
    );

    let (users, orders) = platform.customers().counts().await.unwrap();
    assert_eq!(report.users, users);
    assert_eq!(report.orders, orders);
    assert_eq!(report.segments.iter().map(|s| s.users).sum::<i64>(), users);
    let by_country: f64 = report.countries.iter().map(|c| c.revenue).sum();
    assert!(
        (by_country - report.revenue).abs() < 0.01,
        "{by_country} vs {}",
        report.revenue
    );
    let by_segment: f64 = report.segments.iter().map(|s| s.revenue).sum();
    assert!((by_segment - report.revenue).abs() < 0.01);

    // The stored model reads back equal, and scores a customer.
    assert_eq!(analytics.load().await.unwrap(), Some(trained.model.clone()));
    let scores = analytics.score_user("u-000001").await.unwrap();
    assert!((0.0..=1.0).contains(&scores.churn_probability));
    assert_eq!(scores.recommendations.len(), 10);
    assert!(Segment::ALL.contains(&scores.segment));
    let unknown = analytics.score_user("u-999999").await.unwrap_err();
    assert_eq!(unknown.kind(), ErrorKind::NotFound);

    // One snapshot for both profiles.
    insta::assert_snapshot!("report", report.rounded(3).render());
}

async fn no_orders_is_not_found(engines: Engines) {
    let platform = platform(&engines).await;
    let analytics = Analytics::new(&platform, AnalyticsConfig::default());
    assert_eq!(
        analytics.evaluate().await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        analytics.score_user("u-000001").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
}
