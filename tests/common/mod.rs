//! Helpers for tests that drive the real `loadlens` binary.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub fn loadlens() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_loadlens"));
    command.stdin(Stdio::null());
    command
}

/// A fresh, empty directory that is removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "loadlens-test-{name}-{}-{:x}",
            std::process::id(),
            rand_u64()
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(Instant::now().elapsed().as_nanos());
    hasher.finish()
}

/// A loopback port that was free a moment ago.
pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Waits until something accepts connections on `addr`.
pub fn wait_for_port(addr: SocketAddr, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("process exited with {status} before listening on {addr}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on {addr} after 30 s");
}

/// A child process that is killed if the test fails before stopping it.
pub struct Service(pub Option<Child>);

impl Service {
    pub fn spawn(command: &mut Command) -> Self {
        Service(Some(
            command
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap(),
        ))
    }

    pub fn child(&mut self) -> &mut Child {
        self.0.as_mut().unwrap()
    }

    /// SIGKILL: the process gets no chance to clean up.
    pub fn kill9(mut self) {
        let mut child = self.0.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGTERM, then wait (at most 30 s) and return whether it exited successfully.
    pub fn terminate(mut self) -> bool {
        let mut child = self.0.take().unwrap();
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `loadlens sql --format json` and parses the rows.
pub fn sql_json(data: &Path, query: &str) -> Vec<serde_json::Map<String, serde_json::Value>> {
    let output = loadlens()
        .args(["sql", "--format", "json", "--data"])
        .arg(data)
        .arg(query)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "sql failed: {query}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    rows.into_iter()
        .map(|row| match row {
            serde_json::Value::Object(map) => map,
            other => panic!("row is not an object: {other}"),
        })
        .collect()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A plain HTTP/1.1 GET; returns the body.
pub fn http_get(addr: SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "GET {path}: {head}");
    body.to_string()
}

/// Starts `loadlens collector` on the given ports and waits until it listens.
pub fn start_collector(data: &Path, grpc: SocketAddr, http: SocketAddr, extra: &[&str]) -> Service {
    let mut collector = Service::spawn(
        loadlens()
            .arg("collector")
            .args(extra)
            .arg("--data")
            .arg(data)
            .args([
                "--grpc-addr",
                &grpc.to_string(),
                "--http-addr",
                &http.to_string(),
            ]),
    );
    wait_for_port(grpc, collector.child());
    wait_for_port(http, collector.child());
    collector
}
