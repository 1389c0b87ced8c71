//! Bearer-token authentication and TLS on both receivers, with certificates
//! made by the `openssl` command (a CA and a leaf for localhost) and real
//! clients: tonic over TLS for gRPC, `curl` for HTTPS.

use std::path::{Path, PathBuf};
use std::process::Command;

use collector::config::TlsFiles;
use collector::{Collector, CollectorConfig};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

const TOKEN: &str = "k7-very-secret";
const T0: u64 = 1_795_435_200_000_000_000; // 2026-11-23T12:00:00Z

fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("the openssl command is installed");
    assert!(status.success(), "openssl {args:?} failed");
}

/// A CA, and a leaf certificate for localhost and 127.0.0.1 signed by it.
fn certificates(dir: &Path) -> (TlsFiles, PathBuf) {
    std::fs::write(
        dir.join("leaf.ext"),
        "basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    let mut ca = vec!["req", "-x509", "-nodes", "-days", "2"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-subj",
        "/CN=loadlens test CA",
    ]);
    openssl(dir, &ca);
    let mut csr = vec!["req", "-nodes"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
        "-subj",
        "/CN=localhost",
    ]);
    openssl(dir, &csr);
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "leaf.ext",
            "-out",
            "leaf.pem",
        ],
    );
    (
        TlsFiles {
            cert: dir.join("leaf.pem"),
            key: dir.join("leaf.key"),
        },
        dir.join("ca.pem"),
    )
}

fn request(first_span: u8) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: vec![7; 16],
                    span_id: vec![first_span; 8],
                    name: "GET /secure".into(),
                    kind: 2,
                    start_time_unix_nano: T0,
                    end_time_unix_nano: T0 + 1_000_000,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// `curl` over HTTPS; returns the status code and the response headers and body.
fn curl(ca: &Path, url: &str, token: Option<&str>, body: Option<&Path>) -> (u16, String) {
    let mut command = Command::new("curl");
    command.args(["-sS", "-i", "--cacert"]).arg(ca);
    if let Some(token) = token {
        command.args(["-H", &format!("Authorization: Bearer {token}")]);
    }
    if let Some(body) = body {
        command
            .args([
                "-H",
                "Content-Type: application/x-protobuf",
                "--data-binary",
            ])
            .arg(format!("@{}", body.display()));
    }
    let out = command
        .arg(url)
        .output()
        .expect("the curl command is installed");
    assert!(
        out.status.success(),
        "curl {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text}"));
    (status, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_bearer_tokens_guard_both_receivers() {
    let dir = std::env::temp_dir().join(format!("loadlens-security-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (files, ca) = certificates(&dir);
    let mut config = CollectorConfig::ephemeral(dir.join("store"));
    config.tls = Some(files);
    config.bearer_token = Some(TOKEN.into());
    let collector = Collector::start(config).await.unwrap();
    let grpc_port = collector.grpc_addr().port();
    let http_port = collector.http_addr().port();

    // gRPC over TLS, trusting only the test CA.
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(&ca).unwrap()))
        .domain_name("localhost");
    let channel = Channel::from_shared(format!("https://localhost:{grpc_port}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .expect("TLS handshake with the collector");
    let mut client = TraceServiceClient::new(channel.clone());
    let refused = client.export(request(1)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused}");
    assert!(refused.message().contains("bearer token"), "{refused}");
    let mut wrong = tonic::Request::new(request(2));
    wrong
        .metadata_mut()
        .insert("authorization", "Bearer k7-very-secreT".parse().unwrap());
    let refused = client.export(wrong).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    let mut right = tonic::Request::new(request(3));
    right
        .metadata_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    let answer = client.export(right).await.expect("an authorized export");
    assert!(answer.into_inner().partial_success.is_none());
    // The metrics service asks for the token as well.
    let refused = MetricsServiceClient::new(channel)
        .export(ExportMetricsServiceRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused}");

    // Plain-text gRPC to the TLS port does not get through.
    let plain = TraceServiceClient::connect(format!("http://127.0.0.1:{grpc_port}")).await;
    if let Ok(mut plain) = plain {
        let mut attempt = tonic::Request::new(request(4));
        attempt
            .metadata_mut()
            .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
        assert!(plain.export(attempt).await.is_err());
    }

    // HTTPS with curl: the OTLP route needs the token, the probes do not.
    let body = dir.join("body.pb");
    std::fs::write(&body, request(5).encode_to_vec()).unwrap();
    let url = format!("https://localhost:{http_port}");
    let ca2 = ca.clone();
    let body2 = body.clone();
    let url2 = url.clone();
    let (unauthorized, unauthorized_metrics, authorized, health, metrics) =
        tokio::task::spawn_blocking(move || {
            (
                curl(&ca2, &format!("{url2}/v1/traces"), None, Some(&body2)),
                curl(&ca2, &format!("{url2}/v1/metrics"), None, Some(&body2)),
                curl(
                    &ca2,
                    &format!("{url2}/v1/traces"),
                    Some(TOKEN),
                    Some(&body2),
                ),
                curl(&ca2, &format!("{url2}/healthz"), None, None),
                curl(&ca2, &format!("{url2}/metrics"), None, None),
            )
        })
        .await
        .unwrap();
    assert_eq!(unauthorized.0, 401, "{}", unauthorized.1);
    assert!(
        unauthorized
            .1
            .to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{}",
        unauthorized.1
    );
    assert_eq!(unauthorized_metrics.0, 401, "{}", unauthorized_metrics.1);
    assert_eq!(authorized.0, 200, "{}", authorized.1);
    assert_eq!(health.0, 200);
    assert_eq!(metrics.0, 200);
    // Refusals by signal: two gRPC and one HTTP for traces, one of each
    // for metrics.
    for (signal, refused) in [("traces", 3), ("metrics", 2)] {
        let line = metrics
            .1
            .lines()
            .find(|l| {
                l.contains("reason=\"unauthenticated\"")
                    && l.contains(&format!("signal=\"{signal}\""))
            })
            .unwrap_or_else(|| panic!("no unauthenticated {signal} counter in\n{}", metrics.1));
        assert!(line.ends_with(&format!(" {refused}")), "{line}");
    }

    // Only the two authorized spans were stored.
    let report = collector.shutdown().await.unwrap();
    assert_eq!(report.rows, 2);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn unusable_tls_files_are_a_clear_usage_error() {
    let dir = std::env::temp_dir().join(format!("loadlens-badtls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cert.pem"), "not a certificate\n").unwrap();
    let mut config = CollectorConfig::ephemeral(dir.join("store"));
    config.tls = Some(TlsFiles {
        cert: dir.join("cert.pem"),
        key: dir.join("missing.key"),
    });
    let err = Collector::start(config).await.unwrap_err();
    assert!(err.is_usage());
    let text = err.to_string();
    assert!(text.starts_with("TLS key "), "{text}");
    assert!(text.contains("missing.key"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
