//! A plan rewrite: `column = 'short string'` in a filter compares each row's
//! 16-byte string view with one number, without branches.
//!
//! The tables declare their strings as `Utf8View`. A view of a string of up
//! to 12 bytes holds the length (4 bytes, little-endian) and the bytes
//! themselves. So a row equals a literal of `n ≤ 12` bytes exactly when the
//! first `4 + n` bytes of its view equal the literal's: a row of another
//! length differs in its length, and one longer than 12 bytes (whose view
//! holds a prefix and where the rest is) has another length too. Arrow's own
//! kernel takes each row through length, prefix and buffer checks, with
//! branches the data decides; the filters of the `requests` view
//! (`kind = 'CLIENT'`, `status_code = 'ERROR'`) spent a fifth of the error
//! counts' time there (BENCHMARKS.md, "Analyzer").
//!
//! Only filters are rewritten: that is where such comparisons run over
//! every row. The rewritten expression prints and
//! behaves as the comparison it replaces, and evaluates through it whenever
//! the input is not a string-view array.
//!
//! The rule runs after DataFusion's own, so filter pushdown and pruning
//! have already seen the plain comparison. What the rewritten filter no
//! longer tells the operators above it is that the column is constant in
//! its output. The rows are the same; an operator above may only pick a
//! mode that makes less use of that (rebuilt by this rule, it recomputes its
//! properties).

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use arrow::array::{Array, AsArray, BooleanArray};
use arrow::buffer::{BooleanBuffer, MutableBuffer};
use arrow::datatypes::{DataType, Schema};
use arrow::record_batch::RecordBatch;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, Operator};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{BinaryExpr, Literal};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::filter::FilterExecBuilder;

use super::rewrite_filters;

/// The rule.
#[derive(Debug, Default)]
pub struct ShortStringEq;

impl PhysicalOptimizerRule for ShortStringEq {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        rewrite_filters(plan, |filter| {
            let schema = filter.input().schema();
            let predicate =
                Arc::clone(filter.predicate()).transform_up(|expr| Ok(rewrite(expr, &schema)))?;
            if !predicate.transformed {
                return Ok(None);
            }
            let filter = FilterExecBuilder::from(filter)
                .with_predicate(predicate.data)
                .build()?;
            Ok(Some(Arc::new(filter) as Arc<dyn ExecutionPlan>))
        })
    }

    fn name(&self) -> &str {
        "short_string_eq"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// `expr` as a [`ShortEq`] when it is `= or <>` between a string-view
/// expression and a literal of at most 12 bytes (either side).
fn rewrite(expr: Arc<dyn PhysicalExpr>, schema: &Schema) -> Transformed<Arc<dyn PhysicalExpr>> {
    let Some(binary) = expr.downcast_ref::<BinaryExpr>() else {
        return Transformed::no(expr);
    };
    if !matches!(binary.op(), Operator::Eq | Operator::NotEq) {
        return Transformed::no(expr);
    }
    let (value, literal, value_left) =
        match (literal_text(binary.left()), literal_text(binary.right())) {
            (None, Some(text)) => (binary.left(), text, true),
            (Some(text), None) => (binary.right(), text, false),
            _ => return Transformed::no(expr),
        };
    let is_view = value
        .data_type(schema)
        .is_ok_and(|ty| ty == DataType::Utf8View);
    match ShortView::new(literal.as_bytes()) {
        Some(target) if is_view => Transformed::yes(Arc::new(ShortEq {
            original: binary.clone(),
            value_left,
            target,
        })),
        _ => Transformed::no(expr),
    }
}

fn literal_text(expr: &Arc<dyn PhysicalExpr>) -> Option<&str> {
    match expr.downcast_ref::<Literal>()?.value() {
        ScalarValue::Utf8View(Some(text)) => Some(text.as_str()),
        _ => None,
    }
}

/// The view of a string of at most 12 bytes, and which of its bits matter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ShortView {
    view: u128,
    mask: u128,
}

impl ShortView {
    fn new(bytes: &[u8]) -> Option<ShortView> {
        if bytes.len() > 12 {
            return None;
        }
        let mut view = [0u8; 16];
        view[..4].copy_from_slice(&(bytes.len() as u32).to_le_bytes());
        view[4..4 + bytes.len()].copy_from_slice(bytes);
        let bits = 32 + 8 * bytes.len();
        Some(ShortView {
            view: u128::from_le_bytes(view),
            mask: if bits == 128 {
                u128::MAX
            } else {
                (1 << bits) - 1
            },
        })
    }

    /// One bit per view: whether it is this string (or is not, `negated`).
    fn compare(&self, views: &[u128], negated: bool) -> BooleanBuffer {
        let flip = if negated { u64::MAX } else { 0 };
        // Whole words of 64 views, then the rest: a loop of a known length
        // that the compiler unrolls into vector compares.
        let word = |views: &[u128]| {
            views.iter().enumerate().fold(0u64, |word, (bit, view)| {
                word | u64::from(view & self.mask == self.view) << bit
            }) ^ flip
        };
        let (whole, rest) = views.as_chunks::<64>();
        let mut words = MutableBuffer::new(views.len().div_ceil(64) * 8);
        // Bit `i` of the buffer is byte `i / 8`: little-endian words.
        for chunk in whole {
            words.push(word(chunk).to_le());
        }
        if !rest.is_empty() {
            words.push(word(rest).to_le());
        }
        BooleanBuffer::new(words.into(), 0, views.len())
    }
}

/// `value = 'literal'` (or `<>`) with a literal of at most 12 bytes.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ShortEq {
    /// The comparison this replaces: what it prints as, and how it is
    /// evaluated when the value is not a string-view array.
    original: BinaryExpr,
    /// Whether the value is on the left of the literal.
    value_left: bool,
    target: ShortView,
}

impl ShortEq {
    fn value(&self) -> &Arc<dyn PhysicalExpr> {
        if self.value_left {
            self.original.left()
        } else {
            self.original.right()
        }
    }
}

impl fmt::Display for ShortEq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.original.fmt(f)
    }
}

impl PhysicalExpr for ShortEq {
    fn data_type(&self, _input_schema: &Schema) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn nullable(&self, input_schema: &Schema) -> Result<bool> {
        self.value().nullable(input_schema)
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ColumnarValue> {
        match self.value().evaluate(batch)? {
            ColumnarValue::Array(array) if array.data_type() == &DataType::Utf8View => {
                let strings = array.as_string_view();
                let negated = *self.original.op() == Operator::NotEq;
                let values = self.target.compare(strings.views(), negated);
                Ok(ColumnarValue::Array(Arc::new(BooleanArray::new(
                    values,
                    strings.nulls().cloned(),
                ))))
            }
            _ => self.original.evaluate(batch),
        }
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        vec![self.value()]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn PhysicalExpr>>,
    ) -> Result<Arc<dyn PhysicalExpr>> {
        let [value] = <[_; 1]>::try_from(children).map_err(|children| {
            datafusion::common::DataFusionError::Internal(format!(
                "ShortEq takes one child, got {}",
                children.len()
            ))
        })?;
        let binary = &self.original;
        let (left, right) = if self.value_left {
            (value, Arc::clone(binary.right()))
        } else {
            (Arc::clone(binary.left()), value)
        };
        Ok(Arc::new(ShortEq {
            original: BinaryExpr::new(left, *binary.op(), right),
            ..*self
        }))
    }

    fn fmt_sql(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.original.fmt_sql(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, StringArray, StringViewArray};
    use arrow::datatypes::Field;
    use datafusion::common::tree_node::TreeNodeRecursion;
    use datafusion::datasource::MemTable;
    use datafusion::physical_expr::expressions::col;
    use datafusion::physical_plan::filter::FilterExec;
    use datafusion::prelude::SessionContext;

    /// Strings that share prefixes and lengths with the literals below, and
    /// long ones whose views hold only a prefix.
    fn words() -> Vec<Option<&'static str>> {
        let base = [
            Some("ERROR"),
            Some("ERRO"),
            Some("ERRORS"),
            Some(""),
            None,
            Some("UNSET"),
            Some("CLIENT"),
            Some("CLIENT\0"),
            Some("twelve bytes"),
            Some("twelve byteS"),
            Some("twelve bytes!"),
            Some("ERROR but longer than twelve"),
            Some("OK"),
        ];
        // 200 rows: three whole words of 64 views and a remainder.
        base.iter().cycle().take(200).copied().collect()
    }

    fn literals() -> [&'static str; 6] {
        ["ERROR", "", "CLIENT", "twelve bytes", "OK", "absent"]
    }

    /// What Arrow's own comparison says, row by row.
    fn expected(rows: &[Option<&str>], literal: &str, negated: bool) -> Vec<Option<bool>> {
        rows.iter()
            .map(|row| row.map(|text| (text == literal) != negated))
            .collect()
    }

    fn evaluate(expr: &Arc<dyn PhysicalExpr>, batch: &RecordBatch) -> Vec<Option<bool>> {
        let array = expr
            .evaluate(batch)
            .unwrap()
            .into_array(batch.num_rows())
            .unwrap();
        array.as_boolean().iter().collect()
    }

    fn batch(array: ArrayRef) -> RecordBatch {
        let schema = Schema::new(vec![Field::new("s", array.data_type().clone(), true)]);
        RecordBatch::try_new(Arc::new(schema), vec![array]).unwrap()
    }

    fn comparison(
        batch: &RecordBatch,
        literal: &str,
        op: Operator,
        value_left: bool,
    ) -> Arc<dyn PhysicalExpr> {
        let value = col("s", &batch.schema()).unwrap();
        let literal: Arc<dyn PhysicalExpr> = Arc::new(Literal::new(ScalarValue::Utf8View(Some(
            literal.to_string(),
        ))));
        let (left, right) = if value_left {
            (value, literal)
        } else {
            (literal, value)
        };
        Arc::new(BinaryExpr::new(left, op, right))
    }

    #[test]
    fn rewritten_comparisons_agree_with_arrow_on_every_row() {
        let rows = words();
        // Offset 3: the views of a slice start mid-buffer.
        for offset in [0, 3] {
            let array = StringViewArray::from(rows.clone()).slice(offset, rows.len() - offset);
            let batch = batch(Arc::new(array));
            let rows = &rows[offset..];
            for literal in literals() {
                for (op, negated) in [(Operator::Eq, false), (Operator::NotEq, true)] {
                    for value_left in [true, false] {
                        let original = comparison(&batch, literal, op, value_left);
                        let rewritten = rewrite(Arc::clone(&original), &batch.schema());
                        assert!(rewritten.transformed, "{original} was not rewritten");
                        assert!(rewritten.data.downcast_ref::<ShortEq>().is_some());
                        let want = expected(rows, literal, negated);
                        assert_eq!(evaluate(&rewritten.data, &batch), want, "{original}");
                        assert_eq!(evaluate(&original, &batch), want, "{original}");
                    }
                }
            }
        }
    }

    #[test]
    fn leaves_alone_what_it_cannot_compare_exactly() {
        let views = batch(Arc::new(StringViewArray::from(words())));
        let long = comparison(&views, "thirteen byte", Operator::Eq, true);
        assert!(!rewrite(long, &views.schema()).transformed);
        let less = comparison(&views, "OK", Operator::Lt, true);
        assert!(!rewrite(less, &views.schema()).transformed);

        // Utf8 rather than Utf8View: Arrow's kernel is the one that applies.
        let plain = batch(Arc::new(StringArray::from(words())));
        let value = col("s", &plain.schema()).unwrap();
        let literal: Arc<dyn PhysicalExpr> =
            Arc::new(Literal::new(ScalarValue::Utf8(Some("OK".to_string()))));
        let expr: Arc<dyn PhysicalExpr> = Arc::new(BinaryExpr::new(value, Operator::Eq, literal));
        assert!(!rewrite(expr, &plain.schema()).transformed);
    }

    #[test]
    fn a_value_that_is_not_a_view_array_goes_through_the_original() {
        // Both sides literal: the value evaluates to a scalar, not an array.
        let views = batch(Arc::new(StringViewArray::from(vec![Some("a"), None])));
        let literal = |text: &str| -> Arc<dyn PhysicalExpr> {
            Arc::new(Literal::new(ScalarValue::Utf8View(Some(text.to_string()))))
        };
        let original = BinaryExpr::new(literal("OK"), Operator::Eq, literal("OK"));
        let expr: Arc<dyn PhysicalExpr> = Arc::new(ShortEq {
            original,
            value_left: true,
            target: ShortView::new(b"OK").unwrap(),
        });
        assert_eq!(evaluate(&expr, &views), vec![Some(true), Some(true)]);
        assert_eq!(expr.to_string(), "OK = OK");
    }

    #[test]
    fn masks_cover_the_length_and_the_bytes() {
        assert_eq!(ShortView::new(b"").unwrap().mask, u128::from(u32::MAX));
        assert_eq!(ShortView::new(b"twelve bytes").unwrap().mask, u128::MAX);
        assert!(ShortView::new(b"thirteen byte").is_none());
    }

    async fn count(ctx: &SessionContext, sql: &str) -> (i64, Arc<dyn ExecutionPlan>) {
        let frame = ctx.sql(sql).await.unwrap();
        let plan = frame.clone().create_physical_plan().await.unwrap();
        let batches = frame.collect().await.unwrap();
        let count = batches[0]
            .column(0)
            .as_primitive::<arrow::datatypes::Int64Type>()
            .value(0);
        (count, plan)
    }

    fn rewritten_filters(plan: &Arc<dyn ExecutionPlan>) -> usize {
        let mut found = 0;
        plan.apply(|node| {
            if let Some(filter) = node.downcast_ref::<FilterExec>() {
                filter.predicate().apply(|expr| {
                    found += usize::from(expr.downcast_ref::<ShortEq>().is_some());
                    Ok(TreeNodeRecursion::Continue)
                })?;
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .unwrap();
        found
    }

    #[tokio::test]
    async fn plans_with_the_rule_count_what_plans_without_it_count() {
        let table = batch(Arc::new(StringViewArray::from(words())));
        let (with_rule, without) = super::super::tests::sessions(ShortStringEq);
        for ctx in [&with_rule, &without] {
            let mem = MemTable::try_new(table.schema(), vec![vec![table.clone()]]).unwrap();
            ctx.register_table("t", Arc::new(mem)).unwrap();
        }
        for (sql, rewrites) in [
            ("SELECT count(*) FROM t WHERE s = 'ERROR'", 1),
            ("SELECT count(*) FROM t WHERE 'CLIENT' <> s AND s <> ''", 2),
            (
                "SELECT count(*) FROM t WHERE s = 'ERROR but longer than twelve'",
                0,
            ),
            ("SELECT count(*) FROM t WHERE s IS NOT NULL AND s = 'OK'", 1),
        ] {
            let (got, plan) = count(&with_rule, sql).await;
            let (want, _) = count(&without, sql).await;
            assert_eq!(got, want, "{sql}");
            assert!(want > 0, "{sql} counts nothing: a weak test");
            assert_eq!(rewritten_filters(&plan), rewrites, "{sql}");
        }
    }
}
