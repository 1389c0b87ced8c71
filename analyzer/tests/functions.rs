//! The loadlens SQL functions on a plain session: exact results over literals
//! and small tables, and bad arguments refused while planning.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeBinaryArray, RecordBatch, StringArray,
    TimestampNanosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::prelude::{SessionConfig, SessionContext};

fn session() -> SessionContext {
    // Several partitions, so aggregates merge partial states as on real data.
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(4));
    analyzer::functions::register(&ctx);
    ctx
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
