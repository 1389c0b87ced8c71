//! Interoperability with real clients: the official OpenTelemetry Python SDK
//! sends over OTLP/gRPC and OTLP/HTTP to the collector binary; DuckDB and
//! pyarrow read the Parquet back. Needs `pip install -r tests/interop/requirements.txt`
//! (`.ci/run` installs it).

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

fn python() -> Command {
    let mut command = Command::new("python3");
    command.current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop"));
    command
}

fn require_python_packages() {
    let probe = python()
        .args(["-c", "import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.grpc, opentelemetry.exporter.otlp.proto.http, duckdb, pyarrow"])
        .output()
        .expect("python3 runs");
    assert!(
        probe.status.success(),
        "the interoperability test needs Python packages: pip install -r tests/interop/requirements.txt\n{}",
        String::from_utf8_lossy(&probe.stderr)
    );
}

#[test]
fn opentelemetry_sdk_exports_are_read_back_intact_by_duckdb_and_pyarrow() {
    require_python_packages();
    let dir = TempDir::new("interop");
    let data = dir.path().join("store");
    let (grpc, http) = (free_addr(), free_addr());
    let collector = start_collector(&data, grpc, http, &[]);

    let mut expected = Vec::new();
    for (protocol, endpoint, service) in [
        ("grpc", format!("http://{grpc}"), "sdk-grpc"),
        ("http", format!("http://{http}"), "sdk-http"),
    ] {
        let out = python()
            .args(["otel_send.py", protocol, &endpoint, service])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{protocol} sender failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let path = dir.path().join(format!("{service}.json"));
        std::fs::write(&path, &out.stdout).unwrap();
        expected.push(path);
    }
    assert!(collector.terminate(), "collector did not stop cleanly");

    let out = python()
        .arg("read_back.py")
        .arg(&data)
        .args(&expected)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "read-back failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("sdk-grpc: 3 spans") && report.contains("sdk-http: 3 spans"),
        "{report}"
    );
}
