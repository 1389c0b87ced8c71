//! Collector settings, from defaults, a YAML file, environment variables and
//! flags (later ones win).
//!
//! Every key of the file is optional and unknown keys are refused, so a typo is
//! an error rather than a silently ignored setting:
//!
//! ```yaml
//! data: /var/lib/loadlens
//! grpc_addr: 0.0.0.0:4317
//! http_addr: 0.0.0.0:4318
//! flush_interval: 5s
//! flush_rows: 200000
//! max_memory: 2GiB            # resident memory; requests are refused near it (default: none)
//! max_pending_bytes: 512MiB   # default: this, or a quarter of max_memory if less
//! max_grpc_message: 4MiB
//! max_http_body: 20MiB
//! wal_sync: true
//! wal_commit_interval: 0s     # wait up to this long for more requests per fsync
//! compaction_interval: 1m
//! compaction_target_size: 128MiB
//! dedupe_window: 2m
//! dedupe_max_spans: 1000000   # default: this, or fewer under a small max_pending_bytes
//! object_store: s3://bucket/loadlens
//! bearer_token_file: /etc/loadlens/token
//! tls:
//!   cert: /etc/loadlens/tls.crt
//!   key: /etc/loadlens/tls.key
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use schema::units::{parse_bytes, parse_duration};
use serde::Deserialize;

/// The longest `wal_commit_interval` accepted: every acknowledgement may
/// wait that long, and exporters time out after 10 s.
pub const MAX_COMMIT_INTERVAL: Duration = Duration::from_secs(1);

/// Where to listen and where to write.
#[derive(Debug, Clone)]
pub struct CollectorConfig {
    /// Store root; tables are folders below it.
    pub data_dir: PathBuf,
    /// OTLP/gRPC listen address (port 0 picks a free port).
    pub grpc_addr: SocketAddr,
    /// OTLP/HTTP listen address (port 0 picks a free port).
    pub http_addr: SocketAddr,
    /// Longest that accepted rows wait before they are written.
    pub flush_interval: Duration,
    /// Pending rows that trigger an early flush.
    pub flush_rows: usize,
    /// Memory pending rows may hold; above it requests get a retryable refusal.
    pub max_pending_bytes: usize,
    /// The bound on the process's resident memory, if one is kept (see
    /// [`crate::memory`]). [`CollectorConfig::from_settings`] derives the
    /// pending bound from it and checks the two together; set directly,
    /// `max_pending_bytes` is as given.
    pub max_memory: Option<usize>,
    /// Largest gRPC message accepted, in bytes.
    pub max_grpc_message: usize,
    /// Largest HTTP body accepted after decompression, in bytes.
    pub max_http_body: usize,
    /// fdatasync the write-ahead log before acknowledging (the default). Off,
    /// acknowledged data survives a collector crash but not an operating-system
    /// crash or power loss.
    pub wal_sync: bool,
    /// How long the log waits, after the first request of a group commit,
    /// for more requests to share its fsync. Zero (the default) syncs as
    /// soon as the requests already queued are appended.
    pub wal_commit_interval: Duration,
    /// How often small files are merged (and duplicates removed); `None` turns
    /// background compaction off.
    pub compaction_interval: Option<Duration>,
    /// Compaction merges a partition's files until a file would exceed this size.
    pub compaction_target_size: usize,
    /// How long, and how many, flushed span ids are remembered so that spans
    /// a client resends are not stored twice (see `store::recent`).
    pub dedupe: crate::store::Dedupe,
    /// When set, OTLP requests must carry `Authorization: Bearer <token>`.
    pub bearer_token: Option<String>,
    /// When set, both receivers speak TLS only.
    pub tls: Option<TlsFiles>,
    /// When set, finished Parquet files are uploaded here and leave
    /// `data_dir`, which then holds the log, files not yet shipped, and
    /// shipped span files for the dedupe window (see [`crate::store::ship`]).
    pub object_store: Option<schema::object::ObjectRoot>,
}

/// PEM files for TLS.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// The pending-memory bound when none is configured.
pub const DEFAULT_MAX_PENDING_BYTES: usize = 512 * 1024 * 1024;

/// The smallest `max_memory` accepted. The bound refuses requests past
/// three quarters of itself (36 MiB here), and a collector holds memory
/// idle: 29-34 MiB for a debug build (`tests/overload.rs` prints it).
pub const MIN_MAX_MEMORY: usize = 48 * 1024 * 1024;

impl CollectorConfig {
    /// The standard OTLP ports on loopback.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        CollectorConfig {
            data_dir: data_dir.into(),
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 4317)),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 4318)),
            flush_interval: Duration::from_secs(5),
            flush_rows: 200_000,
            max_pending_bytes: DEFAULT_MAX_PENDING_BYTES,
            max_memory: None,
            max_grpc_message: 4 * 1024 * 1024,
            max_http_body: 20 * 1024 * 1024,
            wal_sync: true,
            wal_commit_interval: Duration::ZERO,
            compaction_interval: Some(Duration::from_secs(60)),
            compaction_target_size: 128 * 1024 * 1024,
            dedupe: crate::store::Dedupe::default(),
            bearer_token: None,
            tls: None,
            object_store: None,
        }
    }

    /// Free loopback ports, for embedding (quickstart, tests).
    pub fn ephemeral(data_dir: impl Into<PathBuf>) -> Self {
        CollectorConfig {
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..Self::new(data_dir)
        }
    }

    /// Defaults, overlaid by `settings` (a file merged with flags and environment).
    pub fn from_settings(settings: Settings) -> Result<Self, ConfigError> {
        let origin = settings.origin.clone();
        let invalid = |key: &'static str, message: String| ConfigError::Invalid {
            origin: origin.clone(),
            key,
            message,
        };
        let mut config = CollectorConfig::new(settings.data.unwrap_or("loadlens-data".into()));
        if let Some(addr) = settings.grpc_addr {
            config.grpc_addr = addr;
        }
        if let Some(addr) = settings.http_addr {
            config.http_addr = addr;
        }
        if let Some(text) = settings.flush_interval {
            config.flush_interval =
                parse_duration(&text).map_err(|m| invalid("flush_interval", m))?;
            if config.flush_interval.is_zero() {
                return Err(invalid("flush_interval", "must be more than 0s".into()));
            }
        }
        if let Some(rows) = settings.flush_rows {
            if rows == 0 {
                return Err(invalid("flush_rows", "must be at least 1".into()));
            }
            config.flush_rows = rows;
        }
        let size = |key: &'static str, value: Option<Size>, into: &mut usize| {
            if let Some(value) = value {
                *into = value.bytes().map_err(|m| invalid(key, m))?;
            }
            Ok::<_, ConfigError>(())
        };
        if let Some(value) = settings.max_memory {
            let bytes = value.bytes().map_err(|m| invalid("max_memory", m))?;
            if bytes < MIN_MAX_MEMORY {
                return Err(invalid(
                    "max_memory",
                    format!(
                        "{bytes} bytes is less than a collector holds idle; at least {}MiB",
                        MIN_MAX_MEMORY >> 20
                    ),
                ));
            }
            config.max_memory = Some(bytes);
        }
        let max_memory = config.max_memory.unwrap_or(usize::MAX);
        match settings.max_pending_bytes {
            Some(value) => {
                config.max_pending_bytes =
                    value.bytes().map_err(|m| invalid("max_pending_bytes", m))?;
                // Pending rows are written while as many again arrive, beside
                // everything else the process holds.
                if config.max_pending_bytes > max_memory / 2 {
                    return Err(invalid(
                        "max_pending_bytes",
                        format!(
                            "{} bytes is more than half of max_memory ({max_memory} bytes); \
                             lower it, or raise max_memory",
                            config.max_pending_bytes
                        ),
                    ));
                }
            }
            None => config.max_pending_bytes = DEFAULT_MAX_PENDING_BYTES.min(max_memory / 4),
        }
        size(
            "max_grpc_message",
            settings.max_grpc_message,
            &mut config.max_grpc_message,
        )?;
        size(
            "max_http_body",
            settings.max_http_body,
            &mut config.max_http_body,
        )?;
        size(
            "compaction_target_size",
            settings.compaction_target_size,
            &mut config.compaction_target_size,
        )?;
        if let Some(sync) = settings.wal_sync {
            config.wal_sync = sync;
        }
        if let Some(text) = settings.wal_commit_interval {
            let interval = parse_duration(&text).map_err(|m| invalid("wal_commit_interval", m))?;
            if interval > MAX_COMMIT_INTERVAL {
                return Err(invalid(
                    "wal_commit_interval",
                    format!(
                        "{text} holds every acknowledgement that long; at most {}ms",
                        MAX_COMMIT_INTERVAL.as_millis()
                    ),
                ));
            }
            config.wal_commit_interval = interval;
        }
        if let Some(text) = settings.compaction_interval {
            let interval = parse_duration(&text).map_err(|m| invalid("compaction_interval", m))?;
            // `0s` turns compaction off.
            config.compaction_interval = (!interval.is_zero()).then_some(interval);
        }
        if let Some(text) = settings.dedupe_window {
            // `0s` turns the index (and the lookup past it) off; compaction
            // still removes repeats.
            config.dedupe.window =
                parse_duration(&text).map_err(|m| invalid("dedupe_window", m))?;
        }
        config.dedupe.max_spans = match settings.dedupe_max_spans {
            Some(spans) => spans,
            // Unset, the index takes at most about half of the pending bound
            // (some 64 bytes per id), so a small bound keeps a small collector.
            None => config
                .dedupe
                .max_spans
                .min(config.max_pending_bytes / (2 * crate::store::recent::BYTES_PER_ID)),
        };
        config.bearer_token = match (settings.bearer_token, settings.bearer_token_file) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "bearer_token",
                    "give bearer_token or bearer_token_file, not both".into(),
                ));
            }
            (Some(token), None) => Some(token),
            (None, Some(path)) => {
                Some(read_token(&path).map_err(|m| invalid("bearer_token_file", m))?)
            }
            (None, None) => None,
        };
        if config.bearer_token.as_deref() == Some("") {
            return Err(invalid("bearer_token", "is empty".into()));
        }
        config.tls = settings.tls;
        if let Some(url) = settings.object_store {
            config.object_store = Some(
                schema::object::ObjectRoot::parse(&url).map_err(|m| invalid("object_store", m))?,
            );
        }
        Ok(config)
    }
}

fn read_token(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(text.trim().to_string())
}

/// A byte size written as a number or with a unit (`4MiB`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Size {
    Bytes(u64),
    Text(String),
}

impl Size {
    fn bytes(&self) -> Result<usize, String> {
        match self {
            Size::Bytes(0) => Err("must be at least one byte".into()),
            Size::Bytes(n) => usize::try_from(*n).map_err(|_| format!("{n} is too large")),
            Size::Text(text) => parse_bytes(text),
        }
    }
}

/// Everything a configuration file may set; flags and environment variables
/// fill the same struct, and [`Settings::overlay`] puts them on top of the file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Where these settings came from, for error messages (not a key).
    #[serde(skip)]
    pub origin: String,
    pub data: Option<PathBuf>,
    pub grpc_addr: Option<SocketAddr>,
    pub http_addr: Option<SocketAddr>,
    pub flush_interval: Option<String>,
    pub flush_rows: Option<usize>,
    pub max_pending_bytes: Option<Size>,
    pub max_memory: Option<Size>,
    pub max_grpc_message: Option<Size>,
    pub max_http_body: Option<Size>,
    pub wal_sync: Option<bool>,
    pub wal_commit_interval: Option<String>,
    pub compaction_interval: Option<String>,
    pub compaction_target_size: Option<Size>,
    pub dedupe_window: Option<String>,
    pub dedupe_max_spans: Option<usize>,
    pub bearer_token: Option<String>,
    pub bearer_token_file: Option<PathBuf>,
    pub tls: Option<TlsFiles>,
    pub object_store: Option<String>,
}

impl Settings {
    /// Reads a YAML file; unknown keys and type errors name the file, line and column.
    pub fn from_file(path: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_yaml(&text, &path.display().to_string())
    }

    /// Parses YAML text; `origin` names it in errors.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Settings, ConfigError> {
        // An empty file is a valid file with no settings.
        if text.trim().is_empty() {
            return Ok(Settings {
                origin: origin.into(),
                ..Settings::default()
            });
        }
        let mut settings: Settings =
            serde_norway::from_str(text).map_err(|e| ConfigError::Parse {
                origin: origin.into(),
                location: e
                    .location()
                    .map(|l| format!(":{}:{}", l.line(), l.column()))
                    .unwrap_or_default(),
                message: e.to_string(),
            })?;
        settings.origin = origin.into();
        Ok(settings)
    }

    /// `self` with every key that `over` sets replaced by `over`'s value.
    pub fn overlay(self, over: Settings) -> Settings {
        let origin = match (self.origin.is_empty(), over.origin.is_empty()) {
            (true, _) => over.origin,
            (false, true) => self.origin,
            (false, false) => format!("{} or {}", over.origin, self.origin),
        };
        let tls_over = over.tls.is_some();
        // A token from one layer replaces a token file from another, and back.
        let token_over = over.bearer_token.is_some() || over.bearer_token_file.is_some();
        Settings {
            origin,
            data: over.data.or(self.data),
            grpc_addr: over.grpc_addr.or(self.grpc_addr),
            http_addr: over.http_addr.or(self.http_addr),
            flush_interval: over.flush_interval.or(self.flush_interval),
            flush_rows: over.flush_rows.or(self.flush_rows),
            max_pending_bytes: over.max_pending_bytes.or(self.max_pending_bytes),
            max_memory: over.max_memory.or(self.max_memory),
            max_grpc_message: over.max_grpc_message.or(self.max_grpc_message),
            max_http_body: over.max_http_body.or(self.max_http_body),
            wal_sync: over.wal_sync.or(self.wal_sync),
            wal_commit_interval: over.wal_commit_interval.or(self.wal_commit_interval),
            compaction_interval: over.compaction_interval.or(self.compaction_interval),
            compaction_target_size: over.compaction_target_size.or(self.compaction_target_size),
            dedupe_window: over.dedupe_window.or(self.dedupe_window),
            dedupe_max_spans: over.dedupe_max_spans.or(self.dedupe_max_spans),
            bearer_token: if token_over {
                over.bearer_token
            } else {
                self.bearer_token
            },
            bearer_token_file: if token_over {
                over.bearer_token_file
            } else {
                self.bearer_token_file
            },
            tls: if tls_over { over.tls } else { self.tls },
            object_store: over.object_store.or(self.object_store),
        }
    }
}

/// A configuration that cannot be used; each is a usage error (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{origin}{location}: {message}")]
    Parse {
        origin: String,
        location: String,
        message: String,
    },
    #[error("{origin}: {key}: {message}")]
    Invalid {
        origin: String,
        key: &'static str,
        message: String,
    },
    #[error(
        "unknown environment variable {name}; the collector reads only {known} (unset it or fix its name)"
    )]
    UnknownEnvironment { name: String, known: String },
}

/// Refuses `LOADLENS_COLLECTOR_*` variables that are not in `known`, so a
/// misspelt variable is not silently ignored.
pub fn check_environment(
    vars: impl IntoIterator<Item = String>,
    known: &[&str],
) -> Result<(), ConfigError> {
    for name in vars {
        if name.starts_with("LOADLENS_COLLECTOR_") && !known.contains(&name.as_str()) {
            return Err(ConfigError::UnknownEnvironment {
                name,
                known: known.join(", "),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_file_parses_and_applies() {
        let settings = Settings::from_yaml(
            "data: /srv/store\ngrpc_addr: 0.0.0.0:14317\nflush_interval: 250ms\nmax_pending_bytes: 64MiB\nmax_http_body: 1048576\nwal_sync: false\nwal_commit_interval: 2ms\ncompaction_interval: 0s\ndedupe_window: 30s\ndedupe_max_spans: 5000\nbearer_token: s3cret\ntls:\n  cert: a.pem\n  key: b.pem\n",
            "c.yaml",
        )
        .unwrap();
        let config = CollectorConfig::from_settings(settings).unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/srv/store"));
        assert_eq!(config.grpc_addr, "0.0.0.0:14317".parse().unwrap());
        assert_eq!(config.http_addr, "127.0.0.1:4318".parse().unwrap());
        assert_eq!(config.flush_interval, Duration::from_millis(250));
        assert_eq!(config.max_pending_bytes, 64 << 20);
        assert_eq!(config.max_http_body, 1 << 20);
        assert!(!config.wal_sync);
        assert_eq!(config.wal_commit_interval, Duration::from_millis(2));
        assert_eq!(config.compaction_interval, None);
        assert_eq!(config.dedupe.window, Duration::from_secs(30));
        assert_eq!(config.dedupe.max_spans, 5000);
        assert_eq!(config.bearer_token.as_deref(), Some("s3cret"));
        assert_eq!(config.tls.unwrap().key, PathBuf::from("b.pem"));
        // Unset, the id bound follows the pending bound: 64 MiB / 128 bytes.
        let settings = Settings::from_yaml("max_pending_bytes: 64MiB\n", "c.yaml").unwrap();
        let config = CollectorConfig::from_settings(settings).unwrap();
        assert_eq!(config.dedupe.max_spans, 524_288);
        let config = CollectorConfig::from_settings(Settings::default()).unwrap();
        assert_eq!(config.dedupe.max_spans, 1_000_000);
        assert_eq!(config.wal_commit_interval, Duration::ZERO);
    }

    #[test]
    fn unknown_keys_name_file_line_and_column() {
        let err = Settings::from_yaml("data: x\nflush_intervall: 5s\n", "c.yaml").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("c.yaml:2:1: "), "{text}");
        assert!(text.contains("unknown field `flush_intervall`"), "{text}");
        let err = Settings::from_yaml("tls:\n  cert: a\n  keys: b\n", "c.yaml").unwrap_err();
        assert!(err.to_string().starts_with("c.yaml:3:3: "), "{err}");
    }

    #[test]
    fn max_memory_sets_the_pending_bound_and_caps_a_configured_one() {
        let from = |yaml: &str| {
            CollectorConfig::from_settings(Settings::from_yaml(yaml, "c.yaml").unwrap())
        };
        // By default, no bound on resident memory.
        let config = from("{}").unwrap();
        assert_eq!(config.max_memory, None);
        assert_eq!(config.max_pending_bytes, DEFAULT_MAX_PENDING_BYTES);
        // A smaller bound brings the pending bound down with it...
        let config = from("max_memory: 256MiB\n").unwrap();
        assert_eq!(config.max_memory, Some(256 << 20));
        assert_eq!(config.max_pending_bytes, 64 << 20);
        // ...a larger one leaves it at its default...
        let config = from("max_memory: 16GiB\n").unwrap();
        assert_eq!(config.max_pending_bytes, DEFAULT_MAX_PENDING_BYTES);
        // ...and a pending bound may take up to half of it, no more.
        let config = from("max_memory: 256MiB\nmax_pending_bytes: 128MiB\n").unwrap();
        assert_eq!(config.max_pending_bytes, 128 << 20);
        let err = from("max_memory: 256MiB\nmax_pending_bytes: 129MiB\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "c.yaml: max_pending_bytes: 135266304 bytes is more than half of max_memory \
             (268435456 bytes); lower it, or raise max_memory"
        );
        // Without max_memory, the pending bound is the only one.
        let config = from("max_pending_bytes: 3GiB\n").unwrap();
        assert_eq!(config.max_pending_bytes, 3 << 30);
        let err = from("max_memory: 0\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "c.yaml: max_memory: must be at least one byte"
        );
        let err = from("max_memory: 47MiB\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "c.yaml: max_memory: 49283072 bytes is less than a collector holds idle; at least 48MiB"
        );
    }

    #[test]
    fn type_errors_and_bad_values_are_refused() {
        let err = Settings::from_yaml("flush_rows: many\n", "c.yaml").unwrap_err();
        assert!(err.to_string().starts_with("c.yaml:1:"), "{err}");
        let settings = Settings::from_yaml("max_grpc_message: 4 mebibytes\n", "c.yaml").unwrap();
        let err = CollectorConfig::from_settings(settings).unwrap_err();
        assert_eq!(
            err.to_string(),
            "c.yaml: max_grpc_message: invalid size unit 'mebibytes' in '4 mebibytes': use B, KiB, MiB, GiB, kB, MB or GB"
        );
        let settings = Settings::from_yaml("flush_interval: 0s\n", "c.yaml").unwrap();
        assert!(CollectorConfig::from_settings(settings).is_err());
        let settings = Settings::from_yaml("wal_commit_interval: 2s\n", "c.yaml").unwrap();
        let err = CollectorConfig::from_settings(settings).unwrap_err();
        assert_eq!(
            err.to_string(),
            "c.yaml: wal_commit_interval: 2s holds every acknowledgement that long; at most 1000ms"
        );
    }

    #[test]
    fn later_layers_win() {
        let file = Settings::from_yaml(
            "data: from-file\nflush_rows: 10\nbearer_token_file: t\n",
            "c.yaml",
        )
        .unwrap();
        let flags = Settings {
            origin: "flags".into(),
            data: Some("from-flags".into()),
            bearer_token: Some("env-token".into()),
            ..Settings::default()
        };
        let merged = file.overlay(flags);
        assert_eq!(merged.data, Some("from-flags".into()));
        assert_eq!(merged.flush_rows, Some(10));
        assert_eq!(merged.bearer_token.as_deref(), Some("env-token"));
        assert_eq!(merged.bearer_token_file, None);
        let config = CollectorConfig::from_settings(merged).unwrap();
        assert_eq!(config.bearer_token.as_deref(), Some("env-token"));
    }

    #[test]
    fn unknown_environment_variables_are_refused() {
        let known = ["LOADLENS_COLLECTOR_DATA"];
        assert!(
            check_environment(
                ["LOADLENS_COLLECTOR_DATA".to_string(), "PATH".into()],
                &known
            )
            .is_ok()
        );
        let err = check_environment(["LOADLENS_COLLECTOR_DAta".to_string()], &known).unwrap_err();
        assert!(err.to_string().contains("LOADLENS_COLLECTOR_DAta"), "{err}");
    }
}
