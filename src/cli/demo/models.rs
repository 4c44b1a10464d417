//! Section 4: one model across engines, registered as a saga and read back
//! whole.

use super::{DEMO_MODEL, Out, demo_request, opt};
use crate::cli::output;
use crate::error::{Error, Result};
use crate::platform::Platform;
use crate::platform::sagas::SagaOutcome;
use crate::platform::sagas::register::registrations_key;

pub(super) async fn section(platform: &Platform, out: &mut Out<'_>) -> Result<()> {
    let started = out.section(
        4,
        "One model across engines: register, then read it back whole",
        "Registering a run writes the SQL row, the config document and a KV counter, \
         linked by one model_id, as a saga recorded before its first step.",
    )?;
    let registered = match platform
        .sagas()
        .register_run(demo_request(DEMO_MODEL), None)
        .await?
    {
        SagaOutcome::Done(registered) => registered,
        SagaOutcome::Pending(saga) => {
            return Err(Error::internal(format!(
                "the registration without a deadline answered before its end: saga {}",
                saga.id
            )));
        }
    };
    out.line(format!(
        "relational: training_runs row #{} {} ({}, on {})",
        registered.run.id, registered.run.model_id, registered.run.status, registered.dataset
    ))?;
    out.line(format!(
        "documents:  model_configs {{model_id: {DEMO_MODEL}, config: {{hyperparameters}}}}"
    ))?;
    out.line(format!(
        "kv:         HSET {} SAGA_ID {DEMO_MODEL} (pytorch registrations: {})",
        registrations_key("pytorch"),
        registered.framework_runs
    ))?;

    out.step(&format!(
        "Model info of {DEMO_MODEL}: one call, three engines"
    ))?;
    let info = platform.models().info(DEMO_MODEL).await?;
    let mut table = output::table(&["engine", "field", "value"]);
    table.add_row(vec![
        "relational".into(),
        "run".into(),
        format!(
            "{} {} {}",
            info.run.model_name, info.run.framework, info.run.status
        ),
    ]);
    table.add_row(vec![
        "relational".into(),
        "dataset".into(),
        format!(
            "{} ({} rows, {} features)",
            info.dataset.name,
            opt(info.dataset.total_rows),
            opt(info.dataset.total_features)
        ),
    ]);
    let hyper = info
        .config
        .as_ref()
        .and_then(|c| c.get("config"))
        .and_then(|c| c.get("hyperparameters"))
        .map_or_else(|| "-".to_owned(), serde_json::Value::to_string);
    table.add_row(vec![
        "documents".into(),
        "config.hyperparameters".into(),
        hyper,
    ]);
    let counters = match &info.counters {
        None => "unavailable".to_owned(),
        Some(counters) if counters.is_empty() => "none yet".to_owned(),
        Some(counters) => counters
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", "),
    };
    table.add_row(vec!["kv".into(), "counters".into(), counters]);
    out.table(table)?;
    out.took(started)
}
