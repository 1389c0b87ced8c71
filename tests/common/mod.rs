//! Helpers for tests that drive the real `loadlens` binary.

#![allow(dead_code)]

pub mod s3;
pub mod target;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub fn loadlens() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_loadlens"));
    command.stdin(Stdio::null());
    // The engine's settings are the defaults, whatever the caller's shell sets.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("DATAFUSION_") {
            command.env_remove(name);
        }
    }
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

/// A loopback listener that never accepts: its queue of one is full, so the
/// kernel drops further connection attempts and a connect waits until it
/// times out. It lasts as long as this value.
pub struct Unanswered {
    pub addr: SocketAddr,
    _queued: Vec<TcpStream>,
    _listener: tokio::net::TcpListener,
    _runtime: tokio::runtime::Runtime,
}

impl Unanswered {
    pub fn start() -> Unanswered {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap();
        let listener = runtime.block_on(async {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
            socket.listen(1).unwrap()
        });
        let addr = listener.local_addr().unwrap();
        // Connect until one attempt is left waiting: the queue is full.
        let mut queued = Vec::new();
        loop {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
                Ok(stream) => queued.push(stream),
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => break,
                Err(e) => panic!("connecting to fill {addr}'s queue: {e}"),
            }
            assert!(queued.len() < 64, "{addr}'s queue never filled");
        }
        Unanswered {
            addr,
            _queued: queued,
            _listener: listener,
            _runtime: runtime,
        }
    }
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

/// Every file below `dir`, at any depth.
pub fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A plain HTTP/1.1 GET; returns the body.
pub fn http_get(addr: SocketAddr, path: &str) -> String {
    let (status, body) = http(addr, "GET", path, &[], "");
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

/// The value of `series` in the collector's `/metrics`: a metric's name
/// (its first line), or its name and labels as the collector writes them
/// (`name{a="b"}`).
pub fn metric(http: SocketAddr, series: &str) -> f64 {
    let text = http_get(http, "/metrics");
    metric_in(&text, series).unwrap_or_else(|| panic!("no {series} in /metrics:\n{text}"))
}

/// [`metric`] in a `/metrics` text already read.
pub fn metric_in(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let (key, value) = line.rsplit_once(' ')?;
        let named = key == series || key.split('{').next() == Some(series);
        named.then(|| value.parse().ok()).flatten()
    })
}

/// One HTTP/1.1 request (10 s timeouts); returns the status and the body.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{method} {path}: no status in {head}"));
    (status, body.to_string())
}

/// Runs `command` with `input` on stdin; kills it after `limit`.
pub fn output_within(command: &mut Command, input: &[u8], limit: Duration) -> Output {
    use std::io::{Read, Write};
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let read = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = pipe.read_to_end(&mut out);
            out
        })
    };
    let stdout = read(Box::new(child.stdout.take().unwrap()));
    let stderr = read(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    writer.join().unwrap();
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
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

/// Starts `loadlens demo` with its API on `api`, exporting its spans to the
/// collector's OTLP/gRPC port `grpc`, and waits until it listens.
pub fn start_demo(api: SocketAddr, grpc: SocketAddr) -> Service {
    let mut demo = Service::spawn(loadlens().args([
        "demo",
        "--api-addr",
        &api.to_string(),
        "--collector",
        &format!("http://{grpc}"),
    ]));
    wait_for_port(api, demo.child());
    demo
}

/// Writes a self-signed certificate for 127.0.0.1 and localhost to
/// `dir/cert.pem` and its key to `dir/key.pem` with the openssl command, and
/// returns their paths. The certificate is not a CA: rustls, unlike OpenSSL,
/// refuses a CA certificate as a server's own.
pub fn self_signed_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let status = Command::new("openssl")
        .args(["req", "-x509", "-nodes", "-days", "2", "-newkey", "ec"])
        .args([
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-subj",
            "/CN=localhost",
        ])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-keyout", "key.pem", "-out", "cert.pem"])
        .current_dir(dir)
        .stderr(Stdio::null())
        .status()
        .expect("the openssl command is installed");
    assert!(status.success());
    (dir.join("cert.pem"), dir.join("key.pem"))
}
