//! `loadlens report` on the fixture store: Markdown and JSON pinned by
//! snapshots, and the HTML opened in headless Chromium, whose screenshot must
//! show the charts drawn.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

use common::{loadlens, stderr};

/// The fixture store and the three reports written from it, once.
fn reports() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report");
        let _ = std::fs::remove_dir_all(&dir);
        let store = dir.join("store");
        fixtures::write(&store, &fixtures::Spec::small()).unwrap();
        let output = loadlens()
            .args(["report", fixtures::RUN_ID, "--data"])
            .arg(&store)
            .arg("--html")
            .arg(dir.join("report.html"))
            .arg("--markdown")
            .arg(dir.join("report.md"))
            .arg("--json")
            .arg(dir.join("report.json"))
            .arg("--slo")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("slos/checkout.yaml"))
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
        dir
    })
}

/// Floats rounded to 6 significant digits, so the snapshot pins the results
/// and not the last bits of a parallel sum.
fn rounded(value: Value) -> Value {
    match value {
        Value::Number(n) if n.is_f64() => {
            let x = n.as_f64().unwrap();
            let digits = if x == 0.0 {
                0
            } else {
                5 - x.abs().log10().floor() as i32
            };
            let scale = 10f64.powi(digits);
            serde_json::json!((x * scale).round() / scale)
        }
        Value::Array(items) => Value::Array(items.into_iter().map(rounded).collect()),
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (k, rounded(v))).collect())
        }
        other => other,
    }
}

#[test]
fn markdown_summary_matches_its_snapshot() {
    let text = std::fs::read_to_string(reports().join("report.md")).unwrap();
    // Sized for a pull-request comment.
    assert!(text.lines().count() < 60, "{} lines", text.lines().count());
    insta::assert_snapshot!("report_markdown", text);
}

#[test]
fn json_report_matches_its_snapshot_and_the_usl_truth() {
    let text = std::fs::read_to_string(reports().join("report.json")).unwrap();
    let json: Value = serde_json::from_str(&text).unwrap();
    let sigma = json["usl"]["sigma"].as_f64().unwrap();
    assert!((sigma - fixtures::USL_SIGMA).abs() < 0.005, "σ {sigma}");
    let requests: u64 = json["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(json["totals"]["requests"].as_u64(), Some(requests));
    // The other analyses' sections are in: critical path shares sum to 1,
    // and the SLO's objective was checked over this run.
    let shares: f64 = json["bottleneck"]["operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|op| op["share"].as_f64().unwrap())
        .sum();
    assert!(
        (shares - 1.0).abs() < 1e-9,
        "critical path shares sum to {shares}"
    );
    let slo = &json["slo:checkout-availability"];
    assert_eq!(slo["objectives"].as_array().unwrap().len(), 1, "{slo}");
    insta::assert_snapshot!(
        "report_json",
        serde_json::to_string_pretty(&rounded(json)).unwrap()
    );
}

#[test]
fn html_is_self_contained() {
    let html = std::fs::read_to_string(reports().join("report.html")).unwrap();
    assert!(html.starts_with("<!doctype html>"));
    assert_eq!(html.matches("<svg").count(), 4, "four charts");
    for outside in ["<script", "http://", "https://", "<link", "@import"] {
        let allowed = html.matches("http://www.w3.org/2000/svg").count();
        let found = html.matches(outside).count();
        let found = if outside == "http://" {
            found - allowed
        } else {
            found
        };
        assert_eq!(found, 0, "the report refers outside itself: {outside}");
    }
}

/// Counts the screenshot's pixels within a small distance of `rgb`.
fn pixels_near(png: &Path, rgb: [u8; 3]) -> usize {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(png).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buffer = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buffer).unwrap();
    let channels = info.color_type.samples();
    buffer[..info.buffer_size()]
        .chunks(channels)
        .filter(|px| (0..3).all(|c| px[c].abs_diff(rgb[c]) <= 24))
        .count()
}

#[test]
fn html_charts_are_drawn_in_headless_chromium() {
    let browser = ["chromium-headless-shell", "chromium", "chromium-browser"]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok())
        .expect(
            "no headless Chromium: install Debian's chromium-headless-shell (.ci/run does) to run this test",
        );
    let dir = reports();
    let shot = dir.join("report.png");
    let _ = std::fs::remove_file(&shot);
    let output = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1100,1800",
        ])
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", dir.join("report.html").display()))
        .output()
        .unwrap();
    assert!(shot.exists(), "no screenshot: {}", stderr(&output));
    // The first two series colours (svg::PALETTE): measured points and p50
    // lines in blue, the USL fit and second series in vermilion.
    let blue = pixels_near(&shot, [0x00, 0x72, 0xB2]);
    let vermilion = pixels_near(&shot, [0xD5, 0x5E, 0x00]);
    assert!(blue > 2_000, "{blue} blue pixels: charts not drawn");
    assert!(
        vermilion > 2_000,
        "{vermilion} vermilion pixels: charts not drawn"
    );
}

#[test]
fn an_unknown_run_exits_2() {
    let store = reports().join("store");
    let output = loadlens()
        .args(["report", "no-such-run", "--data"])
        .arg(&store)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("run 'no-such-run' has no requests"));
}
