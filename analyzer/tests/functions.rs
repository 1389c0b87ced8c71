//! The loadlens SQL functions on a plain session: exact results over literals
//! and small tables, and bad arguments refused while planning.

use std::sync::Arc;

use analyzer::functions::percentile::Exchange;
use arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeBinaryArray, Float64Array, Int32Array, ListArray,
    RecordBatch, StringArray, TimestampNanosecondArray, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Float64Type, Schema, TimeUnit, UInt64Type};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::prelude::{SessionConfig, SessionContext};

fn session() -> SessionContext {
    // Several partitions, so aggregates merge partial states as on real data.
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(4));
    analyzer::functions::register(&ctx, Exchange::InProcess);
    ctx
}

fn register(ctx: &SessionContext, name: &str, columns: Vec<(&str, ArrayRef)>) {
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let table = MemTable::try_new(batch.schema(), vec![vec![batch]]).unwrap();
    ctx.register_table(name, Arc::new(table)).unwrap();
}

fn u64_lists(rows: Vec<Vec<u64>>) -> ArrayRef {
    Arc::new(ListArray::from_iter_primitive::<UInt64Type, _, _>(
        rows.into_iter()
            .map(|row| Some(row.into_iter().map(Some).collect::<Vec<_>>())),
    ))
}

fn f64_lists(rows: Vec<Vec<f64>>) -> ArrayRef {
    Arc::new(ListArray::from_iter_primitive::<Float64Type, _, _>(
        rows.into_iter()
            .map(|row| Some(row.into_iter().map(Some).collect::<Vec<_>>())),
    ))
}

/// Runs `sql` and returns its single column, concatenated over batches.
async fn column(ctx: &SessionContext, sql: &str) -> ArrayRef {
    let batches = ctx
        .sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let columns: Vec<ArrayRef> = batches.iter().map(|b| b.column(0).clone()).collect();
    let columns: Vec<&dyn Array> = columns.iter().map(|c| c.as_ref()).collect();
    arrow::compute::concat(&columns).unwrap()
}

/// The column rendered as text, one entry per row.
async fn texts(ctx: &SessionContext, sql: &str) -> Vec<String> {
    let array = column(ctx, sql).await;
    let formatter = ArrayFormatter::try_new(&array, &FormatOptions::default()).unwrap();
    (0..array.len())
        .map(|i| formatter.value(i).to_string())
        .collect()
}

async fn floats(ctx: &SessionContext, sql: &str) -> Vec<Option<f64>> {
    column(ctx, sql)
        .await
        .as_primitive::<Float64Type>()
        .iter()
        .collect()
}

/// The error of `sql`, which must fail while planning: either `ctx.sql`
/// refuses it or the failure is a planning error.
async fn planning_error(ctx: &SessionContext, sql: &str) -> String {
    let error = match ctx.sql(sql).await {
        Err(e) => e,
        Ok(frame) => match frame.collect().await {
            Ok(_) => panic!("{sql} succeeded"),
            Err(e) => e,
        },
    };
    assert!(
        matches!(error.find_root(), DataFusionError::Plan(_)),
        "{sql}: not a planning error: {error:?}"
    );
    error.to_string()
}

/// An error raised while running `sql` (planning succeeded).
async fn execution_error(ctx: &SessionContext, sql: &str) -> String {
    let frame = ctx.sql(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    match frame.collect().await {
        Ok(_) => panic!("{sql} succeeded"),
        Err(e) => e.to_string(),
    }
}

/// `spans(ts, trace_id, span_id)` typed as the store types them.
fn register_spans(ctx: &SessionContext) {
    let schema = Arc::new(Schema::new(vec![
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            true,
        ),
        Field::new("trace_id", DataType::FixedSizeBinary(16), true),
        Field::new("span_id", DataType::FixedSizeBinary(8), true),
    ]));
    let ts = TimestampNanosecondArray::from(vec![
        Some(1_714_566_896_789_000_000), // 2024-05-01T12:34:56.789Z
        Some(-5_000_000_000),            // 1969-12-31T23:59:55Z
        None,
    ])
    .with_timezone("UTC");
    let trace_ids = FixedSizeBinaryArray::try_from_sparse_iter_with_size(
        [
            Some((0u8..16).collect::<Vec<_>>()),
            Some(vec![0xff; 16]),
            None,
        ]
        .into_iter(),
        16,
    )
    .unwrap();
    let span_ids = FixedSizeBinaryArray::try_from_sparse_iter_with_size(
        [
            Some(vec![0xa0, 0xb1, 0xc2, 0xd3, 0xe4, 0xf5, 0x06, 0x17]),
            None,
            None,
        ]
        .into_iter(),
        8,
    )
    .unwrap();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(ts), Arc::new(trace_ids), Arc::new(span_ids)],
    )
    .unwrap();
    let table = MemTable::try_new(schema, vec![vec![batch]]).unwrap();
    ctx.register_table("spans", Arc::new(table)).unwrap();
}

#[tokio::test]
async fn time_bucket_floors_to_epoch_aligned_buckets() {
    let ctx = session();
    register_spans(&ctx);
    for width in ["INTERVAL '10 seconds'", "'10s'", "'10 seconds'"] {
        assert_eq!(
            texts(&ctx, &format!("SELECT time_bucket({width}, ts) FROM spans")).await,
            ["2024-05-01T12:34:50Z", "1969-12-31T23:59:50Z", ""],
            "{width}"
        );
    }
    assert_eq!(
        texts(&ctx, "SELECT time_bucket('1 minute', ts) FROM spans").await,
        ["2024-05-01T12:34:00Z", "1969-12-31T23:59:00Z", ""]
    );
    assert_eq!(
        texts(&ctx, "SELECT time_bucket(INTERVAL '1 day', ts) FROM spans").await,
        ["2024-05-01T00:00:00Z", "1969-12-31T00:00:00Z", ""]
    );
    // The result keeps the column's type, time zone included.
    let array = column(&ctx, "SELECT time_bucket('1h', ts) FROM spans").await;
    assert_eq!(
        array.data_type(),
        &DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
    );
    // Literals fold to a literal; NULL in, NULL out.
    assert_eq!(
        texts(
            &ctx,
            "SELECT time_bucket('15m', TIMESTAMP '2024-05-01T12:34:56')"
        )
        .await,
        ["2024-05-01T12:30:00"]
    );
    assert_eq!(texts(&ctx, "SELECT time_bucket('15m', NULL)").await, [""]);
    assert_eq!(
        texts(&ctx, "SELECT time_bucket(NULL, ts) FROM spans").await,
        ["", "", ""]
    );
}

#[tokio::test]
async fn time_bucket_refuses_bad_widths_when_planning() {
    let ctx = session();
    register_spans(&ctx);
    let month = planning_error(
        &ctx,
        "SELECT time_bucket(INTERVAL '1 month', ts) FROM spans",
    )
    .await;
    assert!(month.contains("months or years"), "{month}");
    assert!(month.contains("INTERVAL '30 days'"), "{month}");
    let zero = planning_error(&ctx, "SELECT time_bucket('0s', ts) FROM spans").await;
    assert!(zero.contains("must be positive"), "{zero}");
    let nonsense = planning_error(&ctx, "SELECT time_bucket('soon', ts) FROM spans").await;
    assert!(
        nonsense.contains("cannot read the width 'soon'"),
        "{nonsense}"
    );
    let not_a_time = planning_error(&ctx, "SELECT time_bucket('1m', 42)").await;
    assert!(
        not_a_time.contains("must be a timestamp, got Int64"),
        "{not_a_time}"
    );
}

#[tokio::test]
async fn trace_id_hex_formats_ids() {
    let ctx = session();
    register_spans(&ctx);
    assert_eq!(
        texts(&ctx, "SELECT trace_id_hex(trace_id) FROM spans").await,
        [
            "000102030405060708090a0b0c0d0e0f",
            "ffffffffffffffffffffffffffffffff",
            ""
        ]
    );
    let spans = column(&ctx, "SELECT trace_id_hex(span_id) FROM spans").await;
    let spans: &StringArray = spans.as_string::<i32>();
    assert_eq!(
        spans.iter().collect::<Vec<_>>(),
        [Some("a0b1c2d3e4f50617"), None, None]
    );
    assert_eq!(
        texts(&ctx, "SELECT trace_id_hex(X'00FFab')").await,
        ["00ffab"]
    );
    let number = planning_error(&ctx, "SELECT trace_id_hex(42)").await;
    assert!(number.contains("binary bytes"), "{number}");
    assert!(number.contains("got Int64"), "{number}");
}

#[tokio::test]
async fn histogram_quantile_matches_prometheus_per_row() {
    let ctx = session();
    // (-inf,1]:2, (1,2]:2, (2,4]:4, (4,+inf):0: rank 6 is half of (2,4].
    assert_eq!(
        floats(
            &ctx,
            "SELECT histogram_quantile([1.0, 2.0, 4.0], [2, 2, 4, 0], 0.75)"
        )
        .await,
        [Some(3.0)]
    );
    assert_eq!(
        floats(
            &ctx,
            "SELECT histogram_quantile(b, c, q) FROM (VALUES
                ([1.0, 2.0, 4.0], [2, 2, 4, 0], 0.5),  -- rank 4 on the (1,2] boundary
                ([1.0, 2.0], [1, 1, 2], 0.9),          -- +Inf bucket: highest bound
                ([1.0], [0, 0], 0.5),                  -- no observations
                ([1.0], [1, 1], NULL),
                ([1.0], [1, 1], 1.5)
             ) AS t(b, c, q)"
        )
        .await,
        [Some(2.0), Some(2.0), None, None, Some(f64::INFINITY)]
    );
    let mismatch = execution_error(
        &ctx,
        "SELECT histogram_quantile(b, c, 0.5) FROM (VALUES ([1.0, 2.0], [1, 2])) AS t(b, c)",
    )
    .await;
    assert!(
        mismatch.contains("2 bucket counts for 2 bounds"),
        "{mismatch}"
    );
    assert!(mismatch.contains("needs 3"), "{mismatch}");
}

#[tokio::test]
async fn histogram_quantile_refuses_bad_arguments_when_planning() {
    let ctx = session();
    let text_q = planning_error(&ctx, "SELECT histogram_quantile([1.0], [1, 1], 'p99')").await;
    assert!(text_q.contains("the quantile, such as 0.99"), "{text_q}");
    assert!(text_q.contains("got Utf8"), "{text_q}");
    let promql_order = planning_error(&ctx, "SELECT histogram_quantile(0.99, [1.0], [1, 1])").await;
    assert!(promql_order.contains("quantile last"), "{promql_order}");
    let not_a_list = planning_error(&ctx, "SELECT histogram_quantile(1.0, 2.0, 0.5)").await;
    assert!(
        not_a_list.contains("bounds must be a list of numbers"),
        "{not_a_list}"
    );
}

#[tokio::test]
async fn bucket_sum_adds_histograms_of_a_group() {
    let ctx = session();
    register(
        &ctx,
        "metrics_histogram",
        vec![
            (
                "service_name",
                Arc::new(StringArray::from(vec!["a", "b", "a"])) as ArrayRef,
            ),
            (
                "explicit_bounds",
                f64_lists(vec![
                    vec![1.0, 2.0, 4.0],
                    vec![1.0, 2.0],
                    vec![1.0, 2.0, 4.0],
                ]),
            ),
            (
                "bucket_counts",
                u64_lists(vec![vec![1, 0, 2, 0], vec![1, 1, 2], vec![1, 2, 2, 0]]),
            ),
        ],
    );
    assert_eq!(
        texts(
            &ctx,
            "SELECT bucket_sum(bucket_counts) FROM metrics_histogram
             GROUP BY service_name ORDER BY service_name"
        )
        .await,
        ["[2, 2, 4, 0]", "[1, 1, 2]"]
    );
    let sums = column(
        &ctx,
        "SELECT bucket_sum(bucket_counts) FROM metrics_histogram WHERE service_name = 'a'",
    )
    .await;
    assert_eq!(
        sums.data_type(),
        &DataType::List(Arc::new(Field::new_list_field(DataType::UInt64, true)))
    );
    // a: [2, 2, 4, 0] → rank 6 is half of (2,4]; b: rank 3.6 is in +Inf → 2.
    assert_eq!(
        floats(
            &ctx,
            "SELECT histogram_quantile(explicit_bounds, bucket_sum(bucket_counts), 0.75)
             FROM metrics_histogram GROUP BY service_name, explicit_bounds ORDER BY service_name"
        )
        .await,
        [Some(3.0), Some(2.0)]
    );
    let mixed = execution_error(
        &ctx,
        "SELECT bucket_sum(bucket_counts) FROM metrics_histogram",
    )
    .await;
    assert!(mixed.contains("different numbers of buckets"), "{mixed}");
    assert!(mixed.contains("GROUP BY"), "{mixed}");
    assert_eq!(
        texts(
            &ctx,
            "SELECT bucket_sum(c) FROM (VALUES ([1, -2]), (NULL), ([10, 20])) AS t(c)"
        )
        .await,
        ["[11, 18]"]
    );
    let text = planning_error(&ctx, "SELECT bucket_sum('1,2')").await;
    assert!(text.contains("list of numbers"), "{text}");
}

#[tokio::test]
async fn exp_histogram_quantile_matches_prometheus_per_row() {
    let ctx = session();
    register(
        &ctx,
        "metrics_exp_histogram",
        vec![
            ("scale", Arc::new(Int32Array::from(vec![0, 0])) as ArrayRef),
            (
                "zero_threshold",
                Arc::new(Float64Array::from(vec![0.0, 1.0])),
            ),
            ("zero_count", Arc::new(UInt64Array::from(vec![0, 2]))),
            ("positive_offset", Arc::new(Int32Array::from(vec![0, 0]))),
            (
                "positive_bucket_counts",
                u64_lists(vec![vec![1, 1, 2], vec![2]]),
            ),
            ("negative_offset", Arc::new(Int32Array::from(vec![0, 0]))),
            ("negative_bucket_counts", u64_lists(vec![vec![], vec![2]])),
        ],
    );
    let p = |q: f64| {
        format!(
            "SELECT exp_histogram_quantile(scale, zero_threshold, zero_count, positive_offset,
                    positive_bucket_counts, negative_offset, negative_bucket_counts, {q})
             FROM metrics_exp_histogram"
        )
    };
    // Row 1: (1,2]:1, (2,4]:1, (4,8]:2. Row 2: [-2,-1):2, [-1,1]:2, (1,2]:2.
    // q = 0.5 walks down with rank 2: the bottom of (4,8], and 1 of 2 into the
    // zero bucket from above, 0.
    assert_eq!(floats(&ctx, &p(0.5)).await, [Some(4.0), Some(0.0)]);
    // q = 0.75, rank 1 from the top: half of (4,8] on a log scale, 2^2.5; and
    // 1.5 of 2 into (1,2] from above, 2^0.25.
    let got = floats(&ctx, &p(0.75)).await;
    let expected = [2f64.powf(2.5), 2f64.powf(0.25)];
    for (got, expected) in got.iter().zip(expected) {
        let got = got.unwrap();
        assert!(
            (got - expected).abs() <= 1e-15 * expected,
            "{got} != {expected}"
        );
    }
    // Literals, an empty list literal included.
    assert_eq!(
        floats(
            &ctx,
            "SELECT exp_histogram_quantile(-1, 0.0, 0, 1, [4], 0, [], 0.5)"
        )
        .await,
        [Some(8.0)]
    );
    assert_eq!(
        floats(
            &ctx,
            "SELECT exp_histogram_quantile(0, 0.0, 0, 0, [0, 0], 0, [], 0.5)"
        )
        .await,
        [None]
    );
    let arity = planning_error(&ctx, "SELECT exp_histogram_quantile(0, [1], 0.5)").await;
    assert!(arity.contains("takes eight arguments"), "{arity}");
    let scale = planning_error(
        &ctx,
        "SELECT exp_histogram_quantile('fine', 0.0, 0, 0, [1], 0, [], 0.5)",
    )
    .await;
    assert!(
        scale.contains("scale must be an integer, got Utf8"),
        "{scale}"
    );
}

#[tokio::test]
async fn percentile_sketch_is_within_one_percent_and_merges() {
    let ctx = session();
    // 1 is answered as (1 − α)·γ^0 = 0.99 exactly; the median of 1, 1, 3 is 1.
    assert_eq!(
        floats(
            &ctx,
            "SELECT percentile_sketch(x, 0.5) FROM (VALUES (1.0), (3.0), (1.0)) AS t(x)"
        )
        .await,
        [Some(0.99)]
    );
    // Evens and odds of 1..=10000, aggregated from partial states: the lower
    // rank 0.9 values are 9000 and 8999.
    let got = floats(
        &ctx,
        "SELECT percentile_sketch(CAST(value AS DOUBLE), 0.9) FROM generate_series(1, 10000)
         GROUP BY value % 2 ORDER BY value % 2",
    )
    .await;
    for (got, exact) in got.iter().zip([9000.0, 8999.0]) {
        let got = got.unwrap();
        assert!((got - exact).abs() / exact <= 0.01, "{got} vs {exact}");
    }
    assert_eq!(
        floats(
            &ctx,
            "SELECT percentile_sketch(x, 0.5) FROM (VALUES (CAST(NULL AS DOUBLE))) AS t(x)"
        )
        .await,
        [None]
    );
    let bad_q = planning_error(&ctx, "SELECT percentile_sketch(1.0, 1.5)").await;
    assert!(bad_q.contains("between 0 and 1"), "{bad_q}");
    let text = planning_error(&ctx, "SELECT percentile_sketch('slow', 0.5)").await;
    assert!(text.contains("needs a numeric column, got Utf8"), "{text}");
}

#[tokio::test]
async fn every_function_is_documented_with_an_example() {
    let ctx = session();
    let state = ctx.state();
    let scalar = [
        "time_bucket",
        "trace_id_hex",
        "histogram_quantile",
        "exp_histogram_quantile",
    ];
    let aggregate = ["percentile", "percentile_sketch", "bucket_sum"];
    let docs = scalar
        .iter()
        .map(|name| {
            (
                name,
                state.scalar_functions()[*name].documentation().cloned(),
            )
        })
        .chain(aggregate.iter().map(|name| {
            (
                name,
                state.aggregate_functions()[*name].documentation().cloned(),
            )
        }));
    for (name, doc) in docs {
        let doc = doc.unwrap_or_else(|| panic!("{name} has no documentation"));
        assert_eq!(doc.doc_section.label, "loadlens functions", "{name}");
        let example = doc.sql_example.unwrap_or_default();
        assert!(example.contains(&format!("{name}(")), "{name}: {example}");
    }
}

/// `t(g, x, y)`: three groups of skewed values, with NULLs.
fn register_samples(ctx: &SessionContext) {
    let n = 3000;
    let g: ArrayRef = Arc::new(StringArray::from_iter_values(
        (0..n).map(|i| ["a", "b", "c"][i % 3]),
    ));
    let x: ArrayRef =
        Arc::new(Float64Array::from_iter((0..n).map(|i| {
            (i % 97 != 0).then(|| ((i * 7919) % 1013) as f64 / 10.0)
        })));
    let y: ArrayRef = Arc::new(Float64Array::from_iter_values(
        (0..n).map(|i| ((i * 104_729) % 4999) as f64),
    ));
    register(ctx, "t", vec![("g", g), ("x", x), ("y", y)]);
}

/// All rows of `sql`, rendered as text.
async fn rows(ctx: &SessionContext, sql: &str) -> Vec<String> {
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string()
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn percentile_with_a_list_answers_each_quantile() {
    let ctx = session();
    register_samples(&ctx);
    let lists = column(
        &ctx,
        "SELECT percentile(x, [0.5, 0.9, 0.99]) FROM t GROUP BY g ORDER BY g",
    )
    .await;
    let lists = lists.as_list::<i32>();
    for (row, group) in ["a", "b", "c"].iter().enumerate() {
        let got: Vec<Option<f64>> = lists
            .value(row)
            .as_primitive::<Float64Type>()
            .iter()
            .collect();
        let mut expected = Vec::new();
        for q in [0.5, 0.9, 0.99] {
            let one = floats(
                &ctx,
                &format!("SELECT percentile(x, {q}) FROM t WHERE g = '{group}'"),
            )
            .await;
            expected.push(one[0]);
        }
        assert_eq!(got, expected, "group {group}");
    }
    for (sql, says) in [
        ("SELECT percentile(x, [0.5, 1.5]) FROM t", "between 0 and 1"),
        ("SELECT percentile(x, []) FROM t", "at least one number"),
        ("SELECT percentile(x, ['a']) FROM t", "list of numbers"),
        ("SELECT percentile(x, make_array(y)) FROM t", "literal"),
    ] {
        let text = planning_error(&ctx, sql).await;
        assert!(text.contains(says), "{sql}: {text}");
    }
}

#[tokio::test]
async fn percentile_calls_on_one_column_share_one_aggregate_and_answer_the_same() {
    let shared = session();
    // The same function without the rewrite, with its state in the form
    // written out between processes.
    let plain = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(4));
    plain.register_udaf(analyzer::functions::percentile::udaf(Exchange::Serialized));
    register_samples(&shared);
    register_samples(&plain);
    let sql = "SELECT g, percentile(x, 0.5) AS p50, COUNT(*) AS n, percentile(x, 0.99),
                      percentile(y, 0.5) AS y50, percentile(x, 0.9) AS p90,
                      percentile(x, 0.9) FILTER (WHERE y > 100) AS p90_busy,
                      percentile(x, 0.5) FILTER (WHERE y > 100) AS p50_busy
               FROM t GROUP BY g HAVING percentile(x, 0.99) > 1 ORDER BY p50 DESC, g";
    assert_eq!(rows(&shared, sql).await, rows(&plain, sql).await);

    let plan = rows(&shared, &format!("EXPLAIN {sql}")).await.join("\n");
    let partial = plan
        .lines()
        .find(|line| line.contains("AggregateExec: mode=Partial"))
        .unwrap_or_else(|| panic!("no partial aggregate in {plan}"));
    // x's three unfiltered quantiles (the HAVING one is the 0.99) in one
    // call, the filtered pair in another; y's single call stays as it was.
    assert_eq!(partial.matches("percentile(").count(), 3, "{partial}");
    assert!(
        partial.contains("percentile(t.x,List([0.5, 0.99, 0.9]))"),
        "{partial}"
    );
    assert!(
        partial.contains("percentile(t.x,List([0.9, 0.5])) FILTER"),
        "{partial}"
    );
    assert!(
        partial.contains("percentile(t.y,Float64(0.5))"),
        "{partial}"
    );
}
