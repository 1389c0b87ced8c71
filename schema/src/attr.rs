//! OTLP attribute keys: the semantic-convention keys loadlens promotes to
//! columns, and the `loadlens.*` keys the generator sets on every request span.

/// `service.name` (resource).
pub const SERVICE_NAME: &str = "service.name";
/// `service.version` (resource).
pub const SERVICE_VERSION: &str = "service.version";
/// `deployment.environment.name` (resource): `production` for production services.
pub const DEPLOYMENT_ENVIRONMENT: &str = "deployment.environment.name";

pub const HTTP_REQUEST_METHOD: &str = "http.request.method";
pub const HTTP_RESPONSE_STATUS_CODE: &str = "http.response.status_code";
pub const HTTP_ROUTE: &str = "http.route";
pub const HTTP_REQUEST_BODY_SIZE: &str = "http.request.body.size";
pub const HTTP_RESPONSE_BODY_SIZE: &str = "http.response.body.size";
pub const URL_FULL: &str = "url.full";
pub const URL_PATH: &str = "url.path";
pub const SERVER_ADDRESS: &str = "server.address";
pub const SERVER_PORT: &str = "server.port";
pub const ERROR_TYPE: &str = "error.type";
pub const DB_SYSTEM: &str = "db.system.name";
pub const RPC_SYSTEM: &str = "rpc.system";
pub const RPC_SERVICE: &str = "rpc.service";
pub const RPC_METHOD: &str = "rpc.method";
/// `network.protocol.version`: `1.1` or `2` for HTTP.
pub const NETWORK_PROTOCOL_VERSION: &str = "network.protocol.version";

/// The load run a span, metric point or manifest belongs to.
pub const RUN_ID: &str = "loadlens.run.id";
/// The scenario's name.
pub const SCENARIO: &str = "loadlens.scenario";
/// The request's name in the scenario (for a ladder: `c=<concurrency>`).
pub const STEP: &str = "loadlens.step";
/// The load stage (`warmup`, `main`, a ladder rung ...).
pub const STAGE: &str = "loadlens.stage";
/// Index of the generator shard that sent the request.
pub const SHARD: &str = "loadlens.shard";
/// The virtual user: of a closed model, or (open models) the arrival's
/// number in the run, unique across shards.
pub const VU: &str = "loadlens.vu";
/// Unique id of the request within its run; ids never collide across shards.
pub const REQUEST_ID: &str = "loadlens.request.id";
/// When the request was scheduled to start (ns since epoch); latency is measured from here.
pub const INTENDED_START: &str = "loadlens.intended_start";
/// When the first byte of the request was written (ns since epoch).
pub const SENT_AT: &str = "loadlens.sent_at";
/// When the first byte of the response arrived (ns since epoch).
pub const FIRST_BYTE_AT: &str = "loadlens.first_byte_at";
/// Target concurrency of the stage (closed model and ladder) or target rate (open model).
pub const CONCURRENCY: &str = "loadlens.concurrency";
/// True on a request that got a 401, fetched a new token and went again.
pub const AUTH_RETRIED: &str = "loadlens.auth_retried";
/// The flow (sequence of requests) the request belongs to, when it is part of one.
pub const FLOW: &str = "loadlens.flow";
/// Name of the span the generator emits once per run, carrying the run manifest.
pub const RUN_SPAN_NAME: &str = "loadlens.run";
/// Instrumentation scope name of spans emitted by the generator.
pub const GENERATOR_SCOPE: &str = "loadlens.generator";

/// Manifest attributes on the run span (see [`crate::runs`]).
pub mod run {
    pub const MODEL: &str = "loadlens.run.model";
    pub const CONFIG: &str = "loadlens.run.config";
    pub const STAGES: &str = "loadlens.run.stages";
    pub const SHARD_COUNT: &str = "loadlens.run.shard_count";
    pub const REQUESTS_SENT: &str = "loadlens.run.requests_sent";
    pub const REQUESTS_OK: &str = "loadlens.run.requests_ok";
    pub const REQUESTS_FAILED: &str = "loadlens.run.requests_failed";
    pub const REQUESTS_DROPPED: &str = "loadlens.run.requests_dropped";
    pub const SPANS_EXPORTED: &str = "loadlens.run.spans_exported";
    pub const SPANS_DROPPED: &str = "loadlens.run.spans_dropped";
    pub const GENERATOR_VERSION: &str = "loadlens.run.generator_version";
}
