//! Collector throughput: spans per CPU-second end to end (OTLP/gRPC protobuf,
//! batches of 512 spans with 10 attributes each, into the fsynced write-ahead
//! log and then Parquet) against the rate at which the same payloads are only
//! decoded. Figures go to BENCHMARKS.md.
//!
//! The decode-only peer runs twice: before the run, and after it on the
//! core the collector had. The ratio is to the mean of the two, so that a
//! run is set against the machine's speed on both sides of it (the host's
//! speed drifts by a quarter within minutes), and the line gives the ratio
//! to each as well.
//!
//! ```text
//! cargo bench -p collector --bench throughput -- [--spans N] [--in-flight N] [--no-fsync] [--batch N] [--phases-only] [--no-pin]
//! ```
//!
//! `--phases-only` stops after the one-thread phases (decode, convert,
//! convert with rows held as for a flush, Arrow to Parquet), which vary
//! less from run to run than the end-to-end figure: for comparing two
//! builds of the converter or the writer.
//!
//! `LOADLENS_BENCH_COMMIT_INTERVAL_US=N` runs the collector with a
//! write-ahead-log commit interval of N µs (`wal_commit_interval`; 0 unless
//! given, the default). `LOADLENS_BENCH_DEDUPE_MAX_SPANS=N` bounds its
//! index of recent span ids to N (`dedupe_max_spans`). The index always
//! keeps its newest flush whole, so with N below a flush's rows it holds
//! one flush; spans at or before the latest start it forgot are looked up
//! in the files, and "looked up" counts them.
//! `LOADLENS_BENCH_MAX_MEMORY=BYTES` bounds the collector's resident memory
//! (`max_memory`), so that admission reads it as it does when one is set.
//! `LOADLENS_BENCH_FLUSH_ROWS=N` flushes at N rows (`flush_rows`; 200,000
//! by default): fewer rows pending, less memory a flush walks cold.
//!
//! On a machine of two or more CPUs the collector is pinned to the last
//! one and this process, the client, to the others, so that the
//! collector runs on one core, as the goal is stated, and the client's
//! work does not run on that core between the collector's requests (on
//! a host whose CPUs are hyperthreads of one core they still share its
//! caches). Pinned, the collector's runtime has one worker thread, as
//! tokio starts one per CPU it may use. `--no-pin` leaves both to the
//! scheduler, as runs before 2026-12-06 did.
//!
//! `--batch` sets the spans per request (512 unless given, as the figures
//! in BENCHMARKS.md are): comparing two sizes shows what the collector pays
//! per request rather than per span.
//!
//! The collector runs in a child process so that its CPU time and peak memory
//! are its own; this process is the OTLP client. "Per core" means per second
//! of CPU time the collector process used (all its threads), read from
//! `/proc/<pid>/stat`, so the figure does not depend on how many cores the
//! client left free.
//!
//! The client sends bytes: the 16 templates are encoded once, and a batch's
//! request is a copy with its ids and times written in place ([`Encoded`]),
//! checked at start, byte for byte, against the templates stamped as
//! structs and encoded by prost ([`check_stamps`]). Until 2026-12-06 it
//! cloned and encoded the structs for every request: with four requests
//! in flight, the client's core was 71-72% busy and the collector 71% of
//! the run; sending bytes, 26-27% and 87-88% (BENCHMARKS.md). "collector
//! busy" says how much of the run the collector worked; `--in-flight 8`
//! keeps it busier still.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use collector::receiver::grpc::EncodedTraceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use schema::attr;

/// The allocator the `loadlens` binary uses, so the collector measured here
/// allocates as the shipped one does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Spans per request: 512 unless `--batch` says otherwise.
static BATCH_SIZE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

fn batch() -> usize {
    *BATCH_SIZE.get().unwrap_or(&512)
}

const ROLE: &str = "LOADLENS_BENCH_ROLE";
/// The CPU the collector process pins itself to, if the driver says one.
const CPU: &str = "LOADLENS_BENCH_CPU";
/// 2026-11-23T00:00:00Z, so every span lands in one day's partition.
const T0: u64 = 1_795_392_000_000_000_000;

struct Options {
    spans: usize,
    in_flight: usize,
    fsync: bool,
    phases_only: bool,
    pin: bool,
}

fn options() -> Options {
    let mut options = Options {
        spans: 2_000_000,
        in_flight: 4,
        fsync: true,
        phases_only: false,
        pin: true,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> usize {
            args.next()
                .and_then(|v| v.replace('_', "").parse().ok())
                .unwrap_or_else(|| panic!("{name} takes a number"))
        };
        match arg.as_str() {
            "--spans" => options.spans = number("--spans"),
            "--in-flight" => options.in_flight = number("--in-flight").max(1),
            "--no-fsync" => options.fsync = false,
            "--phases-only" => options.phases_only = true,
            "--no-pin" => options.pin = false,
            "--batch" => {
                let _ = BATCH_SIZE.set(number("--batch").max(1));
            }
            // `cargo bench` passes --bench; anything else is a mistake.
            "--bench" => {}
            other => panic!("unknown argument {other}; see the comment at the top of this file"),
        }
    }
    assert!(options.spans > 0, "--spans takes a number of at least 1");
    options
}

fn main() {
    if std::env::var(ROLE).as_deref() == Ok("collector") {
        // As `loadlens collector` does; the decode-only peer, in this
        // process, keeps the kernel's default.
        collector::avoid_huge_pages();
        if let Ok(cpu) = std::env::var(CPU) {
            pin_to(&[cpu.parse().expect("a CPU number")]);
        }
        serve();
        return;
    }
    let options = options();
    let batches = options.spans.div_ceil(batch());
    let spans = batches * batch();
    println!(
        "collector throughput: {spans} spans in {batches} batches of {}, 10 attributes each, fsync {}",
        batch(),
        if options.fsync { "on" } else { "off" }
    );
    println!("machine          : {}", machine());

    let templates: Vec<ExportTraceServiceRequest> = (0..TEMPLATES).map(template).collect();
    let encoded: Vec<Encoded> = templates.iter().map(Encoded::new).collect();
    check_stamps(&templates, &encoded, batches);
    let decode_only = |payload: &[u8]| {
        std::hint::black_box(decode_request(payload)).resource_spans[0].scope_spans[0]
            .spans
            .len()
    };
    let decode = per_cpu_second(&templates, batches, decode_only);
    println!(
        "decode only      : {:>10.0} spans per CPU-second (prost, one thread)",
        decode
    );
    let convert = per_cpu_second(&templates, batches.min(2000), |payload| {
        let converted =
            collector::convert::spans::convert(&decode_request(payload)).expect("converts");
        converted.rows()
    });
    println!(
        "decode + convert : {:>10.0} spans per CPU-second (prost, then to Arrow, one thread, no I/O)",
        convert
    );
    let walk = per_cpu_second(&templates, batches.min(2000), |payload| {
        let converted = collector::convert::spans::convert_encoded(payload).expect("converts");
        converted.rows()
    });
    println!(
        "wire to Arrow    : {:>10.0} spans per CPU-second (the collector's path, one thread, no I/O)",
        walk
    );

    let held = held_for_a_flush(&templates, batches.min(4000));
    println!(
        "convert, held    : {:>10.0} spans per CPU-second (wire to Arrow, each request's rows kept until a flush's worth, then dropped on another thread)",
        held
    );
    let (arrow, protobuf) = bytes_per_span(&templates[0]);
    println!(
        "in memory        : {arrow:>10} bytes per span in Arrow, as the collector counts pending rows ({protobuf} in protobuf)"
    );

    let parquet = to_parquet(&encoded, batches.min(2000));
    println!(
        "Arrow to Parquet : {:>10.0} spans per CPU-second (a flush: order, drop repeats, gather, encode, fsync; one thread, after an untimed round)",
        parquet
    );
    if options.phases_only {
        return;
    }

    let end_to_end = end_to_end(encoded, batches, &options);
    println!(
        "end to end       : {:>10.0} spans per collector CPU-second; {:.0} spans/s wall; {:.2} CPU-seconds over {:.2} s",
        end_to_end.spans as f64 / end_to_end.cpu_seconds,
        end_to_end.spans as f64 / end_to_end.wall.as_secs_f64(),
        end_to_end.cpu_seconds,
        end_to_end.wall.as_secs_f64()
    );
    println!(
        "collector busy   : {:.0}% of the run (its CPU-seconds over the wall time; {})",
        100.0 * end_to_end.cpu_seconds / end_to_end.wall.as_secs_f64(),
        if end_to_end.collector_cpu.is_some() {
            "on its one core, below 100% it waited for requests or the disk"
        } else {
            "not pinned, so several cores may add up"
        }
    );
    println!(
        "collector kernel : {:.0}% of its CPU-seconds (system time: socket reads, the log's writes and syncs, page faults)",
        100.0 * end_to_end.system_seconds / end_to_end.cpu_seconds
    );
    // The peer again, after the run and on the core the collector had
    // (the module's documentation says why).
    if let Some(cpu) = end_to_end.collector_cpu {
        pin_to(&[cpu]);
    }
    let decode_after = per_cpu_second(&templates, batches, decode_only);
    println!(
        "decode after     : {decode_after:>10.0} spans per CPU-second (prost, one thread, after the run, on the collector's core if pinned)"
    );
    let rate = end_to_end.spans as f64 / end_to_end.cpu_seconds;
    println!(
        "ratio            : {:.2} of the decode-only rate (the mean of before and after the run; {:.2} and {:.2} of each)",
        rate / ((decode + decode_after) / 2.0),
        rate / decode,
        rate / decode_after
    );
    println!(
        "on disk          : {:.1} bytes per span ({} rows in {} Parquet files, {} bytes)",
        end_to_end.parquet_bytes as f64 / end_to_end.rows as f64,
        end_to_end.rows,
        end_to_end.files,
        end_to_end.parquet_bytes
    );
    println!(
        "collector memory : {:.0} MiB peak RSS; {:.3} page faults per span ({} in all)",
        end_to_end.peak_rss_kib as f64 / 1024.0,
        end_to_end.page_faults as f64 / end_to_end.spans as f64,
        end_to_end.page_faults
    );
    println!(
        "looked up        : {} spans in files, past the recent-id index",
        end_to_end.looked_up
    );
    println!(
        "log commits      : {} ({:.2} requests a commit, {:.0} µs each)",
        end_to_end.commits,
        batches as f64 / end_to_end.commits.max(1) as f64,
        end_to_end.sync_nanos as f64 / 1000.0 / end_to_end.commits.max(1) as f64
    );
    assert_eq!(
        end_to_end.rows, spans as u64,
        "the collector stored a different number of spans than were acknowledged"
    );
}

fn string(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

fn int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..Default::default()
    }
}

/// Nanoseconds between the ends of consecutive spans: 500,000 requests a
/// second, the rate the collector is meant to keep up with.
const SPACING_NS: u64 = 2_000;

/// One request of 512 generator-like CLIENT spans with 10 attributes each.
/// Like a generator's, they are in the order their requests ended, so their
/// start times, by which the collector sorts, interleave with those of the
/// batches around them (latencies of 2-42 ms span about 40 batches).
fn template(seed: usize) -> ExportTraceServiceRequest {
    let routes = [
        "/api/items",
        "/api/items/{id}",
        "/api/cart",
        "/api/checkout",
    ];
    let spans = (0..batch())
        .map(|i| {
            let n = (seed * batch() + i) as u64;
            let latency = 2_000_000 + (n * 7919 % 40_000_000);
            // A second past T0, so that no start falls on the day before.
            let start = T0 + 1_000_000_000 + n * SPACING_NS - latency;
            let route = routes[(n % 4) as usize];
            let status = if n.is_multiple_of(97) { 503 } else { 200 };
            Span {
                trace_id: ids(n, 16),
                span_id: ids(n, 8),
                name: format!("GET {route}"),
                kind: 3,
                start_time_unix_nano: start,
                end_time_unix_nano: start + latency,
                attributes: vec![
                    string("http.request.method", "GET"),
                    string(
                        "url.full",
                        format!("http://shop.internal:8080{route}?q={n}"),
                    ),
                    string("http.route", route),
                    int("http.response.status_code", status),
                    string("server.address", "shop.internal"),
                    int("server.port", 8080),
                    string("loadlens.step", "4"),
                    int("loadlens.request.id", n as i64),
                    int(attr::INTENDED_START, start as i64),
                    int("http.response.body.size", 1024 + (n % 512) as i64),
                ],
                status: Some(Status {
                    code: if status == 200 { 0 } else { 2 },
                    ..Default::default()
                }),
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    string("service.name", "loadlens-generator"),
                    string("loadlens.run.id", "bench"),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "loadlens.generator".into(),
                    ..Default::default()
                }),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// Ids unique per span, never all zero, and as random to look at as the
/// ones tracers make (W3C trace context asks for random ids): a trace id is
/// two mixes of `n`, a span id one. The mix is a bijection, so no two spans
/// share an id. Ids that count up instead compress to a fraction of their
/// size, which real ones never do.
fn ids(n: u64, len: usize) -> Vec<u8> {
    let mut id = Vec::with_capacity(len);
    id.extend_from_slice(&mix(n + 1).to_be_bytes());
    if len == 16 {
        id.extend_from_slice(&mix(!n).to_be_bytes());
    }
    id
}

/// SplitMix64's finalizer: a bijection on u64 whose outputs look random.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Templates the batches take turns with.
const TEMPLATES: usize = 16;

/// What batch `k` is stamped with: the number of its first span, whose ids
/// its spans take in turn, and the nanoseconds its times move by (whole
/// rounds of the templates).
fn shift(k: usize) -> (u64, u64) {
    let first = (k * batch()) as u64;
    let later = (k / TEMPLATES * TEMPLATES * batch()) as u64 * SPACING_NS;
    (first, later)
}

/// Makes batch `k` unique: gives span `i` the ids of span `k * batch + i`,
/// and shifts every time by whole rounds of batches. [`Encoded::stamp`] does
/// the same to the encoded bytes, which the client sends; this form checks
/// it.
fn stamp(request: &mut ExportTraceServiceRequest, k: usize) {
    let (first, later) = shift(k);
    for (i, span) in request.resource_spans[0].scope_spans[0]
        .spans
        .iter_mut()
        .enumerate()
    {
        span.trace_id = ids(first + i as u64, 16);
        span.span_id = ids(first + i as u64, 8);
        span.start_time_unix_nano += later;
        span.end_time_unix_nano += later;
        for attribute in &mut span.attributes {
            if attribute.key == attr::INTENDED_START
                && let Some(any_value::Value::IntValue(at)) =
                    attribute.value.as_mut().and_then(|v| v.value.as_mut())
            {
                *at += later as i64;
            }
        }
    }
}

/// A template encoded once, with where each span's stamped fields lie, so that the client makes a batch's request by
/// copying the bytes and writing ids and times in place (see the module's
/// documentation for why).
struct Encoded {
    request: Vec<u8>,
    spans: Vec<SpanAt>,
}

/// Offsets in the encoded request of one span's trace id, span id,
/// start and end times (fixed64), and intended start (an int attribute: a
/// varint of 9 bytes, as every time here is in [2^56, 2^63) ns).
struct SpanAt {
    trace_id: usize,
    span_id: usize,
    start: usize,
    end: usize,
    intended: usize,
}

/// A protobuf field's key, for a field number below 16.
const fn key(field: u8, wire_type: u8) -> u8 {
    field << 3 | wire_type
}

impl Encoded {
    fn new(template: &ExportTraceServiceRequest) -> Self {
        let bytes = template.encode_to_vec();
        let mut after = 0;
        let spans = template.resource_spans[0].scope_spans[0]
            .spans
            .iter()
            .map(|span| {
                let own = span.encode_to_vec();
                let at = after + find(&bytes[after..], &own).expect("the span's bytes");
                after = at + own.len();
                // Where `value`, after `prefix`, lies in the bytes; only
                // once in its span, or the bench stops here.
                let field = |prefix: &[u8], value: &[u8]| {
                    let needle = [prefix, value].concat();
                    let found = find(&own, &needle).expect("the field in its span");
                    assert!(
                        find(&own[found + 1..], &needle).is_none(),
                        "a stamped field's bytes occur once in its span"
                    );
                    at + found + prefix.len()
                };
                let (len, fixed64, varint) = (2, 1, 0);
                let start = span.start_time_unix_nano;
                SpanAt {
                    // Span.trace_id (1) and span_id (2), with their lengths.
                    trace_id: field(&[key(1, len), 16], &span.trace_id),
                    span_id: field(&[key(2, len), 8], &span.span_id),
                    // Span.start_time_unix_nano (7) and end_time_unix_nano (8).
                    start: field(&[key(7, fixed64)], &start.to_le_bytes()),
                    end: field(&[key(8, fixed64)], &span.end_time_unix_nano.to_le_bytes()),
                    // AnyValue.int_value (3) of the intended start.
                    intended: field(&[key(3, varint)], &varint9(start)),
                }
            })
            .collect();
        Encoded {
            request: bytes,
            spans,
        }
    }

    /// Batch `k`'s request, as [`stamp`] makes it.
    fn stamp(&self, k: usize) -> Vec<u8> {
        let (first, later) = shift(k);
        let mut out = self.request.clone();
        let add = |bytes: &mut [u8]| {
            let time = u64::from_le_bytes(bytes[..8].try_into().unwrap()) + later;
            bytes[..8].copy_from_slice(&time.to_le_bytes());
        };
        for (i, at) in self.spans.iter().enumerate() {
            let n = first + i as u64;
            out[at.trace_id..at.trace_id + 16].copy_from_slice(&ids(n, 16));
            out[at.span_id..at.span_id + 8].copy_from_slice(&ids(n, 8));
            add(&mut out[at.start..]);
            add(&mut out[at.end..]);
            let intended = &mut out[at.intended..at.intended + 9];
            let time = intended
                .iter()
                .enumerate()
                .fold(0, |v, (j, b)| v | (u64::from(b & 0x7f) << (7 * j)));
            intended.copy_from_slice(&varint9(time + later));
        }
        out
    }
}

/// `value` as a varint of exactly 9 bytes, its shortest form for values
/// in [2^56, 2^63).
fn varint9(value: u64) -> [u8; 9] {
    assert!(
        (1 << 56..1 << 63).contains(&value),
        "a time in [2^56, 2^63) ns, whose varint is 9 bytes"
    );
    let mut bytes = [0; 9];
    for (j, byte) in bytes.iter_mut().enumerate() {
        let more = if j < 8 { 0x80 } else { 0 };
        *byte = (value >> (7 * j)) as u8 & 0x7f | more;
    }
    bytes
}

/// Where `needle` first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Fails unless the stamped bytes of the first two rounds of templates and
/// of the run's last batch are, byte for byte, what prost encodes of the
/// templates stamped by [`stamp`].
fn check_stamps(templates: &[ExportTraceServiceRequest], encoded: &[Encoded], batches: usize) {
    for k in (0..2 * TEMPLATES).chain([batches - 1]) {
        let mut request = templates[k % TEMPLATES].clone();
        stamp(&mut request, k);
        assert!(
            encoded[k % TEMPLATES].stamp(k) == request.encode_to_vec(),
            "batch {k}: the stamped bytes differ from the stamped template"
        );
    }
}

/// CPU seconds used so far by the calling thread.
fn thread_cpu_seconds() -> f64 {
    cpu_seconds(Path::new("/proc/thread-self/stat"))
}

/// utime + stime from a `/proc/.../stat` file, in seconds (USER_HZ is 100 on Linux).
fn cpu_seconds(stat: &Path) -> f64 {
    cpu_system_faults(stat).0
}

/// [`cpu_seconds`], its system (kernel) part and the minor page faults,
/// from one reading.
fn cpu_system_faults(stat: &Path) -> (f64, f64, u64) {
    let [faults, user, system] = stat_fields(stat, [7, 11, 12]);
    (
        (user + system) as f64 / 100.0,
        system as f64 / 100.0,
        faults,
    )
}

/// The processor this run had, as `/proc/cpuinfo` and `/proc/stat` give
/// it: the model, how many CPUs, the clock, whether AVX-512 is there, and
/// when the machine booted. A virtual machine is not always started on the
/// same kind of host, so the figures of two runs compare only when this
/// line is the same in both (BENCHMARKS.md, "Collector").
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let first = |key: &str| {
        cpuinfo
            .lines()
            .find(|line| line.split(':').next().is_some_and(|k| k.trim() == key))
            .and_then(|line| line.split_once(':'))
            .map_or("unknown", |(_, value)| value.trim())
            .to_owned()
    };
    let cpus = cpuinfo
        .lines()
        .filter(|line| line.starts_with("processor"))
        .count();
    let avx512 = first("flags")
        .split_whitespace()
        .any(|flag| flag == "avx512f");
    let booted = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|stat| {
            stat.lines()
                .find_map(|line| line.strip_prefix("btime "))
                .and_then(|seconds| seconds.trim().parse::<u64>().ok())
        })
        .map_or("at an unknown time".to_owned(), |seconds| {
            let day = schema::layout::utc_day(seconds as i64 * 1_000_000_000);
            let (h, min) = (seconds % 86_400 / 3600, seconds % 3600 / 60);
            format!("{day} {h:02}:{min:02} UTC")
        });
    format!(
        "{}, {cpus} CPUs at {} MHz, {} AVX-512, booted {booted}",
        first("model name"),
        first("cpu MHz"),
        if avx512 { "with" } else { "without" },
    )
}

/// Fields of one read of a `/proc/.../stat` file, counting from the one
/// after the command name (the state is 0, minflt 7, utime 11, stime 12).
fn stat_fields<const N: usize>(stat: &Path, wanted: [usize; N]) -> [u64; N] {
    let text = std::fs::read_to_string(stat).expect("read /proc stat");
    // The command name may contain spaces; fields resume after its ')'.
    let fields: Vec<&str> = text[text.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .collect();
    wanted.map(|n| fields[n].parse().expect("a number"))
}

/// Spans per CPU-second of `work` (which returns the spans it handled) over
/// `batches` payloads, on this thread.
fn per_cpu_second(
    templates: &[ExportTraceServiceRequest],
    batches: usize,
    work: impl Fn(&[u8]) -> usize,
) -> f64 {
    let payloads: Vec<Vec<u8>> = templates.iter().map(|t| t.encode_to_vec()).collect();
    let start = thread_cpu_seconds();
    let spans: usize = (0..batches)
        .map(|k| work(&payloads[k % payloads.len()]))
        .sum();
    spans as f64 / (thread_cpu_seconds() - start)
}

/// Spans per CPU-second of converting, each request's rows kept as the
/// pending set keeps them until a flush (`flush_rows`, 200,000 by default)
/// and then dropped on another thread, as a flush drops them. Against
/// "wire to Arrow", whose rows are dropped at once and whose memory is
/// reused while still in the caches, it shows what holding rows costs.
fn held_for_a_flush(templates: &[ExportTraceServiceRequest], batches: usize) -> f64 {
    let flush = collector::CollectorConfig::new("unused")
        .flush_rows
        .div_ceil(batch());
    let (to_flush, flushes) = std::sync::mpsc::channel::<Vec<collector::convert::Converted>>();
    let flusher = std::thread::spawn(move || flushes.into_iter().for_each(drop));
    let held = std::cell::RefCell::new(Vec::with_capacity(flush));
    let rate = per_cpu_second(templates, batches, |payload| {
        let converted = collector::convert::spans::convert_encoded(payload).expect("converts");
        let rows = converted.rows();
        let mut held = held.borrow_mut();
        held.push(converted);
        if held.len() == flush {
            let full = std::mem::replace(&mut *held, Vec::with_capacity(flush));
            to_flush.send(full).expect("the flusher is running");
        }
        rows
    });
    drop(to_flush);
    flusher.join().expect("the flusher ends");
    rate
}

/// Bytes a span of `template` takes converted, as the collector counts
/// pending rows against its memory bound, and in protobuf.
fn bytes_per_span(template: &ExportTraceServiceRequest) -> (usize, usize) {
    let payload = template.encode_to_vec();
    let converted = collector::convert::spans::convert_encoded(&payload).expect("converts");
    let spans = converted.rows();
    (converted.memory() / spans, payload.len() / spans)
}

/// Spans per CPU-second of the flush alone: `batches` payloads converted
/// (untimed), then written a flush's worth of rows at a time as the collector
/// does with its default settings, checked against and added to the index
/// of recently written span ids.
///
/// First, untimed, as many other batches are converted and flushed, as a
/// running collector has flushed others before: the index then holds
/// their ids (at its bound of 1,000,000 from 2,000 batches, the most this
/// phase takes, and expiring as it claims), and the allocator holds the
/// pages a flush needs. Without that round a third of the flush's time
/// went to the kernel zeroing fresh pages and to the index's tables
/// growing (BENCHMARKS.md).
fn to_parquet(encoded: &[Encoded], batches: usize) -> f64 {
    let flush_rows = collector::CollectorConfig::new("unused").flush_rows;
    let convert = |ks: std::ops::Range<usize>| -> Vec<_> {
        ks.flat_map(|k| {
            collector::convert::spans::convert_encoded(&encoded[k % TEMPLATES].stamp(k))
                .expect("converts")
                .batches
        })
        .collect()
    };
    let dir = std::env::temp_dir().join(format!("loadlens-bench-flush-{}", std::process::id()));
    // The index of recently written span ids, as the collector keeps it.
    let mut recent = collector::store::RecentSpans::new(collector::store::Dedupe::default());
    let mut flush_all = |converted: &[(collector::convert::PartitionKey, RecordBatch)]| -> usize {
        let mut rows = 0;
        for flush in converted.chunks(flush_rows.div_ceil(batch())) {
            let key = &flush[0].0;
            let batches: Vec<_> = flush.iter().map(|(_, batch)| batch.clone()).collect();
            let written =
                collector::store::write_partition_after(&dir, key, &batches, 0, &mut recent)
                    .expect("writes");
            rows += written.rows;
        }
        rows
    };
    // Batches the timed ones never repeat: their spans' ids are their own,
    // and their times earlier, as a running collector's earlier flushes'
    // are. Later times would put every timed span at or before the index's
    // horizon, to be looked up in the files.
    let before = flush_all(&convert(0..batches));
    assert_eq!(before, batches * batch(), "every warm-up span was written");
    let converted = convert(batches..2 * batches);
    let start = thread_cpu_seconds();
    let rows = flush_all(&converted);
    let cpu = thread_cpu_seconds() - start;
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(rows, batches * batch(), "every converted span was written");
    rows as f64 / cpu
}

fn decode_request(payload: &[u8]) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest::decode(payload).expect("decodes")
}

struct EndToEnd {
    spans: usize,
    /// The CPU the collector ran on, when it was pinned to one and the
    /// client to the others.
    collector_cpu: Option<usize>,
    wall: Duration,
    cpu_seconds: f64,
    /// The part of `cpu_seconds` spent in the kernel.
    system_seconds: f64,
    rows: u64,
    files: usize,
    parquet_bytes: u64,
    peak_rss_kib: u64,
    /// Minor page faults of the collector process while it served: mostly
    /// fresh memory the kernel zeroed, which CPU time alone does not tell
    /// apart.
    page_faults: u64,
    /// Group commits of the write-ahead log, and the nanoseconds they took
    /// in all (writes and fdatasync): fewer requests a commit, more of the
    /// log's fixed cost a span.
    commits: u64,
    sync_nanos: u64,
    /// Spans a flush looked for in files, past the recent-id index.
    looked_up: u64,
}

fn end_to_end(encoded: Vec<Encoded>, batches: usize, options: &Options) -> EndToEnd {
    let data = std::env::temp_dir().join(format!("loadlens-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let mut command = Command::new(std::env::current_exe().unwrap());
    let cpus = allowed_cpus();
    let collector_cpu = match cpus.split_last() {
        Some((collector, client)) if options.pin && !client.is_empty() => {
            // Threads started from here on (the client's runtime) inherit it.
            pin_to(client);
            command.env(CPU, collector.to_string());
            println!(
                "pinned           : the collector to CPU {collector}, the client to CPUs {client:?}"
            );
            Some(*collector)
        }
        _ => {
            command.env_remove(CPU);
            println!("pinned           : no, both left to the scheduler");
            None
        }
    };
    // As `loadlens collector` sets it for the default bound (through
    // mimalloc's API there); a delay this run's environment sets passes on.
    let bound = collector::config::DEFAULT_MAX_PENDING_BYTES;
    if !collector::purge_delay_from_environment()
        && let Some(ms) = collector::free_pages_kept_ms(bound)
    {
        command.env("MIMALLOC_PURGE_DELAY", ms.to_string());
    }
    let mut child = command
        .env(ROLE, "collector")
        .env("LOADLENS_BENCH_DATA", &data)
        .env(
            "LOADLENS_BENCH_FSYNC",
            if options.fsync { "1" } else { "0" },
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the collector process");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = lines.next().expect("collector says ready").unwrap();
    let endpoint = format!("http://{}", ready.strip_prefix("ready ").unwrap());
    let pid = child.id();
    let stat = PathBuf::from(format!("/proc/{pid}/stat"));
    let (cpu_before, system_before, faults_before) = cpu_system_faults(&stat);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let encoded = std::sync::Arc::new(encoded);
    runtime.block_on(async {
        // tonic's client encodes messages of any size; answers are small.
        let client = EncodedTraceClient::connect(endpoint)
            .await
            .expect("connect");
        // Each worker keeps one request in flight and takes the next batch number.
        let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..options.in_flight {
            let mut client = client.clone();
            let next = next.clone();
            let encoded = encoded.clone();
            workers.spawn(async move {
                loop {
                    let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if k >= batches {
                        break;
                    }
                    let request = encoded[k % TEMPLATES].stamp(k);
                    let answer = client
                        .export(request.into())
                        .await
                        .expect("export acknowledged");
                    assert!(answer.into_inner().partial_success.is_none());
                }
            });
        }
        while let Some(joined) = workers.join_next().await {
            joined.expect("client task");
        }
    });
    // Everything is acknowledged; closing stdin asks the collector to flush and report.
    drop(child.stdin.take());
    let report = lines.next().expect("collector report").unwrap();
    let wall = started.elapsed();
    child.wait().unwrap();
    let field = |name: &str| -> u64 {
        report
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {report}"))
    };
    let cpu_after = field("cpu_centis") as f64 / 100.0;
    let (files, parquet_bytes, rows) = parquet_files(&data.join("spans"));
    let _ = std::fs::remove_dir_all(&data);
    EndToEnd {
        spans: batches * batch(),
        collector_cpu,
        wall,
        cpu_seconds: cpu_after - cpu_before,
        system_seconds: field("system_centis") as f64 / 100.0 - system_before,
        rows,
        files,
        parquet_bytes,
        peak_rss_kib: field("rss_kib"),
        page_faults: field("minflt") - faults_before,
        commits: field("commits"),
        sync_nanos: field("sync_nanos"),
        looked_up: field("looked_up"),
    }
}

/// The CPUs this thread may run on.
fn allowed_cpus() -> Vec<usize> {
    use nix::sched::{CpuSet, sched_getaffinity};
    use nix::unistd::Pid;
    let set = sched_getaffinity(Pid::from_raw(0)).expect("sched_getaffinity");
    (0..CpuSet::count())
        .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
        .collect()
}

/// Pins the calling thread, and the threads it starts later, to `cpus`.
fn pin_to(cpus: &[usize]) {
    use nix::sched::{CpuSet, sched_setaffinity};
    use nix::unistd::Pid;
    let mut set = CpuSet::new();
    for &cpu in cpus {
        set.set(cpu).expect("a CPU number within the set");
    }
    sched_setaffinity(Pid::from_raw(0), &set).expect("sched_setaffinity");
}

/// Files, bytes and rows (from each file's footer) of the Parquet files below `dir`.
fn parquet_files(dir: &Path) -> (usize, u64, u64) {
    use parquet::file::reader::FileReader;
    let files = schema::layout::parquet_files(dir);
    let mut bytes = 0;
    let mut rows = 0;
    for path in &files {
        let file = std::fs::File::open(path).unwrap();
        bytes += file.metadata().unwrap().len();
        let reader = parquet::file::reader::SerializedFileReader::new(file)
            .expect("a readable Parquet file");
        rows += reader.metadata().file_metadata().num_rows() as u64;
    }
    (files.len(), bytes, rows)
}

/// The collector side: start, say where, serve until stdin closes, flush, report.
fn serve() {
    let data = PathBuf::from(std::env::var("LOADLENS_BENCH_DATA").unwrap());
    let mut config = collector::CollectorConfig::ephemeral(&data);
    config.wal_sync = std::env::var("LOADLENS_BENCH_FSYNC").as_deref() != Ok("0");
    config.max_grpc_message = 64 << 20;
    // The write-ahead log's group-commit interval, when the environment
    // gives one (`wal_commit_interval` of `loadlens collector`), in µs.
    if let Ok(micros) = std::env::var("LOADLENS_BENCH_COMMIT_INTERVAL_US") {
        let micros = micros
            .parse()
            .expect("LOADLENS_BENCH_COMMIT_INTERVAL_US is a number");
        config.wal_commit_interval = Duration::from_micros(micros);
    }
    if let Ok(bytes) = std::env::var("LOADLENS_BENCH_MAX_MEMORY") {
        let bytes = bytes
            .parse()
            .expect("LOADLENS_BENCH_MAX_MEMORY is a number of bytes");
        config.max_memory = Some(bytes);
    }
    if let Ok(rows) = std::env::var("LOADLENS_BENCH_FLUSH_ROWS") {
        config.flush_rows = rows
            .parse()
            .expect("LOADLENS_BENCH_FLUSH_ROWS is a number of rows");
    }
    if let Ok(ids) = std::env::var("LOADLENS_BENCH_DEDUPE_MAX_SPANS") {
        config.dedupe.max_spans = ids
            .parse()
            .expect("LOADLENS_BENCH_DEDUPE_MAX_SPANS is a number");
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let collector = collector::Collector::start(config).await.expect("start");
        println!("ready {}", collector.grpc_addr());
        std::io::stdout().flush().unwrap();
        // Wait for the driver to close stdin, off the async threads.
        tokio::task::spawn_blocking(|| {
            let mut sink = String::new();
            while std::io::stdin().read_line(&mut sink).unwrap_or(0) > 0 {}
        })
        .await
        .unwrap();
        let stats = collector.ingest().stats();
        let (commits, sync_nanos, looked_up) = (
            stats.wal_commits.load(std::sync::atomic::Ordering::Relaxed),
            stats.wal_sync_nanos.load(std::sync::atomic::Ordering::Relaxed),
            stats.spans_looked_up.load(std::sync::atomic::Ordering::Relaxed),
        );
        let last = collector.shutdown().await.expect("flush at shutdown");
        let looked_up = looked_up + last.looked_up;
        // Faults, user and system time from one reading, so that they agree.
        let [minflt, user, system] = stat_fields(Path::new("/proc/self/stat"), [7, 11, 12]);
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let rss_kib = collector::memory::status_bytes(&status, "VmHWM").unwrap_or(0) >> 10;
        println!(
            "done cpu_centis={} system_centis={} rss_kib={rss_kib} minflt={} commits={commits} sync_nanos={sync_nanos} looked_up={looked_up}",
            user + system,
            system,
            minflt
        );
    });
}
