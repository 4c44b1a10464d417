//! `/v1/datasets`: register, list, get, and training statistics.
//!
//! Names are unique: registering a taken one is 409. The list is ordered by
//! name (byte-wise, as the registry compares text) and paged by keyset: the
//! page token is the last name of the previous page, so pages neither
//! repeat nor skip a dataset when others are added meanwhile.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody};
use super::{ApiState, limits};
use crate::error::Error;
use crate::platform::names::check_text;
use crate::platform::records;
use crate::platform::registry::{DATASET_NAME_MAX, NewDataset};

/// The largest page of datasets.
pub const MAX_PAGE_SIZE: u64 = 1000;
const DEFAULT_PAGE_SIZE: u64 = 100;

/// A dataset to register.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDataset {
    /// Unique name, 1 to 255 characters.
    #[schema(schema_with = limits::dataset_name)]
    pub name: String,
    /// What the data is.
    #[serde(default)]
    #[schema(schema_with = limits::description)]
    pub description: Option<String>,
    /// Number of rows (not negative).
    #[serde(default, deserialize_with = "limits::deserialize_integer")]
    #[schema(minimum = 0)]
    pub total_rows: Option<i64>,
    /// Number of features (not negative).
    #[serde(default, deserialize_with = "limits::deserialize_integer")]
    #[schema(minimum = 0)]
    pub total_features: Option<i32>,
    /// Who registers it (at most 100 characters).
    #[serde(default)]
    #[schema(schema_with = limits::created_by)]
    pub created_by: Option<String>,
}

/// A registered dataset.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Dataset {
    /// Surrogate key.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// What the data is.
    pub description: Option<String>,
    /// Number of rows, when known.
    pub total_rows: Option<i64>,
    /// Number of features, when known.
    pub total_features: Option<i32>,
    /// When it was registered (UTC).
    pub created_at: DateTime<Utc>,
    /// Who registered it.
    pub created_by: Option<String>,
}

impl From<records::Dataset> for Dataset {
    fn from(m: records::Dataset) -> Dataset {
        Dataset {
            id: m.id,
            name: m.name,
            description: m.description,
            total_rows: m.total_rows,
            total_features: m.total_features,
            created_at: m.created_at,
            created_by: m.created_by,
        }
    }
}

/// Paging of the dataset list.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListDatasets {
    /// Datasets per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub page_size: Option<u64>,
    /// `next_page_token` of the previous page.
    #[param(schema_with = limits::dataset_page_token)]
    pub page_token: Option<String>,
}

/// One page of datasets.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DatasetPage {
    /// By name.
    pub datasets: Vec<Dataset>,
    /// Pass back as `page_token` for the next page; absent on the last.
    pub next_page_token: Option<String>,
}

/// A dataset and the statistics of its runs.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DatasetStatistics {
    /// The dataset.
    pub dataset: Dataset,
    /// Every run on it.
    pub total_runs: i64,
    /// Runs still running.
    pub running: i64,
    /// Completed runs.
    pub completed: i64,
    /// Failed runs.
    pub failed: i64,
    /// Best accuracy reached.
    pub best_accuracy: Option<f64>,
    /// Mean accuracy of the runs with one.
    pub avg_accuracy: Option<f64>,
    /// Lowest loss reached.
    pub min_loss: Option<f64>,
    /// Training time summed over the runs with one, in seconds.
    pub total_training_seconds: Option<i64>,
    /// Distinct frameworks used.
    pub frameworks: i64,
}

/// Registers a dataset.
#[utoipa::path(post, path = "/v1/datasets", tag = "datasets", request_body = CreateDataset,
    responses(
        (status = 201, description = "Registered", body = Dataset),
        (status = 400, description = "Invalid input: the field named is outside its schema", body = ErrorBody),
        (status = 409, description = "The name is taken", body = ErrorBody),
        (status = 413, description = "Body over api.body_limit", body = ErrorBody)))]
pub async fn create(
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<CreateDataset>,
) -> Result<(StatusCode, Json<Dataset>), ApiError> {
    let new = NewDataset {
        name: body.name,
        description: body.description,
        total_rows: body.total_rows,
        total_features: body.total_features,
        created_by: body.created_by,
    };
    let created = state.platform.registry().create_dataset(new).await?;
    Ok((StatusCode::CREATED, Json(created.into())))
}

/// Lists datasets by name, a page at a time.
#[utoipa::path(get, path = "/v1/datasets", tag = "datasets", params(ListDatasets),
    responses(
        (status = 200, description = "One page", body = DatasetPage),
        (status = 400, description = "Invalid paging", body = ErrorBody)))]
pub async fn list(
    State(state): State<ApiState>,
    ApiQuery(query): ApiQuery<ListDatasets>,
) -> Result<Json<DatasetPage>, ApiError> {
    let page_size = query.page_size.unwrap_or(DEFAULT_PAGE_SIZE);
    if page_size == 0 || page_size > MAX_PAGE_SIZE {
        return Err(Error::invalid(format!(
            "page_size must be between 1 and {MAX_PAGE_SIZE}, got {page_size}"
        ))
        .with_field("page_size")
        .into());
    }
    if let Some(token) = &query.page_token {
        check_text("page_token", token, DATASET_NAME_MAX)?;
    }
    let after = query.page_token.as_deref().filter(|t| !t.is_empty());
    let (rows, more) = state.platform.registry().datasets(after, page_size).await?;
    let next_page_token = if more {
        rows.last().map(|d| d.name.clone())
    } else {
        None
    };
    Ok(Json(DatasetPage {
        datasets: rows.into_iter().map(Dataset::from).collect(),
        next_page_token,
    }))
}

/// The dataset called `name`.
#[utoipa::path(get, path = "/v1/datasets/{name}", tag = "datasets",
    params(("name" = inline(limits::params::DatasetName), Path, description = "The dataset's name")),
    responses(
        (status = 200, description = "Found", body = Dataset),
        (status = 400, description = "Not a dataset name", body = ErrorBody),
        (status = 404, description = "No such dataset", body = ErrorBody)))]
pub async fn get(
    State(state): State<ApiState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Dataset>, ApiError> {
    limits::check_dataset_name(&name)?;
    let found = state.platform.registry().dataset(&name).await?;
    Ok(Json(found.into()))
}

/// The training statistics of the dataset called `name`.
#[utoipa::path(get, path = "/v1/datasets/{name}/stats", tag = "datasets",
    params(("name" = inline(limits::params::DatasetName), Path, description = "The dataset's name")),
    responses(
        (status = 200, description = "Found", body = DatasetStatistics),
        (status = 400, description = "Not a dataset name", body = ErrorBody),
        (status = 404, description = "No such dataset", body = ErrorBody)))]
pub async fn stats(
    State(state): State<ApiState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<DatasetStatistics>, ApiError> {
    limits::check_dataset_name(&name)?;
    let (dataset, s) = state.platform.registry().dataset_statistics(&name).await?;
    Ok(Json(DatasetStatistics {
        dataset: dataset.into(),
        total_runs: s.total_runs,
        running: s.running,
        completed: s.completed,
        failed: s.failed,
        best_accuracy: s.best_accuracy,
        avg_accuracy: s.avg_accuracy,
        min_loss: s.min_loss,
        total_training_seconds: s.total_training_seconds,
        frameworks: s.frameworks,
    }))
}
