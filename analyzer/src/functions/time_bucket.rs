//! `time_bucket(width, ts)`: floors a timestamp to the start of its bucket.
//!
//! Buckets are aligned to the Unix epoch in UTC, as TimescaleDB's
//! `time_bucket` aligns widths that divide a day: '1 minute' buckets start on
//! whole minutes and '1 day' buckets at UTC midnight whatever the column's time
//! zone. Widths that do not divide a day keep the epoch as origin, so '7 days'
//! buckets start on Thursdays (1970-01-01 was one), where TimescaleDB starts
//! them on Mondays. A width is a fixed length of time; months and years, whose
//! length varies, are refused.

use std::sync::{Arc, LazyLock};

use arrow::array::{ArrayRef, AsArray, PrimitiveArray};
use arrow::compute::kernels::cast_utils::parse_interval_month_day_nano;
use arrow::datatypes::{
    ArrowTimestampType, DataType, Field, FieldRef, IntervalUnit, TimeUnit,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType,
};
use arrow::error::ArrowError;
use datafusion::common::{Result, ScalarValue, exec_err, internal_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};

use super::args::{DOC_SECTION, all_scalar, columnar};

const NANOS_PER_DAY: i128 = 86_400_000_000_000;

/// The function, ready to register.
pub fn udf() -> ScalarUDF {
    ScalarUDF::from(TimeBucket::new())
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TimeBucket {
    signature: Signature,
}

impl TimeBucket {
    pub fn new() -> Self {
        TimeBucket {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl Default for TimeBucket {
    fn default() -> Self {
        Self::new()
    }
}

static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        DOC_SECTION,
        "Floors a timestamp to the start of its bucket. Buckets are aligned to the Unix \
         epoch in UTC: '1 minute' buckets start on whole minutes, '1 day' buckets at UTC \
         midnight, and timestamps before 1970 floor towards the past. The result has the \
         timestamp's own type; a NULL width or timestamp gives NULL.",
        "time_bucket(width, timestamp)",
    )
    .with_sql_example(
        "```sql\n> SELECT time_bucket(INTERVAL '10 seconds', end_time) AS t, count(*) AS requests\n  FROM requests GROUP BY t ORDER BY t;\n```",
    )
    .with_argument(
        "width",
        "The bucket width: an interval such as INTERVAL '10 seconds', or a string such as \
         '10s', '500ms', '2m', '1h' or '1 minute'. Must be positive; months and years are \
         refused because their length varies.",
    )
    .with_argument("timestamp", "A timestamp of any unit and time zone.")
    .build()
});

impl ScalarUDFImpl for TimeBucket {
    fn name(&self) -> &str {
        "time_bucket"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let [width, ts] = arg_types else {
            return plan_err!(
                "time_bucket takes two arguments, a width and a timestamp, as in \
                 time_bucket(INTERVAL '10 seconds', end_time); got {}",
                arg_types.len()
            );
        };
        let width = match width {
            DataType::Interval(_)
            | DataType::Duration(_)
            | DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View => width.clone(),
            DataType::Null => DataType::Interval(IntervalUnit::MonthDayNano),
            other => {
                return plan_err!(
                    "time_bucket's width must be an interval such as INTERVAL '10 seconds' \
                     or a string such as '10s', got {other}"
                );
            }
        };
        let ts = match ts {
            DataType::Timestamp(..) => ts.clone(),
            DataType::Null => DataType::Timestamp(TimeUnit::Nanosecond, None),
            other => {
                return plan_err!(
                    "time_bucket's second argument must be a timestamp, got {other}; \
                     convert it with to_timestamp(...) first"
                );
            }
        };
        Ok(vec![width, ts])
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        internal_err!("time_bucket's type comes from return_field_from_args")
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        // A literal width is checked now, so a bad one fails before any data is read.
        if let Some(Some(width)) = args.scalar_arguments.first()
            && let Err(message) = width_nanos(width)
        {
            return plan_err!("{message}");
        }
        let Some(ts) = args.arg_fields.get(1) else {
            return plan_err!("time_bucket takes two arguments, a width and a timestamp");
        };
        Ok(Arc::new(Field::new(
            self.name(),
            ts.data_type().clone(),
            true,
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [width, ts] = args.args.as_slice() else {
            return exec_err!("time_bucket takes two arguments, got {}", args.args.len());
        };
        let widths = match width {
            ColumnarValue::Scalar(width) => {
                Widths::One(width_nanos(width).or_else(|m| exec_err!("{m}"))?)
            }
            ColumnarValue::Array(widths) => Widths::PerRow(
                (0..widths.len())
                    .map(|row| {
                        let width = ScalarValue::try_from_array(widths, row)?;
                        width_nanos(&width).or_else(|m| exec_err!("{m}"))
                    })
                    .collect::<Result<_>>()?,
            ),
        };
        let all_scalar = all_scalar(&args.args);
        let ts = ts.to_array(if all_scalar { 1 } else { args.number_rows })?;
        let bucketed = match ts.data_type() {
            DataType::Timestamp(TimeUnit::Second, tz) => {
                floor_all::<TimestampSecondType>(&ts, &widths, tz.clone())
            }
            DataType::Timestamp(TimeUnit::Millisecond, tz) => {
                floor_all::<TimestampMillisecondType>(&ts, &widths, tz.clone())
            }
            DataType::Timestamp(TimeUnit::Microsecond, tz) => {
                floor_all::<TimestampMicrosecondType>(&ts, &widths, tz.clone())
            }
            DataType::Timestamp(TimeUnit::Nanosecond, tz) => {
                floor_all::<TimestampNanosecondType>(&ts, &widths, tz.clone())
            }
            other => return exec_err!("time_bucket needs a timestamp, got {other}"),
        }?;
        columnar(bucketed, all_scalar)
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOC)
    }
}

/// Bucket widths in nanoseconds; `None` for a NULL width.
enum Widths {
    One(Option<i128>),
    PerRow(Vec<Option<i128>>),
}

/// The width in nanoseconds; `Ok(None)` for NULL, `Err` with a message for the user.
fn width_nanos(width: &ScalarValue) -> Result<Option<i128>, String> {
    let nanos = match width {
        ScalarValue::IntervalMonthDayNano(Some(v)) => {
            fixed_length(v.months, v.days, i128::from(v.nanoseconds))?
        }
        ScalarValue::IntervalDayTime(Some(v)) => {
            fixed_length(0, v.days, i128::from(v.milliseconds) * 1_000_000)?
        }
        ScalarValue::IntervalYearMonth(Some(months)) => fixed_length(*months, 0, 0)?,
        ScalarValue::DurationSecond(Some(n)) => i128::from(*n) * 1_000_000_000,
        ScalarValue::DurationMillisecond(Some(n)) => i128::from(*n) * 1_000_000,
        ScalarValue::DurationMicrosecond(Some(n)) => i128::from(*n) * 1_000,
        ScalarValue::DurationNanosecond(Some(n)) => i128::from(*n),
        ScalarValue::Utf8(Some(text))
        | ScalarValue::LargeUtf8(Some(text))
        | ScalarValue::Utf8View(Some(text)) => parse_width(text)?,
        other if other.is_null() => return Ok(None),
        other => {
            return Err(format!(
                "time_bucket's width must be an interval or a string, got {}",
                other.data_type()
            ));
        }
    };
    if nanos <= 0 {
        return Err(format!(
            "time_bucket's width must be positive, got {}s; write INTERVAL '10 seconds' or '10s'",
            nanos as f64 / 1e9
        ));
    }
    Ok(Some(nanos))
}

/// Days and nanoseconds as nanoseconds (a day is 86,400 s: buckets are in UTC).
fn fixed_length(months: i32, days: i32, nanos: i128) -> Result<i128, String> {
    if months != 0 {
        return Err(format!(
            "time_bucket's width cannot contain months or years (got {months} month(s)) because \
             their length varies; use days, such as INTERVAL '30 days', or date_trunc('month', ts) \
             for calendar months"
        ));
    }
    Ok(i128::from(days) * NANOS_PER_DAY + nanos)
}

/// '10s', '500ms', '2m', '1h' as scenario files write durations, else the
/// long forms of SQL intervals such as '10 seconds' or '1 day'.
fn parse_width(text: &str) -> Result<i128, String> {
    if let Ok(duration) = schema::units::parse_duration(text) {
        return Ok(duration.as_nanos() as i128);
    }
    match parse_interval_month_day_nano(text) {
        Ok(v) => fixed_length(v.months, v.days, i128::from(v.nanoseconds)),
        Err(_) => Err(format!(
            "time_bucket cannot read the width '{text}': write it as '10s', '500ms', '2m', '1h', \
             '1 minute' or INTERVAL '10 seconds'"
        )),
    }
}

/// Floors every timestamp of `ts` (of type `T`) to its bucket.
fn floor_all<T: ArrowTimestampType>(
    ts: &ArrayRef,
    widths: &Widths,
    tz: Option<Arc<str>>,
) -> Result<ArrayRef> {
    let unit = nanos_per_unit(T::UNIT);
    let ts = ts.as_primitive::<T>();
    let floored: PrimitiveArray<T> = match widths {
        Widths::One(None) => PrimitiveArray::new_null(ts.len()),
        // The common case: a whole number of the timestamp's unit, in i64.
        Widths::One(Some(width))
            if width % i128::from(unit) == 0
                && width / i128::from(unit) <= i128::from(i64::MAX) =>
        {
            let width = (width / i128::from(unit)) as i64;
            ts.try_unary(|t| {
                t.checked_sub(t.rem_euclid(width))
                    .ok_or_else(|| out_of_range(t))
            })?
        }
        Widths::One(Some(width)) => ts.try_unary(|t| floor(t, unit, *width))?,
        Widths::PerRow(widths) => ts
            .iter()
            .zip(widths)
            .map(|(t, width)| match (t, width) {
                (Some(t), Some(width)) => floor(t, unit, *width).map(Some),
                _ => Ok(None),
            })
            .collect::<Result<_, ArrowError>>()?,
    };
    Ok(Arc::new(floored.with_timezone_opt(tz)))
}

/// The start of the bucket of `ts` (in units of `unit` nanoseconds), floored
/// towards the past in both the bucket and the unit.
fn floor(ts: i64, unit: i64, width: i128) -> Result<i64, ArrowError> {
    let nanos = i128::from(ts) * i128::from(unit);
    let start = nanos - nanos.rem_euclid(width);
    i64::try_from(start.div_euclid(i128::from(unit))).map_err(|_| out_of_range(ts))
}

fn out_of_range(ts: i64) -> ArrowError {
    ArrowError::ComputeError(format!(
        "time_bucket: the bucket of timestamp {ts} starts before the earliest representable time"
    ))
}

fn nanos_per_unit(unit: TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => 1_000_000_000,
        TimeUnit::Millisecond => 1_000_000,
        TimeUnit::Microsecond => 1_000,
        TimeUnit::Nanosecond => 1,
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, TimestampSecondArray};
    use arrow::datatypes::IntervalMonthDayNano;

    use super::*;

    const SECOND: i64 = 1_000_000_000;

    fn width(text: &str) -> Result<Option<i128>, String> {
        width_nanos(&ScalarValue::Utf8(Some(text.to_string())))
    }

    #[test]
    fn floors_towards_the_past() {
        // 65 s into the epoch, 1-minute buckets.
        assert_eq!(floor(65, SECOND, 60 * 1_000_000_000).unwrap(), 60);
        // 5 s before the epoch falls in [-10 s, 0 s).
        assert_eq!(floor(-5, SECOND, 10 * 1_000_000_000).unwrap(), -10);
        // A bucket start is its own bucket.
        assert_eq!(floor(-10, SECOND, 10 * 1_000_000_000).unwrap(), -10);
        // 2024-05-01T12:34:56.789Z in nanoseconds, 10-second buckets.
        assert_eq!(
            floor(1_714_566_896_789_000_000, 1, 10 * 1_000_000_000).unwrap(),
            1_714_566_890_000_000_000
        );
    }

    #[test]
    fn widths_finer_than_the_unit_floor_twice() {
        // Seconds with 1.5 s buckets: 1 s is in [0, 1.5), 2 s in [1.5, 3) whose
        // start floors to 1 s, -1 s in [-1.5, 0) whose start floors to -2 s.
        let ts: ArrayRef = Arc::new(
            TimestampSecondArray::from(vec![Some(1), Some(2), Some(-1), None]).with_timezone("UTC"),
        );
        let out = floor_all::<TimestampSecondType>(
            &ts,
            &Widths::One(Some(1_500_000_000)),
            Some("UTC".into()),
        )
        .unwrap();
        assert_eq!(
            out.data_type(),
            &DataType::Timestamp(TimeUnit::Second, Some("UTC".into()))
        );
        let out = out.as_primitive::<TimestampSecondType>();
        assert_eq!(
            out.iter().collect::<Vec<_>>(),
            [Some(0), Some(1), Some(-2), None]
        );
    }

    #[test]
    fn whole_unit_widths_take_the_i64_path() {
        let ts: ArrayRef = Arc::new(TimestampSecondArray::from(vec![59, 60, -1, i64::MIN]));
        let out =
            floor_all::<TimestampSecondType>(&ts, &Widths::One(Some(60 * 1_000_000_000)), None);
        // i64::MIN seconds has no minute start inside the i64 range.
        let message = out.unwrap_err().to_string();
        assert!(message.contains("earliest representable"), "{message}");
        let ts: ArrayRef = Arc::new(TimestampSecondArray::from(vec![59, 60, -1]));
        let out =
            floor_all::<TimestampSecondType>(&ts, &Widths::One(Some(60 * 1_000_000_000)), None)
                .unwrap();
        let out = out.as_primitive::<TimestampSecondType>();
        assert_eq!(out.values().as_ref(), [0, 60, -60]);
    }

    #[test]
    fn per_row_widths_and_nulls() {
        let ts: ArrayRef = Arc::new(TimestampSecondArray::from(vec![Some(61), Some(61), None]));
        let widths = Widths::PerRow(vec![Some(10 * 1_000_000_000), None, Some(1_000_000_000)]);
        let out = floor_all::<TimestampSecondType>(&ts, &widths, None).unwrap();
        let out = out.as_primitive::<TimestampSecondType>();
        assert_eq!(out.iter().collect::<Vec<_>>(), [Some(60), None, None]);
    }

    #[test]
    fn reads_short_and_long_widths() {
        assert_eq!(width("10s"), Ok(Some(10_000_000_000)));
        assert_eq!(width("500ms"), Ok(Some(500_000_000)));
        assert_eq!(width("2m"), Ok(Some(120_000_000_000)));
        assert_eq!(width("1 minute"), Ok(Some(60_000_000_000)));
        assert_eq!(width("10 seconds"), Ok(Some(10_000_000_000)));
        assert_eq!(width("1 day"), Ok(Some(86_400_000_000_000)));
        let interval = ScalarValue::IntervalMonthDayNano(Some(IntervalMonthDayNano::new(0, 1, 5)));
        assert_eq!(width_nanos(&interval), Ok(Some(86_400_000_000_005)));
        assert_eq!(
            width_nanos(&ScalarValue::DurationMillisecond(Some(250))),
            Ok(Some(250_000_000))
        );
        assert_eq!(width_nanos(&ScalarValue::Utf8(None)), Ok(None));
        assert_eq!(
            width_nanos(&ScalarValue::IntervalMonthDayNano(None)),
            Ok(None)
        );
    }

    #[test]
    fn refuses_months_zero_and_nonsense() {
        let month = ScalarValue::IntervalMonthDayNano(Some(IntervalMonthDayNano::new(1, 0, 0)));
        assert!(width_nanos(&month).unwrap_err().contains("months or years"));
        assert!(width("1 month").unwrap_err().contains("months or years"));
        assert!(width("0s").unwrap_err().contains("must be positive"));
        assert!(
            width("-10 seconds")
                .unwrap_err()
                .contains("must be positive, got -10s")
        );
        assert!(
            width("soon")
                .unwrap_err()
                .contains("cannot read the width 'soon'")
        );
        let number = ScalarValue::Int64(Some(10));
        assert!(width_nanos(&number).unwrap_err().contains("got Int64"));
    }
}
