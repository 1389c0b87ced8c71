//! The database tier: parallel work, then a contended resource whose hold time
//! grows with the number of requests in flight.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use exporter::SpanSink;
use exporter::attributes::{int, string};
use exporter::proto_trace::span::{Event, SpanKind};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use crate::DemoConfig;
use crate::spans::{DemoSpan, child_of, now, parent_of};

#[derive(Debug, Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    parallel: Duration,
    serial: Duration,
    coherency: Duration,
    in_flight: AtomicI64,
    /// When the contended resource is next free. Reservations are exact even
    /// though the timer wakes with millisecond granularity, so throughput at the
    /// resource is exactly 1 / hold.
    next_free: Mutex<Instant>,
    sink: Option<SpanSink>,
}

impl Db {
    pub fn new(config: &DemoConfig, sink: Option<SpanSink>) -> Self {
        Db {
            inner: Arc::new(Inner {
                parallel: config.db_parallel,
                serial: config.serial,
                coherency: config.coherency,
                in_flight: AtomicI64::new(0),
                next_free: Mutex::new(Instant::now()),
                sink,
            }),
        }
    }

    /// How long a request holds the resource with `in_flight` requests in the tier.
    pub fn hold(&self, in_flight: i64) -> Duration {
        self.inner.serial + self.inner.coherency * (in_flight.max(1) - 1) as u32
    }

    pub async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let start = now();
        let (trace_id, span_id, parent) = child_of(parent_of(&req));
        let inner = &self.inner;
        let in_flight = inner.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        tokio::time::sleep(inner.parallel).await;
        let hold = self.hold(inner.in_flight.load(Ordering::Relaxed));
        let arrived = Instant::now();
        let (acquired, released) = {
            let mut next_free = inner.next_free.lock().expect("resource lock");
            let acquired = (*next_free).max(arrived);
            *next_free = acquired + hold;
            (acquired, *next_free)
        };
        tokio::time::sleep_until(released.into()).await;
        inner.in_flight.fetch_sub(1, Ordering::Relaxed);
        if let Some(sink) = &inner.sink {
            let waited = acquired.saturating_duration_since(arrived);
            let lock_event = Event {
                time_unix_nano: now() as u64,
                name: "resource.released".into(),
                attributes: vec![
                    int("demo.hold_us", hold.as_micros() as i64),
                    int("demo.in_flight", in_flight),
                    string("demo.resource", "orders_table"),
                    int("demo.wait_us", waited.as_micros() as i64),
                ],
                ..Default::default()
            };
            sink.send(
                DemoSpan {
                    trace_id,
                    span_id,
                    parent,
                    name: "SELECT orders",
                    kind: SpanKind::Server,
                    start,
                    end: now(),
                    route: "/query",
                    status: 200,
                    extra: vec![lock_event],
                }
                .into_proto(),
            );
        }
        let mut response = Response::new(Full::new(Bytes::from_static(b"{\"orders\":[]}\n")));
        *response.status_mut() = StatusCode::OK;
        response
    }
}
