//! One real distributed query path: a Ballista scheduler and two executors
//! (`loadlens ballista …`, separate processes on loopback) run `queries/`
//! files over the fixture store, in a shared folder and in an S3-compatible
//! bucket (moto), and the answers equal the embedded engine's.

mod common;

use std::ffi::OsStr;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::s3::S3;
use common::{Service, TempDir, loadlens, output_within, stderr, wait_for_port};
use serde_json::Value;

/// A port whose next port is free too: an executor listens on both.
fn free_port_pair() -> SocketAddr {
    loop {
        let first = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = first.local_addr().unwrap();
        if addr.port() < u16::MAX && TcpListener::bind(("127.0.0.1", addr.port() + 1)).is_ok() {
            return addr;
        }
    }
}

/// A scheduler and `executors` executors, each with its own shuffle folder.
struct Cluster {
    url: String,
    work_dirs: Vec<std::path::PathBuf>,
    _nodes: Vec<Service>,
}

impl Cluster {
    /// Nodes run `command()` (`loadlens`, perhaps with S3 settings), with
    /// `--data store` when the store is in object storage.
    fn start(
        dir: &Path,
        executors: usize,
        command: &dyn Fn() -> Command,
        store: Option<&str>,
    ) -> Cluster {
        let data: Vec<&str> = store.map(|url| vec!["--data", url]).unwrap_or_default();
        let scheduler = common::free_addr();
        let mut nodes = vec![Service::spawn(
            command()
                .args(["ballista", "scheduler", "--addr", &scheduler.to_string()])
                .args(&data),
        )];
        wait_for_port(scheduler, nodes[0].child());
        let mut work_dirs = Vec::new();
        for i in 0..executors {
            let addr = free_port_pair();
            let work_dir = dir.join(format!("executor-{i}"));
            std::fs::create_dir_all(&work_dir).unwrap();
            let mut node = Service::spawn(
                command()
                    .args(["ballista", "executor", "--tasks", "2"])
                    .args(&data)
                    .args(["--scheduler", &scheduler.to_string()])
                    .args(["--addr", &addr.to_string()])
                    .arg("--work-dir")
                    .arg(&work_dir),
            );
            wait_for_port(addr, node.child());
            let grpc = SocketAddr::new(addr.ip(), addr.port() + 1);
            wait_for_port(grpc, node.child());
            nodes.push(node);
            work_dirs.push(work_dir);
        }
        Cluster {
            url: format!("df://{scheduler}"),
            work_dirs,
            _nodes: nodes,
        }
    }

    /// Files the executors wrote for the jobs they ran (shuffle output).
    fn files_written(&self) -> Vec<usize> {
        self.work_dirs.iter().map(|dir| count_files(dir)).collect()
    }
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| {
            let path = entry.path();
            if path.is_dir() { count_files(&path) } else { 1 }
        })
        .sum()
}

/// `loadlens sql --format json -f queries/FILE`, on the cluster when `ballista` is set.
fn query(
    mut command: Command,
    data: impl AsRef<OsStr>,
    file: &str,
    ballista: Option<&str>,
) -> Vec<Value> {
    command
        .args(["sql", "--format", "json", "--data"])
        .arg(data)
        .arg("-f")
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("queries")
                .join(file),
        )
        .args(["--param", &format!("run={}", fixtures::RUN_ID)]);
    if let Some(url) = ballista {
        command.args(["--ballista", url]);
    }
    let output = output_within(&mut command, b"", Duration::from_secs(120));
    assert!(
        output.status.success(),
        "{file} ({ballista:?}): {}",
        stderr(&output)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Equal rows in the same order; floats may differ in the last bits, because
/// partial sums are added in another order.
fn assert_same(file: &str, embedded: &[Value], distributed: &[Value]) {
    assert_eq!(
        embedded.len(),
        distributed.len(),
        "{file}: row counts differ"
    );
    for (i, (a, b)) in embedded.iter().zip(distributed).enumerate() {
        let (a, b) = (a.as_object().unwrap(), b.as_object().unwrap());
        assert_eq!(
            a.keys().collect::<Vec<_>>(),
            b.keys().collect::<Vec<_>>(),
            "{file} row {i}: columns differ"
        );
        for (column, x) in a {
            let y = &b[column];
            match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) if !(x.fract() == 0.0 && y.fract() == 0.0) => assert!(
                    (x - y).abs() <= 1e-9 * x.abs().max(1.0),
                    "{file} row {i} {column}: embedded {x}, Ballista {y}"
                ),
                _ => assert_eq!(x, y, "{file} row {i} {column}"),
            }
        }
    }
}

/// percentile (a loadlens aggregate), time_bucket (a loadlens scalar
/// function) and DataFusion's own functions, over the views.
const QUERIES: [&str; 4] = [
    "latency_by_endpoint.sql",
    "throughput_over_time.sql",
    "errors_by_type.sql",
    "stage_comparison.sql",
];

#[test]
fn queries_on_a_ballista_cluster_answer_as_the_embedded_engine() {
    let dir = TempDir::new("ballista");
    let store = dir.path().join("store");
    fixtures::write(&store, &fixtures::Spec::small()).unwrap();
    let cluster = Cluster::start(dir.path(), 2, &loadlens, None);

    for file in QUERIES {
        let before: usize = cluster.files_written().iter().sum();
        let embedded = query(loadlens(), &store, file, None);
        let distributed = query(loadlens(), &store, file, Some(&cluster.url));
        assert!(!embedded.is_empty(), "{file}: no rows on the fixture");
        assert_same(file, &embedded, &distributed);
        // The executors did the work: each job leaves its stages' output.
        let after: usize = cluster.files_written().iter().sum();
        assert!(after > before, "{file}: no executor wrote anything");
    }
    eprintln!("files written per executor: {:?}", cluster.files_written());
}

#[test]
fn a_cluster_reads_a_store_in_object_storage() {
    let dir = TempDir::new("ballista-s3");
    let local = dir.path().join("store");
    fixtures::write(&local, &fixtures::Spec::small()).unwrap();
    let s3 = S3::start();
    s3.upload(&local, "fixture");
    let store = format!("s3://{}/fixture", common::s3::BUCKET);
    let cluster = Cluster::start(dir.path(), 2, &|| s3.loadlens(), Some(&store));

    for file in QUERIES {
        let embedded = query(loadlens(), &local, file, None);
        let distributed = query(s3.loadlens(), &store, file, Some(&cluster.url));
        assert!(!embedded.is_empty(), "{file}: no rows on the fixture");
        assert_same(file, &embedded, &distributed);
    }
}

#[test]
fn a_scheduler_that_is_not_there_is_a_clear_error_not_a_hang() {
    let dir = TempDir::new("ballista-none");
    let nobody = common::free_addr();
    let output = output_within(
        loadlens().args(["sql", "--data"]).arg(dir.path()).args([
            "--ballista",
            &format!("df://{nobody}"),
            "SELECT COUNT(*) FROM spans",
        ]),
        b"",
        Duration::from_secs(60),
    );
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(
        stderr(&output).contains(&nobody.to_string()),
        "{}",
        stderr(&output)
    );

    let output = loadlens()
        .args(["sql", "--data"])
        .arg(dir.path())
        .args(["--ballista", "http://127.0.0.1:50050", "SELECT 1"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("df://HOST:50050"),
        "{}",
        stderr(&output)
    );
}
