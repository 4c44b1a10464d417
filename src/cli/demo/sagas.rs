//! Section 5: a failure injected at each step of the register saga, and
//! nothing left behind.

use std::sync::Arc;

use super::{Out, demo_request};
use crate::cli::output;
use crate::error::{Error, ErrorKind, Result};
use crate::platform::Platform;
use crate::platform::sagas::{FaultPoint, Phase, SagaOutcome, register};
use crate::retry::RetryPolicy;

/// The model id the section tries when `step` fails.
fn model_of(step: &str) -> String {
    format!("demo-saga-{}", step.replace('_', "-"))
}

/// Every model id the section registers (to remove them before and after).
pub(super) fn models() -> Vec<String> {
    register::STEPS.iter().map(|s| model_of(s)).collect()
}

pub(super) async fn section(platform: &Platform, out: &mut Out<'_>) -> Result<()> {
    let started = out.section(
        5,
        "Saga compensation: a failure at each step leaves no orphan",
        "The registration is recorded in the relational engine before its first step. A failure \
         is injected before each step in turn; the steps already done are undone in reverse \
         order, and the record says so.",
    )?;
    let mut table = output::table(&[
        "failing step",
        "error",
        "saga",
        "run row left",
        "config left",
        "pytorch registrations",
    ]);
    for &step in register::STEPS {
        let model_id = model_of(step);
        let before = platform.models().registrations("pytorch").await?;
        let sagas = platform
            .sagas()
            .with_retry(RetryPolicy::never())
            .with_faults(Arc::new(move |at: FaultPoint| {
                if at.step == step && at.phase == Phase::Apply {
                    Err(Error::new(
                        ErrorKind::Unavailable,
                        format!("injected failure before {step}"),
                    ))
                } else {
                    Ok(())
                }
            }));
        let error = match sagas.register_run(demo_request(&model_id), None).await {
            Ok(SagaOutcome::Done(_)) => {
                return Err(Error::internal(format!(
                    "the saga succeeded although {step} was made to fail"
                )));
            }
            Ok(SagaOutcome::Pending(saga)) => {
                return Err(Error::internal(format!(
                    "the saga was left {} although nothing stops its compensation",
                    saga.state
                )));
            }
            Err(e) => e.kind().to_string(),
        };
        let saga = platform
            .sagas()
            .list(Some(&model_id), false, 1)
            .await?
            .into_iter()
            .next()
            .map_or_else(|| "-".to_owned(), |s| s.state.to_string());
        let row_left = match platform.registry().run(&model_id).await {
            Ok(_) => "yes",
            Err(e) if e.kind() == ErrorKind::NotFound => "no",
            Err(e) => return Err(e),
        };
        let config_left = match platform.configs().get(&model_id).await {
            Ok(_) => "yes",
            Err(e) if e.kind() == ErrorKind::NotFound => "no",
            Err(e) => return Err(e),
        };
        let after = platform.models().registrations("pytorch").await?;
        table.add_row(vec![
            step.to_owned(),
            error,
            saga,
            row_left.to_owned(),
            config_left.to_owned(),
            if after == before {
                "unchanged".to_owned()
            } else {
                format!("changed by {}", after - before)
            },
        ]);
    }
    out.table(table)?;
    out.took(started)
}
