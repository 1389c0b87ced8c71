//! `trace_id_hex(bytes)`: a trace or span id as the lowercase hex that tracing UIs show.

use std::sync::{Arc, LazyLock};

use arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use arrow::datatypes::DataType;
use datafusion::common::{Result, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

use super::args::{DOC_SECTION, all_scalar, columnar};

/// The function, ready to register.
pub fn udf() -> ScalarUDF {
    ScalarUDF::from(TraceIdHex::new())
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TraceIdHex {
    signature: Signature,
}

impl TraceIdHex {
    pub fn new() -> Self {
        TraceIdHex {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl Default for TraceIdHex {
    fn default() -> Self {
        Self::new()
    }
}

static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        DOC_SECTION,
        "Formats binary bytes, such as a trace or span id, as lowercase hex: 32 characters \
         for a trace id, 16 for a span id, the form Jaeger, Tempo and the W3C traceparent \
         header use. NULL gives NULL.",
        "trace_id_hex(bytes)",
    )
    .with_sql_example(
        "```sql\n> SELECT trace_id_hex(trace_id) AS trace, trace_id_hex(span_id) AS span, latency_ms\n  FROM requests ORDER BY latency_ms DESC LIMIT 5;\n```",
    )
    .with_argument(
        "bytes",
        "A FixedSizeBinary, Binary, LargeBinary or BinaryView value, such as the trace_id \
         and span_id columns.",
    )
    .build()
});

impl ScalarUDFImpl for TraceIdHex {
    fn name(&self) -> &str {
        "trace_id_hex"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let [bytes] = arg_types else {
            return plan_err!(
                "trace_id_hex takes one argument, a binary id such as trace_id; got {}",
                arg_types.len()
            );
        };
        match bytes {
            DataType::FixedSizeBinary(_)
            | DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView => Ok(vec![bytes.clone()]),
            DataType::Null => Ok(vec![DataType::Binary]),
            other => plan_err!(
                "trace_id_hex needs binary bytes such as the trace_id or span_id columns, got \
                 {other}; to write a number in hex use to_hex()"
            ),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [bytes] = args.args.as_slice() else {
            return exec_err!("trace_id_hex takes one argument, got {}", args.args.len());
        };
        let all_scalar = all_scalar(&args.args);
        columnar(hex(&bytes.to_array(1)?)?, all_scalar)
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOC)
    }
}

/// Hex of every value of a binary array.
fn hex(array: &ArrayRef) -> Result<ArrayRef> {
    let hexed = match array.data_type() {
        DataType::FixedSizeBinary(width) => {
            let len = array.len();
            hex_values(
                array.as_fixed_size_binary().iter(),
                len,
                len * *width as usize,
            )
        }
        DataType::Binary => {
            let array = array.as_binary::<i32>();
            hex_values(array.iter(), array.len(), array.values().len())
        }
        DataType::LargeBinary => {
            let array = array.as_binary::<i64>();
            hex_values(array.iter(), array.len(), array.values().len())
        }
        DataType::BinaryView => {
            let array = array.as_binary_view();
            hex_values(array.iter(), array.len(), array.total_bytes_len())
        }
        other => return exec_err!("trace_id_hex needs binary bytes, got {other}"),
    };
    Ok(Arc::new(hexed))
}

fn hex_values<'a>(
    values: impl Iterator<Item = Option<&'a [u8]>>,
    len: usize,
    bytes: usize,
) -> arrow::array::StringArray {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = StringBuilder::with_capacity(len, bytes * 2);
    let mut text = String::new();
    for value in values {
        match value {
            Some(value) => {
                text.clear();
                for byte in value {
                    text.push(DIGITS[usize::from(byte >> 4)] as char);
                    text.push(DIGITS[usize::from(byte & 0x0f)] as char);
                }
                out.append_value(&text);
            }
            None => out.append_null(),
        }
    }
    out.finish()
}

#[cfg(test)]
mod tests {
    use arrow::array::{BinaryArray, BinaryViewArray, FixedSizeBinaryArray, LargeBinaryArray};

    use super::*;

    fn strings(array: ArrayRef) -> Vec<Option<String>> {
        array
            .as_string::<i32>()
            .iter()
            .map(|s| s.map(str::to_string))
            .collect()
    }

    #[test]
    fn fixed_size_ids_become_lowercase_hex() {
        let trace_id = [
            0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e,
            0x47, 0x36,
        ];
        let array: ArrayRef = Arc::new(
            FixedSizeBinaryArray::try_from_sparse_iter_with_size(
                [Some(trace_id), None].into_iter(),
                16,
            )
            .unwrap(),
        );
        assert_eq!(
            strings(hex(&array).unwrap()),
            [Some("4bf92f3577b34da6a3ce929d0e0e4736".to_string()), None]
        );
    }

    #[test]
    fn every_binary_layout_gives_the_same_text() {
        let values: [Option<&[u8]>; 3] = [Some(&[0x00, 0x0f, 0xf0, 0xff]), Some(&[]), None];
        let expected = [Some("000ff0ff".to_string()), Some(String::new()), None];
        let arrays: [ArrayRef; 3] = [
            Arc::new(BinaryArray::from(values.to_vec())),
            Arc::new(LargeBinaryArray::from(values.to_vec())),
            Arc::new(BinaryViewArray::from(values.to_vec())),
        ];
        for array in arrays {
            assert_eq!(
                strings(hex(&array).unwrap()),
                expected,
                "{}",
                array.data_type()
            );
        }
    }

    #[test]
    fn refuses_numbers_and_strings_when_planning() {
        let f = TraceIdHex::new();
        let message = f.coerce_types(&[DataType::Int64]).unwrap_err().to_string();
        assert!(message.contains("got Int64"), "{message}");
        assert!(f.coerce_types(&[DataType::Utf8]).is_err());
        assert_eq!(
            f.coerce_types(&[DataType::FixedSizeBinary(8)]).unwrap(),
            [DataType::FixedSizeBinary(8)]
        );
    }
}
