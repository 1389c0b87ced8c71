//! `percentile(value, q)`: the exact q-quantile of a column.
//!
//! DataFusion's own `percentile_cont` rounds the interpolation weight to six
//! decimals (`INTERPOLATION_PRECISION` in datafusion-functions-aggregate 55), so
//! it is close to but not exactly the textbook value. This one keeps every
//! value and interpolates linearly between the closest ranks exactly as numpy's
//! default `method="linear"` does (Hyndman & Fan type 7), so results can be
//! checked against numpy bit for bit.
//!
//! `percentile(value, [q1, q2, …])` answers several quantiles from one copy
//! of the values, as a list; separate calls on one column are planned that
//! way (see [`super::share`]).

use std::sync::{Arc, LazyLock};

use arrow::array::builder::make_view;
use arrow::array::{
    Array, ArrayRef, AsArray, BinaryViewArray, BooleanArray, ByteView, Float64Array,
    Float64Builder, ListArray, ListBuilder,
};
use arrow::buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Documentation, EmitTo, GroupsAccumulator,
    Signature, Volatility,
};

use super::args::{DOC_SECTION, coerce_float_list, float_list, list_item, literal_quantile};

/// The function's SQL name.
pub const NAME: &str = "percentile";

/// The function, ready to register, for state exchanged as `exchange` says.
pub fn udaf(exchange: Exchange) -> AggregateUDF {
    AggregateUDF::from(Percentile::new(exchange))
}

/// How the state goes from the partial to the final aggregate, which
/// decides its form (see [`StateBuilder`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Exchange {
    /// Within one process, as Arrow arrays in memory: long pieces of values
    /// travel as views of their buffers, not copied.
    InProcess,
    /// Written out between processes (a Ballista shuffle): every value in
    /// one list of floats per group, so that each is written once.
    Serialized,
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Percentile {
    signature: Signature,
    exchange: Exchange,
}

impl Percentile {
    pub fn new(exchange: Exchange) -> Self {
        Percentile {
            signature: Signature::user_defined(Volatility::Immutable),
            exchange,
        }
    }
}

static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        DOC_SECTION,
        "The exact q-quantile of the values, interpolating linearly between the two \
         closest ranks (numpy's default method, Hyndman & Fan type 7). Keeps every \
         value of a group in memory.",
        "percentile(expression, q)",
    )
    .with_sql_example(
        "```sql\n> SELECT step, percentile(latency_ms, 0.99) AS p99 FROM requests GROUP BY step;\n\
         > SELECT step, percentile(latency_ms, [0.5, 0.99]) AS p50_p99 FROM requests GROUP BY step;\n```",
    )
    .with_standard_argument("expression", Some("Numeric"))
    .with_argument(
        "q",
        "The quantile, a literal between 0 and 1 (0.99 for p99); or a list of them, \
         answered as a list from one copy of the values. Separate calls on the same \
         column in one query share their values the same way.",
    )
    .build()
});

impl AggregateUDFImpl for Percentile {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let [value, q] = arg_types else {
            return plan_err!(
                "percentile takes two arguments, a numeric column and a quantile such as 0.99; got {}",
                arg_types.len()
            );
        };
        if !(value.is_numeric() || value.is_null()) {
            return plan_err!("percentile needs a numeric column, got {value}; cast it first");
        }
        if list_item(q).is_some() {
            return Ok(vec![
                DataType::Float64,
                coerce_float_list(NAME, "quantile list", q)?,
            ]);
        }
        if !(q.is_numeric() || q.is_null()) {
            return plan_err!(
                "percentile's quantile must be a number between 0 and 1 or a list of them, got {q}"
            );
        }
        Ok(vec![DataType::Float64, DataType::Float64])
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types.get(1).and_then(list_item) {
            Some(_) => Ok(float_list()),
            None => Ok(DataType::Float64),
        }
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let field = |name, data_type| {
            Arc::new(Field::new(
                format_state_name(args.name, name),
                data_type,
                true,
            ))
        };
        let values = field("values", DataType::List(float_field()));
        Ok(match self.exchange {
            Exchange::Serialized => vec![values],
            Exchange::InProcess => vec![values, field("pieces", DataType::List(piece_field()))],
        })
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(PercentileAccumulator {
            quantiles: Quantiles::of(&args)?,
            exchange: self.exchange,
            values: Values::default(),
        }))
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(PercentileGroups {
            quantiles: Quantiles::of(&args)?,
            exchange: self.exchange,
            groups: Vec::new(),
            bytes: 0,
        }))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOC)
    }
}

/// What one call answers: a quantile, or a list of them.
#[derive(Debug, Clone, PartialEq)]
enum Quantiles {
    One(f64),
    Many(Vec<f64>),
}

impl Quantiles {
    /// The literal second argument, checked when the plan is built.
    fn of(args: &AccumulatorArgs) -> Result<Quantiles> {
        let is_list = args
            .exprs
            .get(1)
            .and_then(|e| e.data_type(args.schema).ok())
            .is_some_and(|t| list_item(&t).is_some());
        if !is_list {
            return literal_quantile(NAME, args).map(Quantiles::One);
        }
        // A constant evaluates on an empty batch; a column reference does not.
        let empty = arrow::record_batch::RecordBatch::new_empty(Arc::new(
            arrow::datatypes::Schema::empty(),
        ));
        let list = match args.exprs[1].evaluate(&empty) {
            Ok(datafusion::logical_expr::ColumnarValue::Scalar(ScalarValue::List(list))) => list,
            _ => {
                return plan_err!(
                    "percentile's quantile list must be a literal such as [0.5, 0.99]"
                );
            }
        };
        let items = list.values().as_primitive::<Float64Type>();
        if list.is_null(0) || items.is_empty() || items.null_count() > 0 {
            return plan_err!(
                "percentile's quantile list must hold at least one number and no NULL"
            );
        }
        let quantiles = items.values().to_vec();
        if let Some(q) = quantiles.iter().find(|q| !(0.0..=1.0).contains(*q)) {
            return plan_err!(
                "percentile's quantiles must be between 0 and 1, got {q}; write 0.99 for p99"
            );
        }
        Ok(Quantiles::Many(quantiles))
    }

    /// The answers over one group's values, as order keys ([`order_key`]);
    /// reorders them. NULL for no values.
    fn append(&self, keys: &mut [i64], out: &mut Answers) {
        match (self, out) {
            (Quantiles::One(q), Answers::One(out)) => {
                out.append_option(select_quantiles(keys, &[*q]).first().copied())
            }
            (Quantiles::Many(qs), Answers::Many(out)) => {
                if keys.is_empty() {
                    out.append_null();
                } else {
                    out.values().append_slice(&select_quantiles(keys, qs));
                    out.append(true);
                }
            }
            _ => unreachable!("answers are built by Quantiles::answers"),
        }
    }

    fn answers(&self, groups: usize) -> Answers {
        match self {
            Quantiles::One(_) => Answers::One(Float64Builder::with_capacity(groups)),
            Quantiles::Many(qs) => Answers::Many(
                ListBuilder::with_capacity(
                    Float64Builder::with_capacity(groups * qs.len()),
                    groups,
                )
                .with_field(Arc::new(Field::new_list_field(DataType::Float64, true))),
            ),
        }
    }
}

/// The result column being built: numbers, or lists of numbers.
enum Answers {
    One(Float64Builder),
    Many(ListBuilder<Float64Builder>),
}

impl Answers {
    fn finish(self) -> ArrayRef {
        match self {
            Answers::One(mut b) => Arc::new(b.finish()),
            Answers::Many(mut b) => Arc::new(b.finish()),
        }
    }
}

/// Values a group keeps in one piece before it starts another: 512 KiB.
/// Growing one vector by doubling copied every value about once more and
/// took fresh pages from the operating system at each step (page faults were
/// a fifth of the percentile query's time); a full piece never moves.
const PIECE: usize = 64 * 1024;

/// Pieces at least this long travel in the state as they are (within one
/// process, see [`StateBuilder`]), and are kept as they are when merged if
/// they fill at least half of their buffer; a
/// slice pins its whole buffer, and only what the groups count bounds the
/// memory a query holds. Shorter pieces are copied.
const SHARE_MIN: usize = 1024;

/// The most values one view of the state points at: a view's length is a
/// `u32` of bytes.
const VIEW_MAX: usize = 1 << 26;

/// Whether a piece may be kept where it is, not copied: it is at least
/// [`SHARE_MIN`] values long and fills at least half of the allocation it
/// points into, so that counting its values keeps the count within 2× of
/// what is held. A buffer the allocator does not own reports no capacity,
/// so it is copied.
fn fills(piece: &ScalarBuffer<f64>) -> bool {
    let bytes = size_of_val(&piece[..]);
    let capacity = piece.inner().capacity();
    piece.len() >= SHARE_MIN && capacity > 0 && capacity <= 2 * bytes
}

fn float_field() -> FieldRef {
    Arc::new(Field::new_list_field(DataType::Float64, true))
}

fn piece_field() -> FieldRef {
    Arc::new(Field::new_list_field(DataType::BinaryView, true))
}

/// Builds the state columns, one list per group (or per row).
///
/// Between the partial and the final aggregate, DataFusion hashes the state
/// to its partition (`take`) and gathers it into batches (`concat`). A list
/// of floats is copied both times, every value. So within one process
/// ([`Exchange::InProcess`]) each piece of [`SHARE_MIN`] values or more goes
/// in a second column, `pieces`: binary views of 16 bytes, each pointing at
/// a piece's own buffer (its floats in the machine's byte order), which
/// `take` and `concat` pass on without copying it. The final aggregate keeps
/// those that fill at least half of their buffer where they are
/// ([`merge_pieces`]), so most values are copied twice in all: into their
/// group, and into the keys they are selected from. Shorter pieces go in the
/// first column, `values`, a list of floats, copied compactly.
///
/// Each part of a batch of state split by `take` refers to every buffer of
/// the batch, so a memory pool counts a piece once for each partition,
/// though it is held once. A repartition that cannot reserve that much
/// spills the state to disk, which copies the pieces it writes: slower, not
/// wrong.
///
/// Written out ([`Exchange::Serialized`]), a list of views would write every
/// buffer of the batch into each partition's file, so every value goes in
/// `values` instead.
struct StateBuilder {
    exchange: Exchange,
    floats: Vec<f64>,
    float_lengths: Vec<usize>,
    views: Vec<u128>,
    blocks: Vec<Buffer>,
    view_lengths: Vec<usize>,
}

impl StateBuilder {
    fn new(exchange: Exchange, lists: usize) -> Self {
        StateBuilder {
            exchange,
            floats: Vec::new(),
            float_lengths: Vec::with_capacity(lists),
            views: Vec::new(),
            blocks: Vec::new(),
            view_lengths: Vec::with_capacity(lists),
        }
    }

    /// One group's values as one list in each column.
    fn group(&mut self, values: Values) {
        let (floats, views) = (self.floats.len(), self.views.len());
        for piece in values.into_pieces() {
            if self.exchange == Exchange::Serialized || piece.len() < SHARE_MIN {
                self.floats.extend_from_slice(&piece);
                continue;
            }
            for start in (0..piece.len()).step_by(VIEW_MAX) {
                let part = piece.slice(start, VIEW_MAX.min(piece.len() - start));
                let block = u32::try_from(self.blocks.len())
                    .expect("a state batch holds fewer than 2^32 pieces");
                self.views
                    .push(make_view(part.inner().as_slice(), block, 0));
                self.blocks.push(part.into_inner());
            }
        }
        self.float_lengths.push(self.floats.len() - floats);
        self.view_lengths.push(self.views.len() - views);
    }

    /// One row of converted input: its value, or none.
    fn row(&mut self, value: Option<f64>) {
        self.floats.extend(value);
        self.float_lengths.push(usize::from(value.is_some()));
        self.view_lengths.push(0);
    }

    /// The state columns; an error if one batch of state holds more values
    /// than a list's 32-bit offsets can count.
    fn finish(self) -> Result<Vec<ArrayRef>> {
        if i32::try_from(self.floats.len()).is_err() {
            return exec_err!(
                "percentile state of one batch holds {} values, more than 2^31; \
                 use percentile_sketch, or more partitions (DATAFUSION_EXECUTION_TARGET_PARTITIONS)",
                self.floats.len()
            );
        }
        let values = ListArray::try_new(
            float_field(),
            OffsetBuffer::from_lengths(self.float_lengths),
            Arc::new(Float64Array::from(self.floats)),
            None,
        )?;
        if self.exchange == Exchange::Serialized {
            return Ok(vec![Arc::new(values)]);
        }
        let views = BinaryViewArray::try_new(ScalarBuffer::from(self.views), self.blocks, None)?;
        let pieces = ListArray::try_new(
            piece_field(),
            OffsetBuffer::from_lengths(self.view_lengths),
            Arc::new(views),
            None,
        )?;
        Ok(vec![Arc::new(values), Arc::new(pieces)])
    }
}

/// The state columns as lists: floats, then (within one process) pieces;
/// an error if they are not what this version writes.
fn state_columns(columns: &[ArrayRef]) -> Result<Vec<&ListArray>> {
    let items = [DataType::Float64, DataType::BinaryView];
    if columns.is_empty() || columns.len() > items.len() {
        return exec_err!("percentile state has {} columns, not 1 or 2", columns.len());
    }
    if columns.iter().any(|c| c.len() != columns[0].len()) {
        return exec_err!("percentile state columns differ in length");
    }
    columns
        .iter()
        .zip(&items)
        .enumerate()
        .map(
            |(index, (column, item))| match column.as_list_opt::<i32>() {
                Some(list) if list.value_type() == *item => Ok(list),
                _ => exec_err!(
                    "percentile state column {index} is a {}, not a list of {item}: the partial \
                 and final aggregates come from different loadlens versions; run the query \
                 with one version",
                    column.data_type()
                ),
            },
        )
        .collect()
}

/// Appends row `row` of each state column to `values`; returns the bytes
/// this adds.
fn merge_row(values: &mut Values, columns: &[&ListArray], row: usize) -> Result<usize> {
    let mut added = 0;
    if let Some(floats) = columns.first().filter(|c| c.is_valid(row)) {
        let offsets = floats.value_offsets();
        let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
        let items = floats.values().as_primitive::<Float64Type>();
        added += values.copy(&items.slice(start, end - start));
    }
    if let Some(pieces) = columns.get(1).filter(|c| c.is_valid(row)) {
        let offsets = pieces.value_offsets();
        let range = offsets[row] as usize..offsets[row + 1] as usize;
        added += merge_pieces(values, pieces.values().as_binary_view(), range)?;
    }
    Ok(added)
}

/// The `len` bytes at `offset` in `block` as floats, in place; `None` when
/// they are out of bounds or do not start on a float's alignment.
fn floats_at(block: &Buffer, offset: usize, len: usize) -> Option<ScalarBuffer<f64>> {
    if offset.checked_add(len)? > block.len() {
        return None;
    }
    let bytes = block.slice_with_length(offset, len);
    let aligned = bytes.as_ptr().align_offset(align_of::<f64>()) == 0;
    aligned.then(|| ScalarBuffer::from(bytes))
}

/// Appends the pieces `pieces[range]` of one list of state to `values`;
/// returns the bytes this adds.
fn merge_pieces(
    values: &mut Values,
    pieces: &BinaryViewArray,
    range: std::ops::Range<usize>,
) -> Result<usize> {
    let mut added = 0;
    for i in range {
        if pieces.is_null(i) {
            continue;
        }
        let view = ByteView::from(pieces.views()[i]);
        let len = view.length as usize;
        if !len.is_multiple_of(size_of::<f64>()) {
            return exec_err!("a piece of percentile state holds {len} bytes, not whole floats");
        }
        // Views of 12 bytes or fewer hold their bytes, not a buffer's index.
        let in_place = pieces
            .data_buffers()
            .get(view.buffer_index as usize)
            .filter(|_| len > 12)
            .and_then(|block| floats_at(block, view.offset as usize, len));
        added += match in_place {
            Some(piece) => values.add(piece),
            None => values.extend_from_bytes(pieces.value(i)),
        };
    }
    Ok(added)
}

/// One group's values: full pieces that never move (filled here, or
/// pieces of merged state, not copied), and the piece being filled. Their
/// order is not the order the values came in.
#[derive(Debug, Default)]
struct Values {
    full: Vec<ScalarBuffer<f64>>,
    open: Vec<f64>,
}

impl Values {
    /// How many values there are.
    fn len(&self) -> usize {
        self.open.len() + self.full.iter().map(|p| p.len()).sum::<usize>()
    }

    /// Every value, piece by piece.
    fn iter(&self) -> impl Iterator<Item = f64> + '_ {
        self.full
            .iter()
            .flat_map(|p| p.iter())
            .chain(&self.open)
            .copied()
    }

    /// Bytes held: the open piece's capacity and the full pieces' values.
    fn bytes(&self) -> usize {
        (self.open.capacity() + self.full.iter().map(|p| p.len()).sum::<usize>()) * size_of::<f64>()
    }

    /// Appends one value; returns the bytes allocated for it (mostly 0).
    #[inline]
    fn push(&mut self, value: f64) -> usize {
        let added = if self.open.len() == self.open.capacity() {
            self.make_room()
        } else {
            0
        };
        self.open.push(value);
        added
    }

    /// Room for one more value: the open piece doubles up to [`PIECE`], so
    /// small groups stay small, and is then closed for a new one (whose
    /// values count as they did). Returns the bytes allocated.
    #[cold]
    fn make_room(&mut self) -> usize {
        let capacity = self.open.capacity();
        if capacity < PIECE {
            let target = (capacity * 2).clamp(8, PIECE);
            self.open.reserve_exact(target - self.open.len());
            (self.open.capacity() - capacity) * size_of::<f64>()
        } else {
            let full = std::mem::replace(&mut self.open, Vec::with_capacity(PIECE));
            let unused = full.capacity() - full.len();
            self.full.push(ScalarBuffer::from(full));
            (PIECE - unused) * size_of::<f64>()
        }
    }

    /// Appends `piece`, kept as it is when it [`fills`] its buffer and
    /// copied otherwise; returns the bytes this adds.
    fn add(&mut self, piece: ScalarBuffer<f64>) -> usize {
        if !fills(&piece) {
            return piece.iter().map(|&v| self.push(v)).sum();
        }
        let bytes = size_of_val(&piece[..]);
        self.full.push(piece);
        bytes
    }

    /// Copies the valid values of `items`; returns the bytes allocated.
    fn copy(&mut self, items: &Float64Array) -> usize {
        if items.null_count() == 0 {
            items.values().iter().map(|&v| self.push(v)).sum()
        } else {
            items.iter().flatten().map(|v| self.push(v)).sum()
        }
    }

    /// Appends the floats whose bytes (in the machine's order) are `bytes`;
    /// returns the bytes allocated.
    fn extend_from_bytes(&mut self, bytes: &[u8]) -> usize {
        bytes
            .chunks_exact(size_of::<f64>())
            .map(|chunk| self.push(f64::from_ne_bytes(chunk.try_into().expect("8 bytes"))))
            .sum()
    }

    /// Every piece, the open one last, none of them copied.
    fn into_pieces(self) -> impl Iterator<Item = ScalarBuffer<f64>> {
        self.full
            .into_iter()
            .chain(std::iter::once(ScalarBuffer::from(self.open)))
    }

    /// The values as order keys, in one vector. Each piece is freed once
    /// read, and a group of one piece is converted where it is, so the
    /// memory held stays near one copy of the values.
    fn into_keys(self) -> Vec<i64> {
        if self.full.is_empty() {
            // Same size and alignment: collected in place, no new allocation.
            return self.open.into_iter().map(order_key).collect();
        }
        let mut keys = Vec::with_capacity(self.len());
        for piece in self.full {
            keys.extend(piece.iter().map(|&v| order_key(v)));
        }
        keys.extend(self.open.into_iter().map(order_key));
        keys
    }

    /// The values as order keys, in a new vector; the values stay.
    fn keys(&self) -> Vec<i64> {
        let mut keys = Vec::with_capacity(self.len());
        keys.extend(self.iter().map(order_key));
        keys
    }
}

/// A float's place in IEEE 754's total order as an integer, so selection
/// compares integers instead of calling `f64::total_cmp` (the same order).
fn order_key(value: f64) -> i64 {
    let bits = value.to_bits() as i64;
    // Negative floats order backwards: flip all but the sign bit.
    bits ^ ((((bits >> 63) as u64) >> 1) as i64)
}

/// The float an [`order_key`] came from (the flip undoes itself).
fn from_order_key(key: i64) -> f64 {
    f64::from_bits((key ^ ((((key >> 63) as u64) >> 1) as i64)) as u64)
}

/// numpy's linear quantile for each of `qs` (in any order) over `keys`,
/// answered in the order of `qs`; nothing for no keys. Reorders `keys`.
///
/// Ranks are taken from the lowest up, each selected only among the keys
/// above the last one placed, so p50, p95 and p99 together cost little more
/// than p50 alone. The result is [`quantile_linear`]'s, bit for bit.
fn select_quantiles(keys: &mut [i64], qs: &[f64]) -> Vec<f64> {
    let n = keys.len();
    if n == 0 {
        return Vec::new();
    }
    // By rank, not by q: rounding can give a larger q a lower rank.
    let ranks: Vec<(usize, usize, f64)> =
        qs.iter().map(|&q| models::quantile::rank(n, q)).collect();
    let mut order: Vec<usize> = (0..qs.len()).collect();
    order.sort_by_key(|&i| (ranks[i].0, ranks[i].1));
    let mut answers = vec![0.0; qs.len()];
    // Every key from `placed` on is at least every key before it, and each
    // position asked for before `placed` holds its order statistic. Positions
    // are asked for in non-decreasing order, or again, so no position that was
    // passed over is asked for later.
    let mut placed = 0;
    let mut place = |keys: &mut [i64], position: usize| {
        if position >= placed {
            keys[placed..].select_nth_unstable(position - placed);
            placed = position + 1;
        }
        from_order_key(keys[position])
    };
    for i in order {
        let (lo, hi, gamma) = ranks[i];
        let a = place(keys, lo);
        let b = place(keys, hi);
        answers[i] = models::quantile::lerp(a, b, gamma);
    }
    answers
}

/// The values of every group in one place. Without it DataFusion wraps
/// [`PercentileAccumulator`] in an adapter that sorts each batch by group and
/// copies it into one slice per group before the values are appended.
#[derive(Debug)]
struct PercentileGroups {
    quantiles: Quantiles,
    exchange: Exchange,
    groups: Vec<Values>,
    /// Bytes the groups hold, kept as they grow because `size` is asked
    /// after every batch and must not visit every group.
    bytes: usize,
}

impl PercentileGroups {
    /// The groups `emit_to` names, no longer counted.
    fn take(&mut self, emit_to: EmitTo) -> Vec<Values> {
        let taken = emit_to.take_needed(&mut self.groups);
        let freed: usize = taken.iter().map(Values::bytes).sum();
        self.bytes -= freed;
        taken
    }
}

/// Whether row `row` passes the aggregate's FILTER clause, if any.
fn selected(filter: Option<&BooleanArray>, row: usize) -> bool {
    filter.is_none_or(|f| f.is_valid(row) && f.value(row))
}

impl GroupsAccumulator for PercentileGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.groups.resize_with(total_num_groups, Values::default);
        let array = values[0].as_primitive::<Float64Type>();
        let data = array.values();
        let all = array.null_count() == 0 && opt_filter.is_none();
        for (row, &group) in group_indices.iter().enumerate() {
            if all || (array.is_valid(row) && selected(opt_filter, row)) {
                self.bytes += self.groups[group].push(data[row]);
            }
        }
        Ok(())
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.groups.resize_with(total_num_groups, Values::default);
        let columns = state_columns(values)?;
        for (row, &group) in group_indices.iter().enumerate() {
            self.bytes += merge_row(&mut self.groups[group], &columns, row)?;
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let groups = self.take(emit_to);
        let mut answers = self.quantiles.answers(groups.len());
        for values in groups {
            self.quantiles.append(&mut values.into_keys(), &mut answers);
        }
        Ok(answers.finish())
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let groups = self.take(emit_to);
        let mut state = StateBuilder::new(self.exchange, groups.len());
        for values in groups {
            state.group(values);
        }
        state.finish()
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        // One list per row: its value, or nothing when it is NULL or filtered out.
        let array = values[0].as_primitive::<Float64Type>();
        let mut state = StateBuilder::new(self.exchange, array.len());
        for row in 0..array.len() {
            let kept = array.is_valid(row) && selected(opt_filter, row);
            state.row(kept.then(|| array.value(row)));
        }
        state.finish()
    }

    fn size(&self) -> usize {
        size_of_val(self) + self.groups.capacity() * size_of::<Values>() + self.bytes
    }
}

#[derive(Debug)]
struct PercentileAccumulator {
    quantiles: Quantiles,
    exchange: Exchange,
    values: Values,
}

impl Accumulator for PercentileAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let array = values[0].as_primitive::<Float64Type>();
        // A batch that fills its buffer is kept as it is, not copied.
        if array.null_count() == 0 {
            self.values.add(array.values().clone());
        } else {
            self.values.copy(array);
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let columns = state_columns(states)?;
        for row in 0..columns[0].len() {
            merge_row(&mut self.values, &columns, row)?;
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let mut state = StateBuilder::new(self.exchange, 1);
        state.group(std::mem::take(&mut self.values));
        state
            .finish()?
            .iter()
            .map(|column| Ok(ScalarValue::List(Arc::new(column.as_list::<i32>().clone()))))
            .collect()
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let mut answers = self.quantiles.answers(1);
        // Evaluated again as a window grows, so the values stay.
        self.quantiles.append(&mut self.values.keys(), &mut answers);
        ScalarValue::try_from_array(&answers.finish(), 0)
    }

    fn size(&self) -> usize {
        size_of_val(self) + self.values.bytes()
    }
}

/// numpy's `quantile(values, q, method="linear")`, NaN-free input assumed;
/// reorders `values`. `None` for no values.
///
/// The rank is numpy's own ([`models::quantile::rank`]), so the result is
/// bit-for-bit numpy's, not merely close. Only the two neighbouring
/// order statistics are found (a selection, O(n)), not a full sort.
pub fn quantile_linear(values: &mut [f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let (lo, hi, gamma) = models::quantile::rank(values.len(), q);
    let (_, &mut a, above) = values.select_nth_unstable_by(lo, f64::total_cmp);
    let b = if hi == lo {
        a
    } else {
        // The next order statistic is the smallest value above position lo.
        above.iter().copied().min_by(f64::total_cmp).unwrap_or(a)
    };
    Some(models::quantile::lerp(a, b, gamma))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_numpy_reference_values() {
        // numpy.quantile([1, 2, 3, 4, 10], q) for the q below.
        let data = [10.0, 1.0, 3.0, 2.0, 4.0];
        let cases = [
            (0.0, 1.0),
            (0.5, 3.0),
            (0.9, 7.6),
            (0.99, 9.76),
            (1.0, 10.0),
            (0.25, 2.0),
        ];
        for (q, expected) in cases {
            let got = quantile_linear(&mut data.clone(), q).unwrap();
            assert!((got - expected).abs() < 1e-12, "q={q}: {got} != {expected}");
        }
    }

    #[test]
    fn empty_and_single() {
        assert_eq!(quantile_linear(&mut [], 0.5), None);
        assert_eq!(quantile_linear(&mut [4.0], 0.99), Some(4.0));
    }

    fn groups(q: f64) -> PercentileGroups {
        groups_for(q, Exchange::InProcess)
    }

    fn groups_for(q: f64, exchange: Exchange) -> PercentileGroups {
        PercentileGroups {
            quantiles: Quantiles::One(q),
            exchange,
            groups: Vec::new(),
            bytes: 0,
        }
    }

    fn single(q: f64, exchange: Exchange) -> PercentileAccumulator {
        PercentileAccumulator {
            quantiles: Quantiles::One(q),
            exchange,
            values: Values::default(),
        }
    }

    fn floats(values: &[Option<f64>]) -> Vec<ArrayRef> {
        vec![Arc::new(Float64Array::from(values.to_vec()))]
    }

    fn evaluated(acc: &mut PercentileGroups, emit_to: EmitTo) -> Vec<Option<f64>> {
        let array = acc.evaluate(emit_to).unwrap();
        array.as_primitive::<Float64Type>().iter().collect()
    }

    #[test]
    fn groups_skip_nulls_and_filtered_rows_and_leave_empty_groups_null() {
        let mut acc = groups(0.5);
        let values = floats(&[
            Some(1.0),
            Some(9.0),
            None,
            Some(3.0),
            Some(100.0),
            Some(5.0),
        ]);
        let filter = BooleanArray::from(vec![
            Some(true),
            Some(true),
            Some(true),
            Some(true),
            None,
            Some(false),
        ]);
        acc.update_batch(&values, &[0, 1, 0, 0, 0, 1], Some(&filter), 3)
            .unwrap();
        // Group 0 keeps 1 and 3; group 1 keeps 9; group 2 has nothing.
        assert_eq!(
            evaluated(&mut acc, EmitTo::All),
            [Some(2.0), Some(9.0), None]
        );
        assert_eq!(acc.size(), size_of_val(&acc));
    }

    #[test]
    fn groups_state_merges_to_the_single_accumulator_answer() {
        // Two partial accumulators over halves of the rows, merged into a third.
        let data: Vec<f64> = (0..1000)
            .map(|i| f64::from((i * 7919) % 1009) / 7.0)
            .collect();
        let group_of = |i: usize| i % 3;
        let mut partial = [groups(0.99), groups(0.99)];
        for (half, acc) in partial.iter_mut().enumerate() {
            let rows: Vec<usize> = (0..data.len()).filter(|i| i % 2 == half).collect();
            let values = floats(&rows.iter().map(|&i| Some(data[i])).collect::<Vec<_>>());
            let indices: Vec<usize> = rows.iter().map(|&i| group_of(i)).collect();
            acc.update_batch(&values, &indices, None, 3).unwrap();
        }
        let mut merged = groups(0.99);
        for acc in &mut partial {
            let state = acc.state(EmitTo::All).unwrap();
            merged.merge_batch(&state, &[0, 1, 2], 3).unwrap();
        }
        // Rows may also arrive as converted state, one list per row.
        let extra = floats(&[Some(1e6), None]);
        let converted = merged.convert_to_state(&extra, None).unwrap();
        merged.merge_batch(&converted, &[1, 1], 3).unwrap();

        let first = evaluated(&mut merged, EmitTo::First(1));
        let rest = evaluated(&mut merged, EmitTo::All);
        for (group, got) in first.iter().chain(&rest).enumerate() {
            let mut expected: Vec<f64> = (0..data.len())
                .filter(|&i| group_of(i) == group)
                .map(|i| data[i])
                .collect();
            if group == 1 {
                expected.push(1e6);
            }
            let mut single = single(0.99, Exchange::InProcess);
            single
                .update_batch(&floats(
                    &expected.iter().map(|&v| Some(v)).collect::<Vec<_>>(),
                ))
                .unwrap();
            assert_eq!(*got, quantile_linear(&mut expected, 0.99), "group {group}");
            assert_eq!(ScalarValue::Float64(*got), single.evaluate().unwrap());
        }
        assert_eq!(merged.size(), size_of_val(&merged));
    }

    #[test]
    fn a_list_of_quantiles_answers_each_from_one_copy() {
        let data: Vec<f64> = (0..500)
            .map(|i| f64::from((i * 7919) % 613) / 3.0)
            .collect();
        let qs = vec![0.99, 0.5, 0.0, 0.95, 1.0];
        let mut acc = PercentileGroups {
            quantiles: Quantiles::Many(qs.clone()),
            exchange: Exchange::InProcess,
            groups: Vec::new(),
            bytes: 0,
        };
        let values = floats(&data.iter().map(|&v| Some(v)).collect::<Vec<_>>());
        let indices: Vec<usize> = (0..data.len()).map(|i| i % 2).collect();
        acc.update_batch(&values, &indices, None, 3).unwrap();
        let answers = acc.evaluate(EmitTo::All).unwrap();
        let lists = answers.as_list::<i32>();
        for group in 0..2 {
            let mut mine: Vec<f64> = data.iter().copied().skip(group).step_by(2).collect();
            let got: Vec<Option<f64>> = lists
                .value(group)
                .as_primitive::<Float64Type>()
                .iter()
                .collect();
            let expected: Vec<Option<f64>> =
                qs.iter().map(|&q| quantile_linear(&mut mine, q)).collect();
            assert_eq!(got, expected, "group {group}");
        }
        // A group with no values is a NULL list, not a list of NULLs.
        assert!(lists.is_null(2));
    }

    #[test]
    fn order_keys_sort_as_total_cmp_and_turn_back_into_the_same_float() {
        let mut floats = vec![
            3.5,
            -0.0,
            0.0,
            -1e300,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE,
            -f64::MIN_POSITIVE,
            1.0,
            -2.5,
        ];
        for &v in floats.iter().chain(&[f64::NAN, -f64::NAN]) {
            assert_eq!(from_order_key(order_key(v)).to_bits(), v.to_bits());
        }
        let mut keys: Vec<i64> = floats.iter().map(|&v| order_key(v)).collect();
        keys.sort_unstable();
        floats.sort_by(f64::total_cmp);
        let back: Vec<u64> = keys.iter().map(|&k| from_order_key(k).to_bits()).collect();
        assert_eq!(back, floats.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
    }

    #[test]
    fn several_quantiles_selected_together_match_one_at_a_time() {
        // Ties, negatives and both zeros, with quantiles out of order and repeated.
        let data: Vec<f64> = (0..10_007)
            .map(|i| f64::from((i * 7919) % 2003) / 4.0 - 100.0)
            .chain([-0.0, 0.0, -0.0])
            .collect();
        let qs = [0.99, 0.5, 0.999, 0.0, 1.0, 0.5, 0.95, 0.25];
        for n in [1, 2, 3, 10, data.len()] {
            let mut keys: Vec<i64> = data[..n].iter().map(|&v| order_key(v)).collect();
            let got = select_quantiles(&mut keys, &qs);
            for (q, got) in qs.iter().zip(&got) {
                let expected = quantile_linear(&mut data[..n].to_vec(), *q).unwrap();
                assert_eq!(got.to_bits(), expected.to_bits(), "n={n} q={q}");
            }
        }
        assert!(select_quantiles(&mut [], &qs).is_empty());
    }

    #[test]
    fn a_larger_q_with_a_lower_rank_is_still_selected_exactly() {
        // numpy's rank rounds: for these neighbouring floats the larger q
        // has the lower rank (515 then 514 of 1023; 4 then 3 of 7).
        let cases: [(usize, [f64; 2]); 2] = [
            (1023, [0.5039138943248531, 0.5039138943248532]),
            (7, [0.6666666666666665, 2.0 / 3.0]),
        ];
        for (n, qs) in cases {
            assert!(models::quantile::rank(n, qs[1]).0 < models::quantile::rank(n, qs[0]).0);
            // Distinct values, largest first, asked for on their own.
            let data: Vec<f64> = (0..n).rev().map(|i| i as f64 * 1.5).collect();
            let mut keys: Vec<i64> = data.iter().map(|&v| order_key(v)).collect();
            let got = select_quantiles(&mut keys, &qs);
            for (q, got) in qs.iter().zip(&got) {
                let expected = quantile_linear(&mut data.clone(), *q).unwrap();
                assert_eq!(got.to_bits(), expected.to_bits(), "n={n} q={q}");
            }
        }
        // Those, and every q that lands on a rank or next to one, in
        // shuffled lists, against one quantile at a time.
        for n in [7, 10, 1023] {
            let data: Vec<f64> = (0..n as u32)
                .map(|i| f64::from((i * 7919) % 1009) / 3.0)
                .collect();
            let mut qs: Vec<f64> = (0..n)
                .flat_map(|k| {
                    let q = k as f64 / (n - 1) as f64;
                    [q.next_down(), q, q.next_up()]
                })
                .filter(|q| (0.0..=1.0).contains(q))
                .chain(cases.iter().flat_map(|(_, qs)| *qs))
                .collect();
            // A fixed shuffle, so that the order asked for is not the order of q.
            let len = qs.len();
            for i in 0..len {
                qs.swap(i, (i * 7919 + 13) % len);
            }
            let mut keys: Vec<i64> = data.iter().map(|&v| order_key(v)).collect();
            let got = select_quantiles(&mut keys, &qs);
            for (q, got) in qs.iter().zip(&got) {
                let expected = quantile_linear(&mut data.clone(), *q).unwrap();
                assert_eq!(got.to_bits(), expected.to_bits(), "n={n} q={q}");
            }
        }
    }

    /// State of one piece per group, each a view of `len` bytes at `offset`
    /// into one buffer, `block`, and no short values.
    fn views_of(block: Buffer, pieces: &[(u32, u32)]) -> Vec<ArrayRef> {
        let views: Vec<u128> = pieces
            .iter()
            .map(|&(offset, len)| {
                let bytes = &block.as_slice()[offset as usize..(offset + len) as usize];
                make_view(bytes, 0, offset)
            })
            .collect();
        let views = BinaryViewArray::try_new(ScalarBuffer::from(views), vec![block], None).unwrap();
        let n = pieces.len();
        let floats = ListArray::new(
            float_field(),
            OffsetBuffer::new_zeroed(n),
            Arc::new(Float64Array::from(Vec::<f64>::new())),
            None,
        );
        let lists = ListArray::new(
            piece_field(),
            OffsetBuffer::from_lengths(vec![1; n]),
            Arc::new(views),
            None,
        );
        vec![Arc::new(floats), Arc::new(lists)]
    }

    fn block_of(values: impl Iterator<Item = f64>) -> Buffer {
        Buffer::from_vec(values.collect::<Vec<f64>>())
    }

    /// The values of each group of `indices` (one per value of `data`).
    fn by_group(data: &[f64], indices: &[usize], group: usize) -> Vec<f64> {
        (0..data.len())
            .filter(|&i| indices[i] == group)
            .map(|i| data[i])
            .collect()
    }

    #[test]
    fn merged_pieces_are_shared_only_when_they_fill_their_buffer_and_are_aligned() {
        let f = size_of::<f64>() as u32;
        // Nine pieces in one buffer: sharing the long one would pin the whole
        // buffer while counting a ninth of it, so all are copied.
        let short = SHARE_MIN as u32 - 1;
        let mut pieces = vec![(0, SHARE_MIN as u32 * f)];
        pieces.extend((0..8).map(|i| ((SHARE_MIN as u32 + i * short) * f, short * f)));
        let total = SHARE_MIN + 8 * (SHARE_MIN - 1);
        let state = views_of(block_of((0..total).map(|i| i as f64)), &pieces);
        let mut acc = groups(0.5);
        acc.merge_batch(&state, &(0..9).collect::<Vec<_>>(), 9)
            .unwrap();
        assert!(acc.groups.iter().all(|g| g.full.is_empty()), "copied");
        assert_eq!(acc.groups[1].iter().next(), Some(SHARE_MIN as f64));
        assert_eq!(
            acc.bytes,
            acc.groups.iter().map(Values::bytes).sum::<usize>()
        );
        // A piece that is its whole buffer is kept where it is.
        let block = block_of((0..SHARE_MIN).map(|i| i as f64));
        let at = block.as_ptr();
        let alone = views_of(block, &[(0, SHARE_MIN as u32 * f)]);
        let mut acc = groups(0.5);
        acc.merge_batch(&alone, &[0], 1).unwrap();
        assert_eq!(acc.groups[0].full.len(), 1, "shared");
        assert_eq!(acc.groups[0].full[0].inner().as_ptr(), at);
        assert_eq!(acc.bytes, SHARE_MIN * size_of::<f64>());
        // A piece 4 bytes into a buffer it fills cannot be read as floats in
        // place: it is copied, and its values are the same.
        let mut bytes = Vec::with_capacity(4 + SHARE_MIN * size_of::<f64>());
        bytes.extend([0u8; 4]);
        bytes.extend((0..SHARE_MIN).flat_map(|i| (i as f64).to_ne_bytes()));
        let skewed = Buffer::from_vec(bytes);
        assert!(
            skewed.capacity() <= 2 * SHARE_MIN * size_of::<f64>(),
            "fills"
        );
        let skewed = views_of(skewed, &[(4, SHARE_MIN as u32 * f)]);
        let mut acc = groups(0.5);
        acc.merge_batch(&skewed, &[0], 1).unwrap();
        assert!(acc.groups[0].full.is_empty(), "copied");
        assert!(acc.groups[0].iter().eq((0..SHARE_MIN).map(|i| i as f64)));
        // A piece that is not whole floats is an error, not a panic.
        let torn = views_of(block_of((0..4).map(f64::from)), &[(0, 20)]);
        let err = groups(0.5).merge_batch(&torn, &[0], 1).unwrap_err();
        assert!(err.to_string().contains("20 bytes"), "{err}");
    }

    #[test]
    fn state_of_another_form_is_an_error_not_a_panic() {
        let floats: ArrayRef = Arc::new(Float64Array::from(vec![1.0, 2.0]));
        let mut uneven = views_of(block_of((0..4).map(f64::from)), &[(0, 32)]);
        uneven[1] = uneven[1].slice(0, 0);
        for state in [
            vec![],
            vec![floats.clone()],
            uneven,
            views_of(block_of((0..4).map(f64::from)), &[(0, 32)])
                .into_iter()
                .rev()
                .collect(),
        ] {
            let err = groups(0.5).merge_batch(&state, &[0, 1], 2).unwrap_err();
            assert!(err.to_string().contains("percentile state"), "{err}");
            let err = single(0.5, Exchange::InProcess)
                .merge_batch(&state)
                .unwrap_err();
            assert!(err.to_string().contains("percentile state"), "{err}");
        }
    }

    #[test]
    fn state_goes_through_take_and_concat_without_its_pieces_moving() {
        // What a hash repartition does between the partial and final
        // aggregates: take rows of the state, then gather them into a batch.
        let data: Vec<f64> = (0..(2 * PIECE) as u32)
            .map(|i| f64::from((i * 7919) % 10_007))
            .collect();
        let mut partial = groups(0.99);
        let values = floats(&data.iter().map(|&v| Some(v)).collect::<Vec<_>>());
        // Group 0 closes a piece; group 2 stays short, so it travels as floats.
        let indices: Vec<usize> = (0..data.len())
            .map(|i| match i % 3 {
                0 if i < 3000 => 2,
                0 => 1,
                _ => 0,
            })
            .collect();
        partial.update_batch(&values, &indices, None, 3).unwrap();
        let full = partial.groups[0].full[0].inner().as_ptr();
        let state = partial.state(EmitTo::All).unwrap();
        assert_eq!(state.len(), 2);
        assert_eq!(
            state[0].as_list::<i32>().value_length(2),
            1000,
            "short, as floats"
        );
        let gathered: Vec<ArrayRef> = state
            .iter()
            .map(|column| {
                let order = arrow::array::UInt32Array::from(vec![2, 1]);
                let taken = arrow::compute::take(column, &order, None).unwrap();
                let first = column.slice(0, 1);
                arrow::compute::concat(&[first.as_ref(), taken.as_ref()]).unwrap()
            })
            .collect();

        let mut merged = groups(0.99);
        merged.merge_batch(&gathered, &[0, 2, 1], 3).unwrap();
        let pointers: Vec<_> = merged.groups[0]
            .full
            .iter()
            .map(|p| p.inner().as_ptr())
            .collect();
        assert!(pointers.contains(&full), "the full piece was not copied");
        for (group, got) in evaluated(&mut merged, EmitTo::All).into_iter().enumerate() {
            let mut mine = by_group(&data, &indices, group);
            assert_eq!(got, quantile_linear(&mut mine, 0.99), "group {group}");
        }
    }

    #[test]
    fn state_of_the_first_groups_leaves_the_rest_counted() {
        let data: Vec<f64> = (0..(PIECE + 3000) as u32).map(f64::from).collect();
        let indices: Vec<usize> = (0..data.len()).map(|i| usize::from(i % 4 == 0)).collect();
        let mut partial = groups(0.5);
        let values = floats(&data.iter().map(|&v| Some(v)).collect::<Vec<_>>());
        partial.update_batch(&values, &indices, None, 2).unwrap();
        let first = partial.state(EmitTo::First(1)).unwrap();
        assert_eq!(first[0].len(), 1);
        assert_eq!(partial.groups.len(), 1);
        assert_eq!(
            partial.bytes,
            partial.groups.iter().map(Values::bytes).sum::<usize>()
        );
        let rest = partial.state(EmitTo::All).unwrap();
        let mut merged = groups(0.5);
        merged.merge_batch(&first, &[0], 2).unwrap();
        merged.merge_batch(&rest, &[1], 2).unwrap();
        for (group, got) in evaluated(&mut merged, EmitTo::All).into_iter().enumerate() {
            let mut mine = by_group(&data, &indices, group);
            assert_eq!(got, quantile_linear(&mut mine, 0.5), "group {group}");
        }
    }

    #[test]
    fn both_forms_of_state_merge_to_the_same_answers_grouped_or_not() {
        // Group 0 closes a piece in each half and leaves an open one too
        // empty to keep in place; group 1 (odd rows only) has one long open
        // piece, kept; group 2 (even rows only) a short one, sent as floats.
        let data: Vec<f64> = (0..(3 * PIECE) as u32)
            .map(|i| f64::from((i * 7919) % 65_521) - 300.0)
            .collect();
        let indices: Vec<usize> = (0..data.len())
            .map(|i| match i % 10 {
                1 => 1,
                _ if i % 1000 == 0 => 2,
                _ => 0,
            })
            .collect();
        let halves = |exchange| {
            let mut parts = [groups_for(0.9, exchange), groups_for(0.9, exchange)];
            for (half, acc) in parts.iter_mut().enumerate() {
                let rows: Vec<usize> = (0..data.len()).filter(|i| i % 2 == half).collect();
                let idx: Vec<usize> = rows.iter().map(|&i| indices[i]).collect();
                let vals = floats(&rows.iter().map(|&i| Some(data[i])).collect::<Vec<_>>());
                acc.update_batch(&vals, &idx, None, 3).unwrap();
            }
            parts
        };
        for exchange in [Exchange::InProcess, Exchange::Serialized] {
            let mut merged = groups_for(0.9, exchange);
            for mut part in halves(exchange) {
                let state = part.state(EmitTo::All).unwrap();
                let views = state
                    .get(1)
                    .map_or(0, |pieces| pieces.as_list::<i32>().values().len());
                match exchange {
                    Exchange::Serialized => assert_eq!(state.len(), 1),
                    Exchange::InProcess => assert!(state.len() == 2 && views > 0),
                }
                merged.merge_batch(&state, &[0, 1, 2], 3).unwrap();
            }
            assert_eq!(
                merged.bytes,
                merged.groups.iter().map(Values::bytes).sum::<usize>()
            );
            for (group, values) in merged.groups.iter().enumerate() {
                assert_eq!(values.len(), by_group(&data, &indices, group).len());
            }
            for (group, got) in evaluated(&mut merged, EmitTo::All).into_iter().enumerate() {
                let mut mine = by_group(&data, &indices, group);
                assert_eq!(got, quantile_linear(&mut mine, 0.9), "{exchange:?} {group}");
            }
            // Without groups: two accumulators' states, as scalars, merged.
            let mut whole = single(0.9, exchange);
            for half in 0..2 {
                let mut part = single(0.9, exchange);
                let rows: Vec<Option<f64>> = data
                    .iter()
                    .skip(half)
                    .step_by(2)
                    .map(|&v| Some(v))
                    .collect();
                part.update_batch(&floats(&rows)).unwrap();
                let state: Vec<ArrayRef> = part
                    .state()
                    .unwrap()
                    .iter()
                    .map(|scalar| scalar.to_array().unwrap())
                    .collect();
                whole.merge_batch(&state).unwrap();
            }
            let expected = quantile_linear(&mut data.clone(), 0.9);
            assert_eq!(whole.evaluate().unwrap(), ScalarValue::Float64(expected));
        }
    }

    #[test]
    fn large_groups_fill_pieces_and_merged_state_is_kept_without_a_copy() {
        // More values than one piece, so groups close pieces, and merged
        // state long enough to be kept where it is.
        let data: Vec<f64> = (0..(2 * PIECE + 77) as u32)
            .map(|i| f64::from((i * 7919) % 100_003) / 3.0)
            .collect();
        let mut partial = groups(0.95);
        let values = floats(&data.iter().map(|&v| Some(v)).collect::<Vec<_>>());
        let indices: Vec<usize> = (0..data.len()).map(|i| usize::from(i % 5 == 0)).collect();
        partial.update_batch(&values, &indices, None, 2).unwrap();
        assert!(!partial.groups[0].full.is_empty(), "group 0 closed a piece");
        assert_eq!(
            partial.bytes,
            partial.groups.iter().map(Values::bytes).sum::<usize>()
        );
        let state = partial.state(EmitTo::All).unwrap();
        assert_eq!(partial.size(), size_of_val(&partial));

        let mut merged = groups(0.95);
        merged.merge_batch(&state, &[0, 1], 2).unwrap();
        merged.merge_batch(&state, &[1, 0], 2).unwrap();
        // Partial group 0 sent a full piece and its open one, group 1 its
        // open one; each fills at least half of its buffer, so every piece
        // was kept as it is and each merged group holds three.
        assert!(
            merged
                .groups
                .iter()
                .all(|g| g.full.len() == 3 && g.open.is_empty())
        );
        assert_eq!(
            merged.bytes,
            merged.groups.iter().map(Values::bytes).sum::<usize>()
        );
        // Each merged group got both partial groups' values: all of the data.
        let expected = quantile_linear(&mut data.clone(), 0.95);
        assert_eq!(evaluated(&mut merged, EmitTo::All), [expected, expected]);
        assert_eq!(merged.size(), size_of_val(&merged));
    }

    #[test]
    fn the_single_accumulator_keeps_whole_batches_and_answers_again_as_a_window_grows() {
        let mut single = single(0.5, Exchange::InProcess);
        let batch: Vec<Option<f64>> = (0..SHARE_MIN as u32).map(|i| Some(f64::from(i))).collect();
        single.update_batch(&floats(&batch)).unwrap();
        assert_eq!(single.values.full.len(), 1, "the batch is kept, not copied");
        assert_eq!(
            single.evaluate().unwrap(),
            ScalarValue::Float64(Some(511.5))
        );
        single.update_batch(&floats(&[Some(5000.0), None])).unwrap();
        assert_eq!(
            single.evaluate().unwrap(),
            ScalarValue::Float64(Some(512.0))
        );
        // The kept batch and an open piece of 8 values (the smallest).
        assert_eq!(
            single.size(),
            size_of_val(&single) + (SHARE_MIN + 8) * size_of::<f64>()
        );
    }

    #[test]
    fn lerp_is_exact_at_the_ends() {
        assert_eq!(models::quantile::lerp(0.1, 0.7, 1.0), 0.7);
        assert_eq!(models::quantile::lerp(0.1, 0.7, 0.0), 0.1);
    }
}
