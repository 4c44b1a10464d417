//! Keyset pagination of runs, newest first.
//!
//! A page ends with a cursor: the last run's `(started_at, id)`. The next
//! page is the runs strictly after it in `(started_at DESC, id DESC)`
//! order. Unlike `OFFSET`, a page never repeats or skips a run when runs are
//! added before it, and costs the same however deep it is.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Condition, Expr, ExprTrait};
use sea_orm::{ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::{Deserialize, Serialize};

use super::db_err;
use crate::error::{Error, Result};
use crate::platform::entities::training_run;
use crate::platform::records::Run;

/// Where a page of runs ended: the sort key and id of its last run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCursor {
    /// The last run's start time.
    pub started_at: DateTime<Utc>,
    /// The last run's id, which breaks ties between equal start times.
    pub id: i64,
}

/// One page of runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunList {
    /// At most the requested number of runs, newest first.
    pub runs: Vec<Run>,
    /// The cursor for the next page; `None` on the last page.
    pub next: Option<RunCursor>,
}

/// The largest page [`list_runs`] serves.
pub const MAX_PAGE_SIZE: u64 = 1000;

/// Runs newest first, `limit` (1 to [`MAX_PAGE_SIZE`]) at a time, starting
/// after `after`.
pub async fn list_runs(
    db: &impl ConnectionTrait,
    after: Option<RunCursor>,
    limit: u64,
) -> Result<RunList> {
    use training_run::Column as C;
    if limit == 0 || limit > MAX_PAGE_SIZE {
        return Err(Error::invalid(format!(
            "page size must be between 1 and {MAX_PAGE_SIZE}, got {limit}"
        ))
        .with_field("limit"));
    }
    let mut select = training_run::Entity::find()
        .order_by_desc(C::StartedAt)
        .order_by_desc(C::Id)
        // One more than asked tells whether a next page exists.
        .limit(limit + 1);
    if let Some(cursor) = after {
        select = select.filter(
            Condition::any()
                .add(Expr::col(C::StartedAt).lt(cursor.started_at))
                .add(
                    Expr::col(C::StartedAt)
                        .eq(cursor.started_at)
                        .and(Expr::col(C::Id).lt(cursor.id)),
                ),
        );
    }
    let mut runs = select.all(db).await.map_err(db_err("list_runs"))?;
    let more = runs.len() as u64 > limit;
    runs.truncate(limit as usize);
    let next = if more {
        runs.last().map(|r| RunCursor {
            started_at: r.started_at,
            id: r.id,
        })
    } else {
        None
    };
    Ok(RunList {
        runs: runs.into_iter().map(Into::into).collect(),
        next,
    })
}
