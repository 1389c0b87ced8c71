//! A distributed run on one machine: four generator shards, two collectors
//! (separate processes with their own write-ahead logs) sharing one bucket of
//! a real S3-compatible server (moto, from PyPI), and the analyzer reading the
//! run back from that bucket.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::s3::{BUCKET, S3};
use common::target::{Behaviour, Target};
use common::{Service, TempDir, free_addr, loadlens, stderr, wait_for_port};
use models::quantile::of_sorted;

fn start_collector(s3: &S3, data: &Path, store: &str) -> (Service, SocketAddr) {
    let (grpc, http) = (free_addr(), free_addr());
    let mut collector = Service::spawn(
        s3.loadlens()
            .arg("collector")
            .arg("--data")
            .arg(data)
            .args(["--grpc-addr", &grpc.to_string()])
            .args(["--http-addr", &http.to_string()])
            .args(["--flush-interval", "1s", "--object-store", store]),
    );
    wait_for_port(grpc, collector.child());
    wait_for_port(http, collector.child());
    (collector, grpc)
}

/// Data files (not the write-ahead log) still in a collector's local folder.
fn local_parquet(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

#[test]
fn four_shards_through_two_collectors_into_one_bucket_count_and_rank_exactly() {
    let s3 = S3::start();
    let store = format!("s3://{BUCKET}/store");
    let target = Target::start(Behaviour::default());
    let dirs = TempDir::new("distributed");
    let collector_dirs = [
        dirs.path().join("collector-a"),
        dirs.path().join("collector-b"),
    ];
    let collectors: Vec<(Service, SocketAddr)> = collector_dirs
        .iter()
        .map(|dir| start_collector(&s3, dir, &store))
        .collect();

    // Four shards, started together, two per collector.
    let start_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        + 2.0;
    let shards: Vec<_> = (0..4)
        .map(|i| {
            let summary = dirs.path().join(format!("summary-{i}.json"));
            let child = s3
                .loadlens()
                .args(["run", "--url", &target.url("/ok"), "--rate", "400"])
                .args(["--duration", "3s", "--run-id", "distributed", "--quiet"])
                .args(["--shard", &format!("{i}/4")])
                .args(["--start-at", &format!("{start_at:.3}")])
                .args(["--collector", &format!("http://{}", collectors[i % 2].1)])
                .args(["--data", &store])
                .arg("--summary-json")
                .arg(&summary)
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            (child, summary)
        })
        .collect();
    let mut sent = 0;
    for (mut child, summary) in shards {
        assert!(child.wait().unwrap().success());
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
        assert_eq!(summary["spans_dropped"], 0, "{summary}");
        assert_eq!(
            summary["spans_exported"], summary["requests_sent"],
            "{summary}"
        );
        sent += summary["requests_sent"].as_u64().unwrap();
    }
    assert_eq!(sent, 1200, "4 shards of 400 req/s for 3 s");

    // A clean stop flushes and ships; nothing stays behind in the local folders.
    for ((collector, _), dir) in collectors.into_iter().zip(&collector_dirs) {
        assert!(collector.terminate(), "a collector did not stop cleanly");
        assert_eq!(local_parquet(dir), Vec::<String>::new());
    }

    // Every request is in the bucket exactly once, from all four shards.
    let counts = s3.sql(
        &store,
        "SELECT COUNT(*) AS n, COUNT(DISTINCT request_id) AS ids, COUNT(DISTINCT shard) AS shards
         FROM requests WHERE run_id = 'distributed'",
    );
    assert_eq!(counts[0]["n"], sent, "{counts:?}");
    assert_eq!(counts[0]["ids"], sent, "{counts:?}");
    assert_eq!(counts[0]["shards"], 4, "{counts:?}");

    // Percentiles from SQL over the spans in the bucket equal the ones computed
    // here from the ledger rows the four generators uploaded themselves.
    let rows = s3.sql(
        &store,
        "SELECT CAST(end_time AS BIGINT) - CAST(intended_start AS BIGINT) AS ns
         FROM ledger WHERE run_id = 'distributed'",
    );
    let mut latencies: Vec<f64> = rows
        .iter()
        .map(|r| r["ns"].as_i64().unwrap() as f64 / 1e6)
        .collect();
    assert_eq!(latencies.len() as u64, sent);
    latencies.sort_by(f64::total_cmp);
    let merged = s3.sql(
        &store,
        "SELECT percentile(latency_ms, 0.5) AS p50, percentile(latency_ms, 0.99) AS p99
         FROM requests WHERE run_id = 'distributed'",
    );
    for (column, q) in [("p50", 0.5), ("p99", 0.99)] {
        let expected = of_sorted(&latencies, q).unwrap();
        let got = merged[0][column].as_f64().unwrap();
        assert!(
            (got - expected).abs() <= 1e-9 * expected.max(1.0),
            "{column}: SQL over the spans {got} ms, from the ledger rows {expected} ms"
        );
    }
}

#[test]
fn a_collector_keeps_files_it_cannot_upload_and_ships_them_later() {
    let s3 = S3::start();
    let dir = TempDir::new("unshipped");
    // A bucket that does not exist: every upload fails.
    let (collector, grpc) = start_collector(&s3, dir.path(), "s3://no-such-bucket/store");
    let target = Target::start(Behaviour::default());
    let run = loadlens()
        .args(["run", "--url", &target.url("/ok"), "--rate", "50"])
        .args([
            "--duration",
            "1s",
            "--run-id",
            "unshipped",
            "--quiet",
            "--no-ledger",
        ])
        .args(["--collector", &format!("http://{grpc}")])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(collector.terminate(), "the collector did not stop cleanly");
    let kept = local_parquet(dir.path());
    assert!(!kept.is_empty(), "the spans were lost");

    // With a bucket that exists, the next start ships what was left.
    let store = format!("s3://{BUCKET}/later");
    let (collector, _) = start_collector(&s3, dir.path(), &store);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !local_parquet(dir.path()).is_empty() {
        assert!(
            Instant::now() < deadline,
            "files were not shipped after a restart"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(collector.terminate());
    let counts = s3.sql(
        &store,
        "SELECT COUNT(*) AS n FROM requests WHERE run_id = 'unshipped'",
    );
    assert_eq!(counts[0]["n"], 50, "{counts:?}");
}
