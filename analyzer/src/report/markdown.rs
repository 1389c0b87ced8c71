//! The report as Markdown, sized for a pull-request comment.

use std::fmt::Write as _;

use super::{Report, grouped, two_digits};

/// Stages beyond this many are summarised, so the comment stays readable.
const MAX_STAGES: usize = 12;

/// The report as Markdown: headline figures, findings, stages, the USL fit and
/// the other analyses' sections.
pub fn markdown(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## loadlens report: run `{}`\n", report.run);
    let mut headline = Vec::new();
    if let Some(scenario) = &report.scenario {
        headline.push(format!("scenario **{scenario}**"));
    }
    if let Some(model) = &report.model {
        headline.push(format!("{model} model"));
    }
    headline.push(report.totals.headline());
    let _ = writeln!(out, "{}\n", headline.join(" · "));

    let _ = writeln!(out, "### Findings\n");
    for finding in report.findings() {
        let _ = writeln!(out, "- {finding}");
    }

    let _ = writeln!(out, "\n### Stages\n");
    let _ = writeln!(
        out,
        "| stage | concurrency | requests | req/s | p50 ms | p95 ms | p99 ms | errors |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for stage in report.stages.iter().take(MAX_STAGES) {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {:.2} % |",
            stage.stage,
            stage.concurrency.map_or("".into(), grouped),
            grouped(stage.requests as f64),
            stage.throughput.map_or("".into(), grouped),
            two_digits(stage.p50_ms),
            two_digits(stage.p95_ms),
            two_digits(stage.p99_ms),
            100.0 * stage.error_rate
        );
    }
    if report.stages.len() > MAX_STAGES {
        let _ = writeln!(
            out,
            "\n…and {} more stages (see the HTML or JSON report).",
            report.stages.len() - MAX_STAGES
        );
    }

    let _ = writeln!(out, "\n### Scalability (USL)\n");
    match &report.usl {
        Ok(usl) => {
            let _ = writeln!(out, "{}", super::usl_line(&usl.fit));
            for warning in &usl.fit.warnings {
                let _ = writeln!(out, "\n> {warning}");
            }
        }
        Err(why) => {
            let _ = writeln!(out, "No fit: {why}");
        }
    }
    for section in &report.sections {
        let _ = writeln!(
            out,
            "\n### {}\n\n{}",
            section.title,
            section.markdown.trim_end()
        );
    }
    out
}
