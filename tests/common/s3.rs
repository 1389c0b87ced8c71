//! A real S3-compatible server for the object-storage tests: moto, from PyPI.

use std::path::Path;
use std::process::{Command, Stdio};

use super::{Service, free_addr, loadlens, stderr, wait_for_port};

pub const BUCKET: &str = "loadlens-runs";

/// A moto S3 server on a free port, with one empty bucket.
pub struct S3 {
    pub endpoint: String,
    _server: Service,
}

impl S3 {
    pub fn start() -> S3 {
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
        // moto accepts unsigned requests; this is S3's CreateBucket.
        let created = Command::new("curl")
            .args(["-sf", "-X", "PUT", &format!("{endpoint}/{BUCKET}")])
            .output()
            .expect("curl runs");
        assert!(created.status.success(), "{}", stderr(&created));
        S3 {
            endpoint,
            _server: server,
        }
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
        let mut stack = vec![dir.to_path_buf()];
        while let Some(folder) = stack.pop() {
            for entry in std::fs::read_dir(&folder).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
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
}
