//! Section 10: user onboarding through the pipeline: a valid signup
//! onboarded (SQL user and address, profile, features, first prediction
//! task), a bad email dead-lettered with its reason and history.

use super::Out;
use super::pipelines::DemoPipelines;
use crate::analytics::onboarding::{self, Signup};
use crate::cli::output;
use crate::error::{Error, Result};
use crate::pipelines::{DeadLetterFilter, WorkerStats};
use crate::platform::Platform;

/// The user onboarded, `ada-<run>`: sections 11 and 12 use it too.
pub(super) fn ada(demo: &DemoPipelines) -> String {
    format!("ada-{}", demo.run)
}

pub(super) async fn section(
    platform: &Platform,
    demo: &DemoPipelines,
    out: &mut Out<'_>,
) -> Result<()> {
    let started = out.section(
        10,
        "Pipeline: user onboarding",
        "A signup is published as `user.signup` once the broker confirmed it; the onboarding \
         consumer validates it, stores the user and the address in one SQL transaction, writes \
         the profile document, the initial features and the cached profile, and queues the \
         first prediction task. Bad data is never retried: it goes to the dead letters with \
         its reason.",
    )?;
    let run = &demo.run;
    let signups = [
        Signup {
            id: Some(ada(demo)),
            email: format!("ada.{run}@example.com"),
            name: "Ada Lovelace".into(),
            city: "London".into(),
            source: Some("demo".into()),
        },
        Signup {
            id: Some(format!("bob-{run}")),
            email: "bob.at.example.com".into(),
            name: "Bob Stone".into(),
            city: "Paris".into(),
            source: Some("demo".into()),
        },
    ];
    out.step("Two signups published (POST /v1/users answers 202 at this point)")?;
    let mut table = output::table(&["user", "email", "city", "published as"]);
    for signup in signups {
        let row = vec![
            demo.shown(signup.id.as_deref().unwrap_or("-")),
            demo.shown(&signup.email),
            signup.city.clone(),
            "user.signup".to_owned(),
        ];
        onboarding::submit(&demo.pipelines, signup).await?;
        table.add_row(row);
    }
    out.table(table)?;

    // Three messages settle: the two signups and the prediction task the
    // valid one queues (which has no model to score with yet on fresh
    // engines, so it may be dead-lettered too); every dead letter is then
    // moved into the document engine.
    demo.wait("the two signups", |s| {
        let done = WorkerStats::get(&s.done);
        let dead = WorkerStats::get(&s.dead);
        done >= 1 && done + dead >= 3 && WorkerStats::get(&s.recorded) >= dead
    })
    .await?;

    out.step("The user onboarded: the profile in one SQL statement (users, addresses, cities, countries, orders)")?;
    let profile = platform
        .customers()
        .profile(&ada(demo))
        .await?
        .ok_or_else(|| Error::internal("the demo's signup was not onboarded"))?;
    let mut table = output::table(&["field", "value"]);
    for (field, value) in [
        ("id", demo.shown(&profile.id)),
        ("name", profile.name.clone()),
        ("email", demo.shown(&profile.email)),
        ("source", profile.source.clone()),
        ("city", profile.city.city.clone()),
        (
            "country",
            format!("{} ({})", profile.city.country, profile.city.country_code),
        ),
        ("orders", profile.orders.to_string()),
        ("revenue", format!("{:.2}", profile.revenue)),
    ] {
        table.add_row(vec![field.to_owned(), value]);
    }
    out.table(table)?;

    out.step("The bad signup, in the dead letters (strata dlq list --queue onboarding)")?;
    let letters = demo.dead_letters("onboarding").await?;
    let Some(letter) = letters.first() else {
        return Err(Error::internal(
            "the demo's bad signup is not in the dead letters",
        ));
    };
    let mut table = output::table(&["message", "routing key", "error class", "attempts", "error"]);
    table.add_row(vec![
        demo.shown(&letter.message_id),
        letter.routing_key.clone(),
        letter.error_class.clone(),
        letter.attempts.to_string(),
        letter.error.clone(),
    ]);
    out.table(table)?;
    let mut table = output::table(&["attempt", "outcome", "error"]);
    for attempt in &letter.history {
        table.add_row(vec![
            attempt.attempt.to_string(),
            attempt.outcome.clone(),
            attempt.error.clone(),
        ]);
    }
    out.line("Its history (strata dlq show ID):")?;
    out.table(table)?;
    let dry = demo
        .pipelines
        .replay(
            &DeadLetterFilter {
                ids: Some(vec![letter.id.clone()]),
                ..Default::default()
            },
            1,
            0,
            true,
        )
        .await?;
    out.line(format!(
        "A replay (dry run: {} would go back to `{}`) republishes the message as it was, with \
         its id and history: it suits a failure fixed elsewhere, such as a city added to the \
         reference list. A bad email stays bad, so the fix here is a corrected signup.",
        dry.replayed.len(),
        letter.routing_key
    ))?;
    out.took(started)
}
