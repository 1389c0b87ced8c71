//! The HTTP JSON API: the runs, a run's summary and read-only SQL.
//!
//! ```text
//!  GET  /healthz                      ok
//!  GET  /api/runs                     [{…run row…}, …]
//!  GET  /api/runs/{run_id}/summary    requests, errors, rates, latency percentiles (404: no such run)
//!  POST /api/query                    {"sql": …, "params": […] | {…}} or the SQL as text
//!                                     ─▶ {"columns": […], "rows": [[…], …]}
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{Field, Schema};
use arrow::record_batch::RecordBatch;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use datafusion::common::{ParamValues, ScalarValue};
use datafusion_postgres::datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use datafusion_postgres::pgwire::error::PgWireError;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::read_only;
use crate::{AnalyzerError, Store};

/// Most rows `/api/query` answers with; larger results are refused, not cut.
pub const MAX_ROWS: usize = 100_000;

#[derive(Clone)]
struct Api {
    store: Arc<Store>,
    parser: Arc<PostgresCompatibilityParser>,
}

/// The API's routes. With a password, `/api/*` wants `Authorization: Bearer <password>`.
pub fn router(store: Arc<Store>, password: Option<Arc<str>>) -> Router {
    let state = Api {
        store,
        parser: Arc::new(PostgresCompatibilityParser::new()),
    };
    let api = Router::new()
        .route("/api/runs", get(runs))
        .route("/api/runs/{run_id}/summary", get(summary))
        .route("/api/query", post(query))
        .with_state(state);
    let api = match password {
        Some(password) => api.layer(axum::middleware::from_fn(move |request, next| {
            bearer(password.clone(), request, next)
        })),
        None => api,
    };
    api.route("/healthz", get(|| async { "ok\n" }))
}

async fn bearer(password: Arc<str>, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(given) if same(given.as_bytes(), password.as_bytes()) => next.run(request).await,
        _ => {
            let mut response = ApiError::Unauthorized.into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            response
        }
    }
}

/// Compares in time independent of where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// An API error: `{"error": "…"}` with its status.
#[derive(Debug)]
enum ApiError {
    /// The request or its SQL is wrong (400).
    Bad(String),
    /// No such run (404).
    NotFound(String),
    /// The query failed to run (500).
    Failed(String),
    /// No or a wrong password (401).
    Unauthorized,
}

impl From<AnalyzerError> for ApiError {
    fn from(e: AnalyzerError) -> Self {
        if e.is_usage() {
            ApiError::Bad(e.to_string())
        } else {
            ApiError::Failed(e.to_string())
        }
    }
}

impl From<PgWireError> for ApiError {
    fn from(e: PgWireError) -> Self {
        match e {
            // SQLSTATE class XX: the server failed.
            PgWireError::UserError(info) if info.code.starts_with("XX") => {
                ApiError::Failed(info.message)
            }
            PgWireError::UserError(info) => ApiError::Bad(info.message),
            other => ApiError::Bad(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            ApiError::Bad(m) => (StatusCode::BAD_REQUEST, m),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, m),
            ApiError::Failed(m) => (StatusCode::INTERNAL_SERVER_ERROR, m),
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "send the serve password as Authorization: Bearer <password>".to_string(),
            ),
        };
        (status, Json(json!({ "error": message }))).into_response()
    }
}

impl Api {
    /// Plans one query behind the same guard as the Postgres endpoint, binds
    /// the parameters and runs it; returns the column names and the batches.
    async fn run(
        &self,
        sql: &str,
        params: Option<ParamValues>,
    ) -> Result<(Vec<String>, Vec<RecordBatch>), ApiError> {
        let ctx = self.store.context();
        let plan = read_only::plan_query(&self.parser, sql, ctx)
            .await
            .map_err(ApiError::from)?;
        let tables = self.store.table_names();
        let classify = |e| ApiError::from(AnalyzerError::from_datafusion(e, &tables));
        let mut frame = ctx.execute_logical_plan(plan).await.map_err(classify)?;
        if let Some(params) = params {
            frame = frame.with_param_values(params).map_err(classify)?;
        }
        let columns = frame
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let batches = frame.collect().await.map_err(classify)?;
        Ok((columns, batches))
    }
}

async fn runs(State(api): State<Api>) -> Result<Json<Value>, ApiError> {
    let (columns, batches) = api
        .run("SELECT * FROM runs ORDER BY started_at, shard", None)
        .await?;
    let rows = rows(&batches)?;
    let objects = rows
        .into_iter()
        .map(|row| Value::Object(columns.iter().cloned().zip(row).collect::<Map<_, _>>()))
        .collect();
    Ok(Json(Value::Array(objects)))
}

/// The summary's SQL: one row for run `$1`.
const SUMMARY_SQL: &str = "SELECT
    COUNT(*) AS requests,
    COUNT(*) FILTER (WHERE is_error) AS errors,
    CAST(CAST(MAX(end_time) AS BIGINT) - CAST(MIN(COALESCE(intended_start, sent_at)) AS BIGINT) AS DOUBLE) / 1e9 AS duration_s,
    percentile(latency_ms, 0.5) AS p50,
    percentile(latency_ms, 0.9) AS p90,
    percentile(latency_ms, 0.99) AS p99,
    percentile(latency_ms, 0.999) AS p999
FROM requests WHERE run_id = $1";

async fn summary(
    State(api): State<Api>,
    Path(run_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let param = || {
        Some(ParamValues::from(vec![ScalarValue::Utf8(Some(
            run_id.clone(),
        ))]))
    };
    let (_, batches) = api.run(SUMMARY_SQL, param()).await?;
    let row = rows(&batches)?.into_iter().next().unwrap_or_default();
    let field = |i: usize| row.get(i).cloned().unwrap_or(Value::Null);
    let requests = field(0).as_u64().unwrap_or(0);
    if requests == 0 {
        let (_, known) = api
            .run("SELECT run_id FROM runs WHERE run_id = $1 LIMIT 1", param())
            .await?;
        if known.iter().all(|b| b.num_rows() == 0) {
            return Err(ApiError::NotFound(format!(
                "no run '{run_id}' in the store; GET /api/runs lists the runs"
            )));
        }
    }
    let errors = field(1).as_u64().unwrap_or(0);
    let duration_s = field(2).as_f64();
    let ratio = |a: f64, b: Option<f64>| b.filter(|b| *b > 0.0).map(|b| a / b);
    Ok(Json(json!({
        "run_id": run_id,
        "requests": requests,
        "errors": errors,
        "error_rate": ratio(errors as f64, Some(requests as f64)),
        "duration_s": duration_s,
        "throughput_rps": ratio(requests as f64, duration_s),
        "latency_ms": {
            "p50": field(3),
            "p90": field(4),
            "p99": field(5),
            "p99.9": field(6),
        },
    })))
}

/// `POST /api/query` as JSON.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryRequest {
    /// One statement; parameters are `$1, $2, …` or `$name`.
    sql: String,
    /// Values of the parameters: a list for `$1, $2, …`, an object for `$name`.
    #[serde(default)]
    params: Option<Value>,
}

async fn query(
    State(api): State<Api>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::Bad("the request body is not UTF-8".to_string()))?;
    let json_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
        || text.trim_start().starts_with('{');
    let request = if json_body {
        serde_json::from_str::<QueryRequest>(text).map_err(|e| {
            ApiError::Bad(format!(
                "the body is not {{\"sql\": \"…\", \"params\": […]}}: {e}"
            ))
        })?
    } else {
        QueryRequest {
            sql: text.to_string(),
            params: None,
        }
    };
    if request.sql.trim().is_empty() {
        return Err(ApiError::Bad(
            "no SQL: send {\"sql\": \"SELECT …\"} or the SQL as the body".to_string(),
        ));
    }
    let params = request.params.map(param_values).transpose()?;
    let (columns, batches) = api.run(&request.sql, params).await?;
    let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if total > MAX_ROWS {
        return Err(ApiError::Bad(format!(
            "the result has {total} rows, more than the {MAX_ROWS} the API returns; \
             aggregate or add LIMIT, or use loadlens sql --format csv"
        )));
    }
    Ok(Json(json!({ "columns": columns, "rows": rows(&batches)? })))
}

/// JSON parameter values as DataFusion scalars.
fn param_values(params: Value) -> Result<ParamValues, ApiError> {
    match params {
        Value::Array(values) => Ok(ParamValues::from(
            values.iter().map(scalar).collect::<Result<Vec<_>, _>>()?,
        )),
        Value::Object(values) => Ok(ParamValues::from(
            values
                .iter()
                .map(|(k, v)| Ok((k.trim_start_matches('$').to_string(), scalar(v)?)))
                .collect::<Result<HashMap<_, _>, ApiError>>()?,
        )),
        other => Err(ApiError::Bad(format!(
            "params must be a list (for $1, $2, …) or an object (for $name), not {other}"
        ))),
    }
}

fn scalar(value: &Value) -> Result<ScalarValue, ApiError> {
    Ok(match value {
        Value::Null => ScalarValue::Null,
        Value::Bool(b) => ScalarValue::Boolean(Some(*b)),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => ScalarValue::Int64(Some(i)),
            (None, Some(f)) => ScalarValue::Float64(Some(f)),
            (None, None) => return Err(ApiError::Bad(format!("parameter {n} is out of range"))),
        },
        Value::String(s) => ScalarValue::Utf8(Some(s.clone())),
        other => {
            return Err(ApiError::Bad(format!(
                "parameter {other} is not a string, number, boolean or null"
            )));
        }
    })
}

/// The rows as lists of JSON values (timestamps as RFC 3339 text, binary as hex).
fn rows(batches: &[RecordBatch]) -> Result<Vec<Vec<Value>>, ApiError> {
    let failed = |e: arrow::error::ArrowError| {
        ApiError::Failed(format!("cannot render the result as JSON: {e}"))
    };
    let mut rows = Vec::new();
    for batch in batches {
        let mut batch_rows = vec![Vec::with_capacity(batch.num_columns()); batch.num_rows()];
        // One column at a time: names may repeat (SELECT 1, 1), JSON keys may not.
        for (field, array) in batch.schema().fields().iter().zip(batch.columns()) {
            let single = RecordBatch::try_new(
                Arc::new(Schema::new(vec![Field::new(
                    "v",
                    field.data_type().clone(),
                    true,
                )])),
                vec![array.clone()],
            )
            .map_err(failed)?;
            let mut out = Vec::new();
            {
                let mut writer = arrow::json::WriterBuilder::new()
                    .with_explicit_nulls(true)
                    .build::<_, arrow::json::writer::JsonArray>(&mut out);
                writer.write(&single).map_err(failed)?;
                writer.finish().map_err(failed)?;
            }
            let values: Vec<Map<String, Value>> = if out.is_empty() {
                Vec::new()
            } else {
                serde_json::from_slice(&out).map_err(|e| {
                    ApiError::Failed(format!("cannot read the JSON of a column: {e}"))
                })?
            };
            for (row, mut object) in batch_rows.iter_mut().zip(values) {
                row.push(object.remove("v").unwrap_or(Value::Null));
            }
        }
        rows.extend(batch_rows);
    }
    Ok(rows)
}
