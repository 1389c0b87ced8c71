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

use super::rewrite_filters;

/// The rule.
#[derive(Debug, Default)]
pub struct ProvenNotNull;

impl PhysicalOptimizerRule for ProvenNotNull {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        rewrite_filters(plan, without_proven_tests)
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
    let conjuncts = split_conjunction(filter.predicate());
    let kept: Vec<_> = conjuncts
        .iter()
        .filter(|test| !is_proven(test, files))
        .map(|test| Arc::clone(test))
        .collect();
    if kept.len() == conjuncts.len() {
        return Ok(None);
    }
    let predicate = conjunction(kept);

    // The columns still read: by the filter's output, and by what remains of
    // its predicate. Those only the proven tests read can go.
    let input = filter.input().schema();
    let output: Vec<usize> = match filter.projection() {
        Some(projection) => projection.iter().copied().collect(),
        None => (0..input.fields().len()).collect(),
    };
    let mut needed: HashSet<usize> = output.iter().copied().collect();
    needed.extend(collect_columns(&predicate).iter().map(Column::index));
    let narrowed = if needed.len() < input.fields().len() {
        narrow(filter.input(), &input, &needed)?
    } else {
        None
    };
    let builder = FilterExecBuilder::from(filter);
    let Some(narrowed) = narrowed else {
        return Ok(Some(Arc::new(builder.with_predicate(predicate).build()?)));
    };

    // The narrowed scan numbers its columns afresh: find them by name.
    let schema = narrowed.schema();
    let output = output
        .iter()
        .map(|&i| schema.index_of(input.field(i).name()))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let filter = builder
        .with_predicate(reassign_expr_columns(predicate, &schema)?)
        .with_input(narrowed)
        .apply_projection(None)?
        .apply_projection(Some(output))?
        .build()?;
    Ok(Some(Arc::new(filter)))
}

/// Whether `test` is `column IS NOT NULL` and every file to be scanned
/// records that column without nulls.
fn is_proven(test: &Arc<dyn PhysicalExpr>, files: &FileScanConfig) -> bool {
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
    let mut scanned = files
        .file_groups
        .iter()
        .flat_map(|group| group.iter())
        .peekable();
    scanned.peek().is_some()
        && scanned.all(|file| {
            file.statistics
                .as_ref()
                .and_then(|stats| stats.column_statistics.get(index))
                .is_some_and(|column| column.null_count == Precision::Exact(0))
        })
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
    let projection = ProjectionExec::try_new(columns, Arc::clone(input))?;
    input.try_swapping_with_projection(&projection)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, RecordBatch, StringViewArray};
    use arrow::datatypes::{DataType, Field};
    use arrow::util::display::array_value_to_string;
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::physical_expr::expressions::is_not_null;
    use datafusion::prelude::{ParquetReadOptions, SessionContext};
    use parquet::arrow::ArrowWriter;
    use std::path::{Path, PathBuf};

    /// A folder of Parquet files of `(id, kind)`, one file per list of ids;
    /// every third row of a file is a `CLIENT` row. Removed when dropped.
    struct Files(PathBuf);

    impl Files {
        fn new(test: &str, files: &[Vec<Option<i64>>]) -> Files {
            let dir = std::env::temp_dir()
                .join(format!("loadlens-not-null-{test}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            for (n, ids) in files.iter().enumerate() {
                write(&dir.join(format!("{n}.parquet")), ids);
            }
            Files(dir)
        }

        /// Two sessions over the files as table `t`: with the rule, and without.
        async fn sessions(&self) -> (SessionContext, SessionContext) {
            let (with_rule, without) = super::super::tests::sessions(ProvenNotNull);
            for ctx in [&with_rule, &without] {
                ctx.register_parquet("t", self.0.to_str().unwrap(), ParquetReadOptions::default())
                    .await
                    .unwrap();
            }
            (with_rule, without)
        }
    }

    impl Drop for Files {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn write(path: &Path, ids: &[Option<i64>]) {
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
                Arc::new(Int64Array::from(ids.to_vec())),
                Arc::new(StringViewArray::from(kinds)),
            ],
        )
        .unwrap();
        let mut writer =
            ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
    }

    fn ids(range: std::ops::Range<i64>) -> Vec<Option<i64>> {
        range.map(Some).collect()
    }

    /// The one value `sql` answers with the rule, after checking that the
    /// session without it answers the same; and what the plan's filters
    /// test and its scans read.
    async fn answer(
        sessions: &(SessionContext, SessionContext),
        sql: &str,
    ) -> (String, Vec<String>) {
        let value = |ctx: &SessionContext| {
            let sql = sql.to_string();
            let ctx = ctx.clone();
            async move {
                let batches = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
                assert_eq!((batches.len(), batches[0].num_rows()), (1, 1), "{sql}");
                array_value_to_string(batches[0].column(0), 0).unwrap()
            }
        };
        let (with_rule, without) = sessions;
        let got = value(with_rule).await;
        assert_eq!(got, value(without).await, "{sql}");

        let plan = with_rule
            .sql(sql)
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
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
        (got, seen)
    }

    const CLIENTS: &str = "SELECT count(*) FROM t WHERE id IS NOT NULL AND kind = 'CLIENT'";

    #[tokio::test]
    async fn files_without_nulls_drop_the_test_and_the_column() {
        let files = Files::new("none", &[ids(0..100), ids(100..150)]);
        let sessions = files.sessions().await;

        // Every third row of each file is a client's: 34 + 17.
        let (count, plan) = answer(&sessions, CLIENTS).await;
        assert_eq!(count, "51");
        assert!(
            plan.iter().all(|line| !line.contains("id")),
            "the filter or the scan still reads id: {plan:?}"
        );

        // The test goes, the column stays: the query returns it.
        let sql = "SELECT max(id) FROM t WHERE id IS NOT NULL AND kind = 'SERVER'";
        let (max, plan) = answer(&sessions, sql).await;
        assert_eq!(max, "149");
        assert!(
            plan.iter()
                .any(|line| line.starts_with("scan") && line.contains("id"))
        );
        assert!(
            !plan.iter().any(|line| line.contains("IS NOT NULL")),
            "{plan:?}"
        );
    }

    #[tokio::test]
    async fn a_single_file_spread_over_partitions_is_narrowed_too() {
        let files = Files::new("single", &[ids(0..90)]);
        let (count, plan) = answer(&files.sessions().await, CLIENTS).await;
        assert_eq!(count, "30");
        assert!(
            plan.iter().all(|line| !line.contains("id")),
            "the filter or the scan still reads id: {plan:?}"
        );
    }

    #[tokio::test]
    async fn one_file_with_a_null_keeps_the_test() {
        let some_null = (100..150).map(|i| (i % 2 == 0).then_some(i)).collect();
        let files = Files::new("some", &[ids(0..100), some_null]);
        let (count, plan) = answer(&files.sessions().await, CLIENTS).await;
        // 34 of the first file, and of 100, 103, …, 148 the even ones.
        let expected = 34
            + (100..150)
                .filter(|i| (i - 100) % 3 == 0 && i % 2 == 0)
                .count();
        assert_eq!(count, expected.to_string());
        assert!(
            plan.iter().any(|line| line.contains("id@0 IS NOT NULL")),
            "{plan:?}"
        );
    }

    #[tokio::test]
    async fn a_column_computed_under_a_table_column_name_is_not_taken_for_it() {
        // `id` of the view is NULLIF(t.id, 3): the footers of t.id, which
        // has no nulls, prove nothing about it. (The store's `run_id` is
        // such a column: NULLIF of the partition value.)
        let files = Files::new("computed", &[ids(0..100), ids(100..150)]);
        let sessions = files.sessions().await;
        for ctx in [&sessions.0, &sessions.1] {
            ctx.sql("CREATE VIEW v AS SELECT NULLIF(id, 3) AS id, kind FROM t")
                .await
                .unwrap();
        }
        // 51 clients, less the one whose id 3 became NULL.
        let sql = "SELECT count(*) FROM v WHERE id IS NOT NULL AND kind = 'CLIENT'";
        assert_eq!(answer(&sessions, sql).await.0, "50");

        // There the filter tests the NULLIF itself. DataFusion also moves
        // such a NULLIF into the scan, as an output column named `id`: a
        // filter on that column must not be proven by t.id's footers.
        let scan = sessions
            .1
            .sql("SELECT id FROM v")
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        let projected = files_below(&scan).and_then(|files| files.file_source.projection());
        assert!(
            projected.is_some_and(|p| p.to_string().contains("nullif")),
            "the plan is not a scan that computes the NULLIF: {scan:?}"
        );
        let id = Arc::new(Column::new("id", 0));
        let filter = FilterExec::try_new(is_not_null(id).unwrap(), scan).unwrap();
        assert!(without_proven_tests(&filter).unwrap().is_none());
    }
}
