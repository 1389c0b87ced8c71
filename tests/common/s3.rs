//! A real S3-compatible server for the object-storage tests: moto, from PyPI.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Service, files_below, free_addr, loadlens, stderr, wait_for_port};

pub const BUCKET: &str = "loadlens-runs";

/// A moto S3 server on a free port, with one empty bucket.
pub struct S3 {
    pub endpoint: String,
    _server: Service,
}

impl S3 {
    pub fn start() -> S3 {
        // A free port can be taken by another test's process before moto
        // binds it; moto then exits, and a fresh port is tried.
        let mut failures = Vec::new();
        for _ in 0..3 {
            let addr = free_addr();
            // moto logs every request on standard error; keep the test's output readable.
            let mut server = Service(Some(
                Command::new("moto_server")
                    .args(["-H", "127.0.0.1", "-p", &addr.port().to_string()])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("moto_server (pip install 'moto[server]') runs"),
            ));
            wait_for_port(addr, server.child());
            let endpoint = format!("http://{addr}");
            match create_bucket(&endpoint, server.child()) {
                Ok(()) => {
                    return S3 {
                        endpoint,
                        _server: server,
                    };
                }
                Err(why) => failures.push(why),
            }
        }
        panic!("no moto server took a bucket: {}", failures.join("; "));
    }

    /// `loadlens` with the AWS variables that point it at this server.
    pub fn loadlens(&self) -> Command {
        let mut command = loadlens();
        command.envs([
            ("AWS_ACCESS_KEY_ID", "loadlens"),
            ("AWS_SECRET_ACCESS_KEY", "loadlens-secret"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
        ]);
        command
    }

    pub fn sql(&self, store: &str, query: &str) -> Vec<serde_json::Value> {
        let output = self
            .loadlens()
            .args(["sql", "--format", "json", "--data", store, query])
            .output()
            .unwrap();
        assert!(output.status.success(), "{query}: {}", stderr(&output));
        serde_json::from_slice(&output.stdout).unwrap()
    }

    /// Copies every file below `dir` to `s3://BUCKET/{prefix}/…`, keeping
    /// the relative paths.
    pub fn upload(&self, dir: &Path, prefix: &str) {
        for path in files_below(dir) {
            let key = path.strip_prefix(dir).unwrap().display().to_string();
            // moto accepts unsigned requests; this is S3's PutObject.
            // -T sends the file as the body; no `Expect: 100-continue`,
            // which moto's server does not answer.
            let put = Command::new("curl")
                .args(["-sf", "--max-time", "30", "-H", "Expect:", "-T"])
                .arg(&path)
                .arg(format!("{}/{BUCKET}/{prefix}/{key}", self.endpoint))
                .output()
                .expect("curl runs");
            assert!(put.status.success(), "PUT {key}: {}", stderr(&put));
        }
    }
}

/// S3's CreateBucket, unsigned, which moto accepts. A server that listens
/// may not answer yet while it is busy starting (CI builds alongside), so
/// this tries for a while; it gives up at once if moto has exited.
fn create_bucket(endpoint: &str, server: &mut Child) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let created = Command::new("curl")
            .args(["-sS", "--max-time", "10", "-o", "/dev/null"])
            .args(["-w", "%{http_code}", "-X", "PUT"])
            .arg(format!("{endpoint}/{BUCKET}"))
            .output()
            .expect("curl runs");
        let status = String::from_utf8_lossy(&created.stdout).into_owned();
        // 409 is BucketAlreadyOwnedByYou: an earlier try that timed out did it.
        if created.status.success() && (status == "200" || status == "409") {
            return Ok(());
        }
        if let Some(exit) = server.try_wait().unwrap() {
            return Err(format!("moto_server on {endpoint} exited with {exit}"));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "CreateBucket {endpoint}/{BUCKET} still fails after 30 s: curl {}, HTTP {status}, {}",
                created.status,
                stderr(&created).trim()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
