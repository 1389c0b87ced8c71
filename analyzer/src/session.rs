//! The DataFusion session over a store: one table per folder, with the Hive
//! partition columns `date` and `run_id`, plus the views users want first.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::catalog::MemorySchemaProvider;
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::execution::context::SQLOptions;
use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext};
use schema::layout::{DATE, PARTITION_COLUMNS, RUN_ID};
use schema::object::ObjectRoot;
use schema::{NULL_PARTITION, Table};
use std::num::NonZeroUsize;

use crate::AnalyzerError;
use crate::functions;
use crate::pruning::DayPruned;
use crate::rules::{ProvenNotNull, ShortStringEq};

/// A store opened for queries.
pub struct Store {
    ctx: SessionContext,
    root: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("root", &self.root).finish()
    }
}

/// The views, in creation order: (name, SQL).
pub const VIEWS: &[(&str, &str)] = &[
    (
        "requests",
        // One row per generator request. latency_ms counts from the intended
        // start (no coordinated omission); service_ms from the actual send.
        "SELECT
            run_id, scenario, step, stage, shard, vu, request_id, concurrency,
            trace_id, span_id,
            intended_start, start_time AS sent_at, first_byte_at, end_time,
            CAST(CAST(end_time AS BIGINT) - CAST(COALESCE(intended_start, start_time) AS BIGINT) AS DOUBLE) / 1e6 AS latency_ms,
            CAST(duration_ns AS DOUBLE) / 1e6 AS service_ms,
            http_request_method AS method, url_full, server_address,
            http_response_status_code AS status,
            CASE
                WHEN http_response_status_code IS NULL THEN 'none'
                ELSE CONCAT(CAST(http_response_status_code / 100 AS VARCHAR), 'xx')
            END AS status_class,
            error_type,
            status_code = 'ERROR' AS is_error,
            http_response_body_size AS bytes_received
        FROM spans
        WHERE kind = 'CLIENT' AND request_id IS NOT NULL",
    ),
    (
        "server_spans",
        // Spans of the systems under test (SERVER kind), from load runs and production.
        "SELECT * FROM spans WHERE kind = 'SERVER'",
    ),
];

/// Rows per batch in every scan and operator, unless
/// `DATAFUSION_EXECUTION_BATCH_SIZE` says otherwise. Scans of millions of rows
/// spend less per batch with larger batches: against DuckDB, the percentile
/// and error-count queries went from 1.15 and 1.07 to 0.98 and 0.99 of its
/// time with this instead of DataFusion's 8,192 (means of four runs each,
/// BENCHMARKS.md).
pub const BATCH_SIZE: usize = 32 * 1024;

/// How a store is opened.
#[derive(Debug, Clone)]
pub struct Options {
    /// Memory queries may use before spilling to disk or failing, in bytes.
    pub memory_limit: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            memory_limit: default_memory_limit(),
        }
    }
}

/// Half of the machine's memory, or 2 GiB where that cannot be read.
pub fn default_memory_limit() -> usize {
    let total_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<usize>()
                        .ok()
                })
        });
    total_kib.map_or(2 << 30, |kib| kib * 1024 / 2)
}

/// How [`Store::attach`] registers the Parquet tables, which also says
/// which engine runs the queries: the embedded one, or a distributed one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tables {
    /// Wrapped so that a bound on a table's time column also prunes its
    /// `date=` folders; for the embedded engine, whose aggregates pass
    /// their state on in memory ([`functions::percentile::Exchange::InProcess`]).
    Pruned,
    /// Plain listing tables, which a distributed engine can send to its
    /// workers; a missing folder is listed as empty there. Aggregates write
    /// their state out ([`functions::percentile::Exchange::Serialized`]).
    Portable,
}

/// Applies `DATAFUSION_*` environment variables over loadlens's defaults:
/// `DATAFUSION_EXECUTION_BATCH_SIZE=8192` sets `datafusion.execution.batch_size`,
/// and so on for every DataFusion setting. This is how an operator tunes the
/// engine of a read-only `loadlens serve`, which refuses `SET`. A variable
/// DataFusion rejects, or one that names no setting, is a usage error that
/// names it. (DataFusion's own `ConfigOptions::from_env` starts from its
/// defaults, not loadlens's, and skips unknown names.)
fn engine_settings_from_env(config: &mut SessionConfig) -> Result<(), AnalyzerError> {
    // Variable name → setting name, for every setting.
    let settings: std::collections::HashMap<String, String> = config
        .options()
        .entries()
        .into_iter()
        .map(|entry| (entry.key.to_uppercase().replace('.', "_"), entry.key))
        .collect();
    for (name, value) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if !name.starts_with("DATAFUSION_") {
            continue;
        }
        let Some(key) = settings.get(name.as_ref()) else {
            return Err(AnalyzerError::Input(format!(
                "environment variable {name} names no DataFusion setting; unset it, or see \
                 https://datafusion.apache.org/user-guide/configs.html for the names \
                 (datafusion.runtime.* settings are not read; use --memory-limit)"
            )));
        };
        let value = value.to_string_lossy();
        config.options_mut().set(key, &value).map_err(|e| {
            // DataFusion puts each cause on its own line; one line says it all.
            let message = e.to_string();
            let causes: Vec<&str> = message
                .lines()
                .filter(|line| line.trim() != "caused by")
                .collect();
            AnalyzerError::Input(format!(
                "environment variable {name}={value}: {}; unset it or give a value that {key} takes",
                causes.join(": ")
            ))
        })?;
    }
    Ok(())
}

/// The schema that holds the Parquet tables as they are on disk; the public
/// tables are views over it that turn the null partition back into NULL.
pub const FILES_SCHEMA: &str = "store";

impl Store {
    /// Opens the store at `root` with the default options.
    pub async fn open(root: &Path) -> Result<Store, AnalyzerError> {
        Store::open_with(root, &Options::default()).await
    }

    /// Opens the store at `root`. Missing tables are empty; the folder must exist.
    /// `root` may also be an object-storage URL (`s3://bucket/prefix`, see
    /// [`schema::object`]): the tables are then read from there.
    pub async fn open_with(root: &Path, options: &Options) -> Result<Store, AnalyzerError> {
        let mut config = SessionConfig::new()
            .with_information_schema(true)
            .with_target_partitions(std::thread::available_parallelism().map_or(2, |n| n.get()))
            .with_batch_size(BATCH_SIZE);
        // Keep token positions so planning errors can say where they are.
        config.options_mut().sql_parser.collect_spans = true;
        engine_settings_from_env(&mut config)?;
        let pool = TrackConsumersPool::new(
            FairSpillPool::new(options.memory_limit),
            NonZeroUsize::new(3).expect("3 is not zero"),
        );
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(pool))
            .build_arc()
            .map_err(|e| AnalyzerError::Execution(e.to_string()))?;
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features()
            .with_physical_optimizer_rule(Arc::new(ProvenNotNull))
            .with_physical_optimizer_rule(Arc::new(ShortStringEq))
            .build();
        let ctx = SessionContext::new_with_state(state);
        Store::attach(ctx, root, Tables::Pruned).await
    }

    /// Registers the store at `root` (a folder or an object-storage URL) on a
    /// session built elsewhere, such as one whose queries run on a Ballista
    /// cluster: the loadlens functions, the tables and the views.
    pub async fn attach(
        ctx: SessionContext,
        root: &Path,
        tables: Tables,
    ) -> Result<Store, AnalyzerError> {
        let object_root = match root
            .to_str()
            .filter(|text| schema::object::is_object_url(text))
        {
            Some(url) => Some(ObjectRoot::parse(url).map_err(AnalyzerError::Input)?),
            None => None,
        };
        if object_root.is_none() {
            if !root.exists() {
                return Err(AnalyzerError::NoDataDir(root.to_path_buf()));
            }
            if !root.is_dir() {
                return Err(AnalyzerError::NotADirectory(root.to_path_buf()));
            }
        }
        // A distributed engine writes the state of aggregates out to its
        // workers; the embedded one passes it on in memory.
        let exchange = match tables {
            Tables::Pruned => functions::percentile::Exchange::InProcess,
            Tables::Portable => functions::percentile::Exchange::Serialized,
        };
        functions::register(&ctx, exchange);
        let setup = |e| AnalyzerError::from_datafusion(e, &[]);
        ctx.catalog("datafusion")
            .expect("the default catalog exists")
            .register_schema(FILES_SCHEMA, Arc::new(MemorySchemaProvider::new()))
            .map_err(setup)?;
        for table in Table::ALL {
            let url = match &object_root {
                Some(object_root) => {
                    ctx.register_object_store(&object_root.store_url(), object_root.store.clone());
                    object_root.folder_url(table.name())
                }
                None => {
                    let dir = root.join(table.name());
                    if !dir.is_dir() && tables == Tables::Pruned {
                        // Nothing written yet: an empty table with the right
                        // columns, so queries still plan.
                        let empty =
                            MemTable::try_new(table_schema(table), vec![vec![]]).map_err(setup)?;
                        ctx.register_table(files_table(table), Arc::new(empty))
                            .map_err(setup)?;
                        continue;
                    }
                    let dir = dir.canonicalize().or_else(|_| std::path::absolute(&dir));
                    format!("{}/", dir.map_err(|e| setup(e.into()))?.display())
                }
            };
            let url = ListingTableUrl::parse(url).map_err(setup)?;
            register_listing(&ctx, url, table, tables).map_err(setup)?;
        }
        let store = Store {
            ctx,
            root: root.to_path_buf(),
        };
        for table in Table::ALL {
            let name = table.name();
            store
                .create_view(
                    name,
                    &format!(
                        "SELECT * EXCEPT ({RUN_ID}), NULLIF({RUN_ID}, '{NULL_PARTITION}') AS {RUN_ID} \
                         FROM {FILES_SCHEMA}.{name}"
                    ),
                )
                .await?;
        }
        for (name, sql) in VIEWS {
            store.create_view(name, sql).await?;
        }
        Ok(store)
    }

    async fn create_view(&self, name: &str, sql: &str) -> Result<(), AnalyzerError> {
        self.ctx
            .sql(&format!("CREATE VIEW {name} AS {sql}"))
            .await
            .map(drop)
            .map_err(|e| AnalyzerError::Execution(format!("cannot create view {name}: {e}")))
    }

    /// The session, for callers that build on it.
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// The store's root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The names of the tables and views.
    pub fn table_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Table::ALL.iter().map(|t| t.name().to_string()).collect();
        names.extend(VIEWS.iter().map(|(name, _)| name.to_string()));
        names
    }

    /// Plans one SQL statement; only queries (SELECT, EXPLAIN, SHOW) are allowed.
    pub async fn plan(&self, sql: &str) -> Result<DataFrame, AnalyzerError> {
        let tables = self.table_names();
        self.ctx
            .sql_with_options(sql, read_only())
            .await
            .map_err(|e| AnalyzerError::from_datafusion(e, &tables))
    }

    /// Runs one SQL statement and collects its result. Only queries are allowed.
    pub async fn query(&self, sql: &str) -> Result<Vec<RecordBatch>, AnalyzerError> {
        let tables = self.table_names();
        self.plan(sql)
            .await?
            .collect()
            .await
            .map_err(|e| AnalyzerError::from_datafusion(e, &tables))
    }
}

/// What `loadlens sql` and `loadlens serve` let a statement do: read.
pub fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// The table schema: the file schema as it is read, plus the partition columns.
pub fn table_schema(table: Table) -> SchemaRef {
    let mut fields: Vec<Field> = read_schema(table)
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.extend(
        PARTITION_COLUMNS
            .iter()
            .map(|name| Field::new(*name, DataType::Utf8, false)),
    );
    Arc::new(Schema::new(fields))
}

/// The file schema with strings read as `Utf8View`. The Parquet reader then
/// points into each page's dictionary instead of copying every value into a
/// fresh string, and grouping and comparing work on the views: the error
/// breakdown over 20 million requests took 0.41 s with `Utf8` and 0.33 s with
/// views, the percentiles by endpoint 1.57 s and 1.38 s (BENCHMARKS.md).
fn read_schema(table: Table) -> SchemaRef {
    let schema = table.file_schema();
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|field| match field.data_type() {
            DataType::Utf8 => field.as_ref().clone().with_data_type(DataType::Utf8View),
            _ => field.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// Registers the Parquet files below `url` (a folder, local or in object
/// storage) as `table`; a folder with no files is an empty table.
fn register_listing(
    ctx: &SessionContext,
    url: ListingTableUrl,
    table: Table,
    tables: Tables,
) -> datafusion::error::Result<()> {
    let name = files_table(table);
    // The session's Parquet settings, so that `DATAFUSION_EXECUTION_PARQUET_*`
    // variables reach the store's tables.
    let parquet =
        ParquetFormat::default().with_options(ctx.state().default_table_options().parquet);
    let options = ListingOptions::new(Arc::new(parquet))
        .with_file_extension(".parquet")
        .with_table_partition_cols(vec![
            (DATE.to_string(), DataType::Utf8),
            (RUN_ID.to_string(), DataType::Utf8),
        ]);
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(read_schema(table));
    let files = Arc::new(ListingTable::try_new(config)?);
    match tables {
        Tables::Pruned => {
            ctx.register_table(name, Arc::new(DayPruned::new(files, table.time_column())))?
        }
        Tables::Portable => ctx.register_table(name, files)?,
    };
    Ok(())
}

/// The name of a table's Parquet files, below [`FILES_SCHEMA`].
fn files_table(table: Table) -> String {
    format!("{FILES_SCHEMA}.{}", table.name())
}
