//! Rows of results and the Markdown report.

use std::fmt::Write;

/// One line of the results table.
#[derive(Debug, Clone)]
pub struct Row {
    pub id: &'static str,
    pub scenario: String,
    pub refract: String,
    pub baseline: String,
    /// refract ÷ baseline, when there is a baseline.
    pub ratio: Option<f64>,
    pub target: String,
    /// Whether the target was met; `None` when there is none to meet.
    pub met: Option<bool>,
    /// CPU idle before the scenario, percent.
    pub idle: f64,
}

impl Row {
    pub fn new(
        id: &'static str,
        scenario: String,
        refract: String,
        baseline: String,
        ratio: Option<f64>,
        target: &str,
        met: Option<bool>,
    ) -> Row {
        Row { id, scenario, refract, baseline, ratio, target: target.to_owned(), met, idle: 0.0 }
    }
}

pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| # | scenario | refract | baseline, same run | ratio | target | met | CPU idle before |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let ratio = r.ratio.map_or_else(|| "—".to_owned(), |v| format!("{v:.2}×"));
        let met = match r.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "—",
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {ratio} | {} | {met} | {:.0} % |",
            r.id, r.scenario, r.refract, r.baseline, r.target, r.idle
        );
    }
    out
}

/// The whole report: header, machine, command, table, then `analysis`.
pub fn markdown(rows: &[Row], machine: &str, command: &str, analysis: &str) -> String {
    format!(
        "# Benchmarks\n\n\
         Written by `refract-bench` — do not edit by hand; rerun it.\n\n\
         - Machine: {machine}\n\
         - Command: `{command}`\n\
         - Method: variants with a baseline run interleaved in one process, median of the repetitions \
         (5 unless the scenario says otherwise); ratios are refract ÷ baseline, so above 1 is faster, \
         taken per repetition (each pair measured back to back) and their median reported \
         (for P5b: time growth against log growth). The machine is shared: read the ratios first.\n\n\
         {}\n{analysis}",
        table(rows)
    )
}
