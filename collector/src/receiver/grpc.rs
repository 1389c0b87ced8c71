//! OTLP/gRPC: the TraceService and MetricsService `Export` calls.
//!
//! Traces are served by [`TraceServer`], which hands the handler the
//! request's bytes as they arrived: the rows are read straight from them
//! ([`crate::convert::spans::convert_encoded`]) and the write-ahead log keeps
//! them as they are, where tonic's generated server would decode into structs
//! that are then re-encoded for the log. A request that comes as one
//! uncompressed message in one HTTP/2 DATA frame (an exporter's usual batch,
//! frames being allowed up to 1 MiB) is answered without tonic's decoder,
//! which would copy the frame into a buffer of its own; any other request
//! (gzip, several frames, over the size limit) goes through tonic, given
//! back the frames already read. Metrics, far fewer, use the generated
//! server.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http_body::Frame;
use http_body_util::BodyExt;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{Body, BoxFuture, Context, Poll, Service, StdError, http};
use tonic::metadata::MetadataMap;
use tonic::server::{Grpc, NamedService};
use tonic::{Request, Response, Status};
use tonic_prost::{ProstDecoder, ProstEncoder};
use tonic_types::{ErrorDetails, StatusExt};

use super::{Export, ExportFailure, Metrics, Traces};
use crate::convert::EncodedError;
use crate::ingest::Ingest;

#[derive(Debug, Clone)]
pub struct Receiver {
    ingest: Arc<Ingest>,
    /// When set, requests must carry `authorization: Bearer <token>`.
    token: Option<Arc<str>>,
}

impl Receiver {
    pub fn new(ingest: Arc<Ingest>, token: Option<Arc<str>>) -> Self {
        Receiver { ingest, token }
    }

    /// The two services, limited to `max_message` bytes per request.
    pub fn services(self, max_message: usize) -> (TraceServer, MetricsServiceServer<Receiver>) {
        let traces = TraceServer {
            receiver: self.clone(),
            max_message,
        };
        let metrics = MetricsServiceServer::new(self)
            .accept_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(max_message);
        (traces, metrics)
    }

    fn check_token<E: Export>(&self, metadata: &MetadataMap) -> Result<(), Status> {
        let header = metadata.get("authorization").map(|v| v.as_bytes());
        if super::authorized(self.token.as_deref(), header) {
            return Ok(());
        }
        self.ingest
            .stats()
            .refused_unauthenticated
            .add(E::SIGNAL, 1);
        Err(Status::unauthenticated(super::UNAUTHENTICATED))
    }

    async fn export<E: Export>(
        &self,
        metadata: &MetadataMap,
        payload: Bytes,
        convert: impl FnOnce(&[u8]) -> Result<crate::convert::Converted, EncodedError>,
    ) -> Result<E::Response, Status> {
        self.check_token::<E>(metadata)?;
        super::export::<E>(&self.ingest, payload, convert)
            .await
            .map_err(|failure| match failure {
                ExportFailure::Invalid(e) => {
                    Status::invalid_argument(format!("invalid protobuf: {e}"))
                }
                ExportFailure::Convert(e) => Status::internal(format!("cannot convert: {e}")),
                // UNAVAILABLE, which OTLP clients retry, with a RetryInfo delay.
                ExportFailure::NotStored(e) => Status::with_error_details(
                    tonic::Code::Unavailable,
                    e.to_string(),
                    ErrorDetails::with_retry_info(Some(e.retry_after())),
                ),
            })
    }
}

#[tonic::async_trait]
impl MetricsService for Receiver {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let payload = Bytes::from(request.get_ref().encode_to_vec());
        let decoded = request.get_ref();
        Receiver::export::<Metrics>(self, request.metadata(), payload, |_| {
            Metrics::convert(decoded).map_err(EncodedError::Convert)
        })
        .await
        .map(Response::new)
    }
}

/// The OTLP TraceService, fed the request bytes undecoded.
#[derive(Debug, Clone)]
pub struct TraceServer {
    receiver: Receiver,
    max_message: usize,
}

const TRACE_SERVICE: &str = "opentelemetry.proto.collector.trace.v1.TraceService";
/// The path of the TraceService `Export` call.
const TRACE_EXPORT: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

impl NamedService for TraceServer {
    const NAME: &'static str = TRACE_SERVICE;
}

impl<B> Service<http::Request<B>> for TraceServer
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != TRACE_EXPORT {
            return Box::pin(async { Ok(Status::unimplemented("").into_http()) });
        }
        let receiver = self.receiver.clone();
        let max_message = self.max_message;
        Box::pin(async move {
            let request = match read_whole_message(request, max_message).await {
                Read::Whole(headers, payload) => {
                    let metadata = MetadataMap::from_headers(headers);
                    let answer = receiver
                        .export::<Traces>(&metadata, payload, Traces::convert_encoded)
                        .await;
                    return Ok(match answer {
                        Ok(response) => answer_ok(&response),
                        Err(status) => status.into_http(),
                    });
                }
                Read::Failed(status) => return Ok(status.into_http()),
                Read::Other(request) => request,
            };
            let export = ExportTraces(receiver);
            let mut grpc = Grpc::new(RawRequests)
                .accept_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(max_message);
            Ok(grpc.unary(export, request).await)
        })
    }
}

/// A trace request after its first frames were read.
enum Read<B> {
    /// One uncompressed message, whole, and the stream ended: its headers
    /// and its bytes, which still are the bytes of the DATA frame.
    Whole(http::HeaderMap, Bytes),
    /// Anything else, with the frames read so far given back.
    Other(http::Request<Replayed<B>>),
    /// The body failed before a message was read.
    Failed(Status),
}

/// Reads a request whose body is one gRPC message in one DATA frame, as
/// exporters send a batch (see the module docs), or leaves it to tonic.
async fn read_whole_message<B>(request: http::Request<B>, max_message: usize) -> Read<B>
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    let (parts, body) = request.into_parts();
    let mut body = Replayed {
        read: VecDeque::new(),
        rest: Box::pin(body),
    };
    let identity = parts
        .headers
        .get("grpc-encoding")
        .is_none_or(|e| e == "identity");
    let mut message = None;
    loop {
        let frame = match body.rest.frame().await {
            None => break,
            Some(Ok(frame)) => frame.map_data(|mut data| data.copy_to_bytes(data.remaining())),
            Some(Err(e)) => return Read::Failed(Status::from_error(e.into())),
        };
        match frame.data_ref() {
            // The one message, whole in its frame.
            Some(data) if message.is_none() && body.read.is_empty() && identity => {
                message = whole_message(data, max_message);
            }
            // The empty frame some clients end a stream with.
            Some(data) if data.is_empty() => continue,
            // Trailers: kept for tonic, should the request still go there.
            None => {}
            // A second message, or the rest of one.
            Some(_) => message = None,
        }
        body.read.push_back(frame);
        if message.is_none() {
            break;
        }
    }
    match message {
        Some(payload) => {
            // As tonic does, request trailers join the metadata.
            let mut headers = parts.headers;
            for frame in body.read {
                if let Ok(trailers) = frame.into_trailers() {
                    headers.extend(trailers);
                }
            }
            Read::Whole(headers, payload)
        }
        None => Read::Other(http::Request::from_parts(parts, body)),
    }
}

/// The message of a gRPC frame (flag, length, bytes) that holds exactly one
/// uncompressed message of at most `max_message` bytes.
fn whole_message(data: &Bytes, max_message: usize) -> Option<Bytes> {
    let (&[flag, a, b, c, d], message) = data.split_first_chunk::<5>()?;
    let length = u32::from_be_bytes([a, b, c, d]) as usize;
    (flag == 0 && length == message.len() && length <= max_message).then(|| data.slice(5..))
}

/// A request body whose first frames were read, given back in order
/// before the rest.
struct Replayed<B> {
    read: VecDeque<Frame<Bytes>>,
    rest: Pin<Box<B>>,
}

impl<B> Body for Replayed<B>
where
    B: Body + Send + 'static,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        if let Some(frame) = self.read.pop_front() {
            return Poll::Ready(Some(Ok(frame)));
        }
        self.rest.as_mut().poll_frame(cx).map(|frame| {
            frame.map(|frame| frame.map(|f| f.map_data(|mut d| d.copy_to_bytes(d.remaining()))))
        })
    }

    fn is_end_stream(&self) -> bool {
        self.read.is_empty() && self.rest.is_end_stream()
    }
}

/// An OK answer: the response message in one frame, then `grpc-status: 0`.
fn answer_ok(response: &ExportTraceServiceResponse) -> http::Response<tonic::body::Body> {
    let length = response.encoded_len();
    let mut data = BytesMut::with_capacity(5 + length);
    data.put_u8(0);
    data.put_u32(length as u32);
    response
        .encode(&mut data)
        .expect("the buffer has room for the message");
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    let body = Answer {
        data: Some(data.freeze()),
        trailers: Some(trailers),
    };
    let mut answer = http::Response::new(tonic::body::Body::new(body));
    answer.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    answer
}

/// The body of [`answer_ok`].
struct Answer {
    data: Option<Bytes>,
    trailers: Option<http::HeaderMap>,
}

impl Body for Answer {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let frame = match self.data.take() {
            Some(data) => Frame::data(data),
            None => match self.trailers.take() {
                Some(trailers) => Frame::trailers(trailers),
                None => return Poll::Ready(None),
            },
        };
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }
}

/// One `Export` call on [`TraceServer`].
struct ExportTraces(Receiver);

impl Service<Request<Bytes>> for ExportTraces {
    type Response = Response<ExportTraceServiceResponse>;
    type Error = Status;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let receiver = self.0.clone();
        Box::pin(async move {
            let (metadata, _, payload) = request.into_parts();
            receiver
                .export::<Traces>(&metadata, payload, Traces::convert_encoded)
                .await
                .map(Response::new)
        })
    }
}

/// Requests as the bytes that arrived (after gRPC decompression), answers
/// encoded by prost.
#[derive(Debug, Clone, Copy)]
struct RawRequests;

impl Codec for RawRequests {
    type Encode = ExportTraceServiceResponse;
    type Decode = Bytes;
    type Encoder = ProstEncoder<ExportTraceServiceResponse>;
    type Decoder = RawBytes;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawBytes
    }
}

/// A message as its bytes, either way: a request as it arrived, or as a
/// client sends it.
struct RawBytes;

impl Decoder for RawBytes {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

impl Encoder for RawBytes {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

/// A client of the TraceService `Export` call that sends requests already
/// encoded: for clients that hold a request's bytes and stamp each copy in
/// place, as the throughput bench and the overload test do, rather than
/// build and encode structs for every call.
#[derive(Debug, Clone)]
pub struct EncodedTraceClient(tonic::client::Grpc<tonic::transport::Channel>);

impl EncodedTraceClient {
    pub async fn connect(endpoint: String) -> Result<Self, tonic::transport::Error> {
        let channel = tonic::transport::Endpoint::from_shared(endpoint)?
            .connect()
            .await?;
        Ok(EncodedTraceClient(tonic::client::Grpc::new(channel)))
    }

    /// One `Export` call whose request is `request`, the bytes of an
    /// `ExportTraceServiceRequest`.
    pub async fn export(
        &mut self,
        request: Bytes,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        self.0
            .ready()
            .await
            .map_err(|e| Status::unavailable(format!("the channel is not ready: {e}")))?;
        let path = http::uri::PathAndQuery::from_static(TRACE_EXPORT);
        self.0
            .unary(Request::new(request), path, EncodedRequests)
            .await
    }
}

/// The client's side of [`RawRequests`]: requests sent as the encoded bytes
/// given, answers decoded by prost.
#[derive(Debug, Clone, Copy)]
struct EncodedRequests;

impl Codec for EncodedRequests {
    type Encode = Bytes;
    type Decode = ExportTraceServiceResponse;
    type Encoder = RawBytes;
    type Decoder = ProstDecoder<ExportTraceServiceResponse>;

    fn encoder(&mut self) -> Self::Encoder {
        RawBytes
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::spans::request_of;
    use opentelemetry_proto::tonic::trace::v1::Span;
    use std::io::Write;
    use tonic::codegen::tokio_stream;

    const MAX_MESSAGE: usize = 64 * 1024;

    /// A request of `n` spans, encoded.
    fn spans(n: u8) -> Vec<u8> {
        let spans = (1..=n)
            .map(|i| Span {
                trace_id: vec![i; 16],
                span_id: vec![i; 8],
                name: "GET /".into(),
                start_time_unix_nano: 1_795_392_000_000_000_000,
                end_time_unix_nano: 1_795_392_000_000_001_000,
                ..Default::default()
            })
            .collect();
        request_of(spans).encode_to_vec()
    }

    /// A gRPC frame: compressed flag, length, message.
    fn framed(flag: u8, message: &[u8]) -> Vec<u8> {
        let mut frame = vec![flag];
        frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
        frame.extend_from_slice(message);
        frame
    }

    type TestBody = http_body_util::StreamBody<
        tokio_stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>,
    >;

    /// An Export request whose body arrives as these DATA frames.
    fn request(frames: Vec<Vec<u8>>, gzip: bool) -> http::Request<TestBody> {
        let frames = frames
            .into_iter()
            .map(|f| Frame::data(Bytes::from(f)))
            .collect();
        request_of_frames(frames, gzip)
    }

    /// An Export request whose body is these frames.
    fn request_of_frames(frames: Vec<Frame<Bytes>>, gzip: bool) -> http::Request<TestBody> {
        let frames: Vec<_> = frames.into_iter().map(Ok).collect();
        let mut request =
            http::Request::new(http_body_util::StreamBody::new(tokio_stream::iter(frames)));
        *request.uri_mut() = TRACE_EXPORT.parse().unwrap();
        let headers = request.headers_mut();
        headers.insert("content-type", "application/grpc".parse().unwrap());
        if gzip {
            headers.insert("grpc-encoding", "gzip".parse().unwrap());
        }
        request
    }

    /// Sends `request` to a trace server on a fresh store; returns the
    /// answer's status and the rows that became pending.
    async fn export(name: &str, request: http::Request<TestBody>) -> (Status, usize) {
        let root =
            std::env::temp_dir().join(format!("loadlens-grpc-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let ingest = Arc::new(Ingest::open(root.clone(), usize::MAX, usize::MAX, false).unwrap());
        let (mut server, _) = Receiver::new(ingest.clone(), None).services(MAX_MESSAGE);
        let answer = server.call(request).await.unwrap();
        let headers = answer.headers().clone();
        let collected = answer.into_body().collect().await.unwrap();
        // An error comes as headers only; an answer's status in its trailers.
        let status = match collected.trailers() {
            Some(trailers) => Status::from_header_map(trailers),
            None => Status::from_header_map(&headers),
        }
        .expect("the answer carries a grpc-status");
        if status.code() == tonic::Code::Ok {
            let body = collected.to_bytes();
            assert_eq!(body[0], 0, "an uncompressed answer");
            ExportTraceServiceResponse::decode(&body[5..]).expect("the answer decodes");
        }
        let pending = ingest.pending_rows();
        ingest.close();
        std::fs::remove_dir_all(&root).unwrap();
        (status, pending)
    }

    #[tokio::test]
    async fn one_message_in_one_frame_is_read_from_the_frame() {
        let frame = framed(0, &spans(3));
        let read = read_whole_message(request(vec![frame.clone()], false), MAX_MESSAGE).await;
        let Read::Whole(_, payload) = read else {
            panic!("one uncompressed message in one frame is the direct path");
        };
        assert_eq!(payload, frame[5..]);

        let (status, pending) = export("whole", request(vec![frame], false)).await;
        assert_eq!((status.code(), pending), (tonic::Code::Ok, 3), "{status:?}");
    }

    #[tokio::test]
    async fn request_trailers_join_the_metadata_on_the_direct_path() {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-sent-after", "the message".parse().unwrap());
        let frames = vec![
            Frame::data(Bytes::from(framed(0, &spans(1)))),
            Frame::trailers(trailers),
        ];
        let read = read_whole_message(request_of_frames(frames, false), MAX_MESSAGE).await;
        let Read::Whole(headers, _) = read else {
            panic!("a message and trailers is the direct path");
        };
        assert_eq!(headers["x-sent-after"], "the message");
        assert_eq!(headers["content-type"], "application/grpc");
    }

    fn gzip(message: &[u8]) -> Vec<u8> {
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gzip.write_all(message).unwrap();
        gzip.finish().unwrap()
    }

    #[tokio::test]
    async fn other_requests_are_given_to_tonic_with_the_frames_read() {
        let message = spans(4);
        let frame = framed(0, &message);
        let (head, tail) = frame.split_at(frame.len() / 2);
        let split = || request(vec![head.to_vec(), tail.to_vec()], false);
        let gzipped = || request(vec![framed(1, &gzip(&message))], true);
        let cases: [(&str, &dyn Fn() -> http::Request<TestBody>); 2] =
            [("split", &split), ("gzip", &gzipped)];
        for (name, case) in cases {
            let read = read_whole_message(case(), MAX_MESSAGE).await;
            assert!(
                matches!(read, Read::Other(_)),
                "{name}: not the direct path"
            );
            let (status, pending) = export(name, case()).await;
            assert_eq!(
                (status.code(), pending),
                (tonic::Code::Ok, 4),
                "{name}: {status:?}"
            );
        }
    }

    #[tokio::test]
    async fn refusals_are_the_same_on_either_path() {
        // Over the limit: tonic's answer.
        let big = framed(0, &vec![0u8; MAX_MESSAGE + 1]);
        let (status, pending) = export("big", request(vec![big], false)).await;
        assert_eq!(
            (status.code(), pending),
            (tonic::Code::OutOfRange, 0),
            "{status:?}"
        );
        // Not protobuf, on the direct path and through tonic.
        let garbage = framed(0, &[0xff; 7]);
        let (head, tail) = garbage.split_at(3);
        for (name, frames) in [
            ("garbage", vec![garbage.clone()]),
            ("garbage-split", vec![head.to_vec(), tail.to_vec()]),
        ] {
            let (status, pending) = export(name, request(frames, false)).await;
            assert_eq!(
                (status.code(), pending),
                (tonic::Code::InvalidArgument, 0),
                "{name}: {status:?}"
            );
        }
        // A frame that claims more bytes than the stream brings.
        let short = framed(0, &spans(2));
        let (status, pending) = export(
            "short",
            request(vec![short[..short.len() - 1].to_vec()], false),
        )
        .await;
        assert_ne!(status.code(), tonic::Code::Ok, "{status:?}");
        assert_eq!(pending, 0);
    }
}
