//! A plan rewrite: `column IS NOT NULL` in a filter over Parquet files whose
//! footers say the column has no nulls is dropped, and so is the column,
//! when nothing else reads it.
//!
//! The `requests` view keeps generator spans with `request_id IS NOT NULL`.
//! In the files of a load run every span is a generator span, so the test is
//! true of every row, yet it made each query of the view decode `request_id`
//! (delta-packed integers): a sixth of the error counts' time
//! (BENCHMARKS.md, "Analyzer"). Every Parquet column chunk records how many
//! nulls it holds, and the session reads the footers when it plans
//! (`collect_statistics`), so the files to be scanned can prove the test
//! true before any row is read. When one file cannot, nothing changes.
//!
//! The proof trusts the footers' null counts. DataFusion reads a column
//! chunk that records none as holding no nulls; every writer of the store
//! (the collector, compaction, the fixtures, through the `parquet` crate)
//! records them, and so do pyarrow, DuckDB and Spark.

use std::sync::Arc;

use arrow::datatypes::Schema;
use datafusion::common::config::ConfigOptions;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::common::{HashSet, Result};
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{Column, IsNotNullExpr};
use datafusion::physical_expr::utils::{
    collect_columns, conjunction, reassign_expr_columns, split_conjunction,
};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::filter::{FilterExec, FilterExecBuilder};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::{Partitioning, replace_children_if_necessary};

/// The rule; sessions that run their plans in this process add it
/// (`Store::open_with`).
#[derive(Debug, Default)]
pub struct ProvenNotNull;

impl PhysicalOptimizerRule for ProvenNotNull {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(filter) = node.downcast_ref::<FilterExec>() else {
                return Ok(Transformed::no(node));
            };
            match without_proven_tests(filter)? {
                Some(filter) => Ok(Transformed::yes(filter)),
                None => Ok(Transformed::no(node)),
            }
        })
        .data()
    }

    fn name(&self) -> &str {
        "proven_not_null"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// `filter` without the `IS NOT NULL` tests its files prove, reading fewer
/// columns where it can; `None` when it proves none.
fn without_proven_tests(filter: &FilterExec) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let Some(files) = files_below(filter.input()) else {
        return Ok(None);
    };
    let (proven, kept): (Vec<_>, Vec<_>) = split_conjunction(filter.predicate())
        .into_iter()
        .partition(|test| is_proven(test, files));
    if proven.is_empty() {
        return Ok(None);
    }
    let predicate = conjunction(kept.into_iter().cloned());

    // The columns still read: by the filter's output, and by what remains of
    // its predicate. Those only the proven tests read can go.
    let input = filter.input().schema();
    let output: Vec<usize> = match filter.projection() {
        Some(projection) => projection.iter().copied().collect(),
        None => (0..input.fields().len()).collect(),
    };
    let mut needed: HashSet<usize> = output.iter().copied().collect();
    needed.extend(collect_columns(&predicate).iter().map(Column::index));
    let builder = FilterExecBuilder::from(filter);
    if needed.len() == input.fields().len() {
        return Ok(Some(Arc::new(builder.with_predicate(predicate).build()?)));
    }

    let narrowed = narrow(filter.input(), &input, &needed)?;
    let Some(narrowed) = narrowed else {
        return Ok(Some(Arc::new(builder.with_predicate(predicate).build()?)));
    };
    let schema = narrowed.schema();
    let predicate = reassign_expr_columns(predicate, &schema)?;
    let output = output
        .iter()
        .map(|&i| schema.index_of(input.field(i).name()))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let filter = builder
        .with_input(narrowed)
        .with_predicate(predicate)
        .apply_projection(None)?
        .apply_projection(Some(output))?
        .build()?;
    Ok(Some(Arc::new(filter)))
}

/// Whether `test` is `column IS NOT NULL` and every file to be scanned
/// records that column without nulls.
fn is_proven(test: &&Arc<dyn PhysicalExpr>, files: &FileScanConfig) -> bool {
    let Some(tested) = test.downcast_ref::<IsNotNullExpr>().map(IsNotNullExpr::arg) else {
        return false;
    };
    // The scan's output column as a column of the table: the scan may
    // output a table column under another name.
    let in_table = match files.file_source.projection() {
        Some(projection) => match projection.unproject_expr(tested) {
            Ok(expr) => expr,
            Err(_) => return false,
        },
        None => Arc::clone(tested),
    };
    let Some(column) = in_table.downcast_ref::<Column>() else {
        return false;
    };
    let table = files.file_source.table_schema().table_schema();
    let Ok(index) = table.index_of(column.name()) else {
        return false;
    };
    let mut scanned = files.file_groups.iter().flat_map(|group| group.iter());
    let mut any = false;
    let all = scanned.all(|file| {
        any = true;
        file.statistics
            .as_ref()
            .and_then(|stats| stats.column_statistics.get(index))
            .is_some_and(|column| column.null_count == Precision::Exact(0))
    });
    any && all
}

/// The files a filter's input scans: a file scan, perhaps below repartitions
/// that only spread its batches (a store of one file has one).
fn files_below(input: &Arc<dyn ExecutionPlan>) -> Option<&FileScanConfig> {
    if let Some(spread) = round_robin(input) {
        return files_below(spread.input());
    }
    input
        .downcast_ref::<DataSourceExec>()?
        .data_source()
        .downcast_ref::<FileScanConfig>()
}

fn round_robin(plan: &Arc<dyn ExecutionPlan>) -> Option<&RepartitionExec> {
    plan.downcast_ref::<RepartitionExec>()
        .filter(|spread| matches!(spread.partitioning(), Partitioning::RoundRobinBatch(_)))
}

/// `input` reading only the columns `needed` (indices into `schema`, its
/// output), if its scan can leave the others unread.
fn narrow(
    input: &Arc<dyn ExecutionPlan>,
    schema: &Schema,
    needed: &HashSet<usize>,
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    if let Some(spread) = round_robin(input) {
        let Some(scan) = narrow(spread.input(), schema, needed)? else {
            return Ok(None);
        };
        return replace_children_if_necessary(Arc::clone(input), vec![scan]).map(Some);
    }
    let scan = input;
    let columns: Vec<(Arc<dyn PhysicalExpr>, String)> = schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(i, _)| needed.contains(i))
        .map(|(i, field)| {
            let column: Arc<dyn PhysicalExpr> = Arc::new(Column::new(field.name(), i));
            (column, field.name().clone())
        })
        .collect();
    let projection = ProjectionExec::try_new(columns, Arc::clone(scan))?;
    scan.try_swapping_with_projection(&projection)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, RecordBatch, StringViewArray};
    use arrow::datatypes::{DataType, Field};
    use datafusion::common::tree_node::TreeNodeRecursion;
    use datafusion::execution::session_state::SessionStateBuilder;
    use datafusion::prelude::{ParquetReadOptions, SessionContext};
    use parquet::arrow::ArrowWriter;
    use std::path::Path;

    /// A fresh folder for one test's files.
    fn folder(test: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("loadlens-not-null-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn write(path: &Path, ids: Vec<Option<i64>>) {
        let kinds: Vec<&str> = (0..ids.len())
            .map(|i| if i % 3 == 0 { "CLIENT" } else { "SERVER" })
            .collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("kind", DataType::Utf8View, false),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int64Array::from(ids)),
                Arc::new(StringViewArray::from(kinds)),
            ],
        )
        .unwrap();
        let mut writer =
            ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
    }

    /// Two sessions over the files of `dir`: with the rule, and without.
    async fn sessions(dir: &Path) -> (SessionContext, SessionContext) {
        let with_rule = SessionContext::new_with_state(
            SessionStateBuilder::new()
                .with_default_features()
                .with_physical_optimizer_rule(Arc::new(ProvenNotNull))
                .build(),
        );
        let without = SessionContext::new();
        for ctx in [&with_rule, &without] {
            ctx.register_parquet("t", dir.to_str().unwrap(), ParquetReadOptions::default())
                .await
                .unwrap();
        }
        (with_rule, without)
    }

    /// The result's rows as text, and the columns each scan reads and each
    /// filter tests.
    async fn run(ctx: &SessionContext, sql: &str) -> (Vec<String>, Vec<String>) {
        let frame = ctx.sql(sql).await.unwrap();
        let plan = frame.clone().create_physical_plan().await.unwrap();
        let batches = frame.collect().await.unwrap();
        let rows = arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string()
            .lines()
            .map(str::to_string)
            .collect();
        let mut seen = Vec::new();
        plan.apply(|node| {
            if let Some(filter) = node.downcast_ref::<FilterExec>() {
                seen.push(format!("filter {}", filter.predicate()));
            }
            if node.downcast_ref::<DataSourceExec>().is_some() {
                let names: Vec<_> = node
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect();
                seen.push(format!("scan {}", names.join(",")));
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .unwrap();
        (rows, seen)
    }

    #[tokio::test]
    async fn files_without_nulls_drop_the_test_and_the_column() {
        let dir = folder("none");
        write(&dir.join("a.parquet"), (0..100).map(Some).collect());
        write(&dir.join("b.parquet"), (100..150).map(Some).collect());
        let (with_rule, without) = sessions(&dir).await;

        let sql = "SELECT count(*) FROM t WHERE id IS NOT NULL AND kind = 'CLIENT'";
        let (rows, plan) = run(&with_rule, sql).await;
        assert_eq!(rows, run(&without, sql).await.0);
        // Every third row of each file is a client's: 34 + 17.
        assert!(rows.iter().any(|row| row.contains("| 51 ")), "{rows:?}");
        assert!(
            plan.iter().all(|line| !line.contains("id")),
            "the filter or the scan still reads id: {plan:?}"
        );

        // The test goes, the column stays: the query returns it.
        let sql = "SELECT max(id) FROM t WHERE id IS NOT NULL AND kind = 'SERVER'";
        let (rows, plan) = run(&with_rule, sql).await;
        assert_eq!(rows, run(&without, sql).await.0);
        assert!(rows.iter().any(|row| row.contains("| 149 ")), "{rows:?}");
        assert!(
            plan.iter()
                .any(|line| line.starts_with("scan") && line.contains("id"))
        );
        assert!(
            !plan.iter().any(|line| line.contains("IS NOT NULL")),
            "{plan:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_single_file_spread_over_partitions_is_narrowed_too() {
        let dir = folder("single");
        write(&dir.join("a.parquet"), (0..90).map(Some).collect());
        let (with_rule, without) = sessions(&dir).await;
        let sql = "SELECT count(*) FROM t WHERE id IS NOT NULL AND kind = 'CLIENT'";
        let (rows, plan) = run(&with_rule, sql).await;
        assert_eq!(rows, run(&without, sql).await.0);
        assert!(rows.iter().any(|row| row.contains("| 30 ")), "{rows:?}");
        assert!(
            plan.iter().all(|line| !line.contains("id")),
            "the filter or the scan still reads id: {plan:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_column_computed_under_a_table_column_name_is_not_taken_for_it() {
        // `id` of the view is NULLIF(t.id, 3): the footers of t.id, which
        // has no nulls, prove nothing about it. (The store's `run_id` is
        // such a column: NULLIF of the partition value.) The filter tests
        // the NULLIF here; were it pushed into the scan as an output column
        // named `id`, `is_proven` would unproject it to the same NULLIF.
        let dir = folder("computed");
        write(&dir.join("a.parquet"), (0..100).map(Some).collect());
        write(&dir.join("b.parquet"), (100..150).map(Some).collect());
        let (with_rule, without) = sessions(&dir).await;
        for ctx in [&with_rule, &without] {
            ctx.sql("CREATE VIEW v AS SELECT NULLIF(id, 3) AS id, kind FROM t")
                .await
                .unwrap();
        }
        let sql = "SELECT count(*) FROM v WHERE id IS NOT NULL AND kind = 'CLIENT'";
        let (rows, _) = run(&with_rule, sql).await;
        assert_eq!(rows, run(&without, sql).await.0);
        // 51 clients, less the one whose id 3 became NULL.
        assert!(rows.iter().any(|row| row.contains("| 50 ")), "{rows:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn one_file_with_a_null_keeps_the_test() {
        let dir = folder("some");
        write(&dir.join("a.parquet"), (0..100).map(Some).collect());
        write(
            &dir.join("b.parquet"),
            (100..150).map(|i| (i % 2 == 0).then_some(i)).collect(),
        );
        let (with_rule, without) = sessions(&dir).await;
        let sql = "SELECT count(*) FROM t WHERE id IS NOT NULL AND kind = 'CLIENT'";
        let (rows, plan) = run(&with_rule, sql).await;
        assert_eq!(rows, run(&without, sql).await.0);
        // 34 of the first file, and of 100, 103, …, 147 the even ones.
        let expected = 34
            + (100..150)
                .filter(|i| (i - 100) % 3 == 0 && i % 2 == 0)
                .count();
        assert!(
            rows.iter()
                .any(|row| row.contains(&format!("| {expected} "))),
            "{rows:?}"
        );
        assert!(
            plan.iter().any(|line| line.contains("id@0 IS NOT NULL")),
            "{plan:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
