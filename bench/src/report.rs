//! The figures a scenario produces and the final table: figure, measured, target, verdict.

use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Miss,
    /// A figure printed for context, with no target of its own.
    Info,
    /// The scenario could not be measured (the reason is in `measured`).
    Skipped,
    /// The scenario failed to run (the error is in `measured`).
    Error,
}

impl Verdict {
    pub fn check(ok: bool) -> Verdict {
        if ok {
            Verdict::Pass
        } else {
            Verdict::Miss
        }
    }

    fn label(&self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Miss => "MISS",
            Verdict::Info => "-",
            Verdict::Skipped => "SKIPPED",
            Verdict::Error => "ERROR",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Row {
    pub figure: String,
    pub measured: String,
    pub target: String,
    pub verdict: Verdict,
}

impl Row {
    pub fn new(
        figure: impl Into<String>,
        measured: impl Into<String>,
        target: impl Into<String>,
        verdict: Verdict,
    ) -> Row {
        Row {
            figure: figure.into(),
            measured: measured.into(),
            target: target.into(),
            verdict,
        }
    }

    pub fn info(figure: impl Into<String>, measured: impl Into<String>) -> Row {
        Row::new(figure, measured, "-", Verdict::Info)
    }
}

/// Prints one row as soon as it is known (the table at the end repeats it).
pub fn announce(row: &Row) {
    println!(
        "    {:<44} {:<40} target {:<22} {}",
        row.figure,
        row.measured,
        row.target,
        row.verdict.label()
    );
}

/// The width of a column: its widest cell, at least `min`.
fn width<'a>(cells: impl Iterator<Item = &'a String>, min: usize) -> usize {
    cells.map(String::len).max().unwrap_or(min).max(min)
}

pub fn print_table(rows: &[Row]) {
    let w_fig = width(rows.iter().map(|r| &r.figure), 6);
    let w_meas = width(rows.iter().map(|r| &r.measured), 8);
    let w_tgt = width(rows.iter().map(|r| &r.target), 6);
    let rule = format!(
        "{}-+-{}-+-{}-+-{}",
        "-".repeat(w_fig),
        "-".repeat(w_meas),
        "-".repeat(w_tgt),
        "-".repeat(7)
    );
    println!();
    println!(
        "{:<w_fig$} | {:<w_meas$} | {:<w_tgt$} | result",
        "figure", "measured", "target"
    );
    println!("{rule}");
    for r in rows {
        println!(
            "{:<w_fig$} | {:<w_meas$} | {:<w_tgt$} | {}",
            r.figure,
            r.measured,
            r.target,
            r.verdict.label()
        );
    }
    println!("{rule}");
    let count = |v: Verdict| rows.iter().filter(|r| r.verdict == v).count();
    println!(
        "{} PASS, {} MISS, {} SKIPPED, {} ERROR",
        count(Verdict::Pass),
        count(Verdict::Miss),
        count(Verdict::Skipped),
        count(Verdict::Error)
    );
}

/// The nearest-rank percentile `p` (0-100) of `sorted` (ascending); zero for an empty slice.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A duration in milliseconds with three decimals, e.g. `1.234 ms`.
pub fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

/// Latency summary of a set of samples (sorted in place): p50, p99, max.
pub struct Summary {
    pub n: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Summary {
    pub fn of(samples: &mut [Duration]) -> Summary {
        samples.sort_unstable();
        Summary {
            n: samples.len(),
            p50: percentile(samples, 50.0),
            p99: percentile(samples, 99.0),
            max: samples.last().copied().unwrap_or_default(),
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "p50 {} / p99 {} / max {} (n={})",
            ms(self.p50),
            ms(self.p99),
            ms(self.max),
            self.n
        )
    }
}

/// The first number in a measured figure (`12.3 MB`, `5,691/s`, `x1.16`), for ratios between two builds.
fn first_number(text: &str) -> Option<f64> {
    let start = text.find(|c: char| c.is_ascii_digit())?;
    let digits: String = text[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ',')
        .filter(|c| *c != ',')
        .collect();
    digits.parse().ok()
}

/// Both builds' figures side by side, with this build's figure over the baseline's (the first number of each).
pub fn print_comparison(baseline: &[Row], rows: &[Row]) {
    let w_fig = width(rows.iter().map(|r| &r.figure), 6);
    let w_val = width(rows.iter().chain(baseline).map(|r| &r.measured), 8);
    println!();
    println!(
        "{:<w_fig$} | {:<w_val$} | {:<w_val$} | this / baseline",
        "figure", "baseline", "this build"
    );
    println!(
        "{}-+-{}-+-{}-+-{}",
        "-".repeat(w_fig),
        "-".repeat(w_val),
        "-".repeat(w_val),
        "-".repeat(15)
    );
    for r in rows {
        let base = baseline.iter().find(|b| b.figure == r.figure);
        let ratio = base
            .and_then(|b| ratio(b, r))
            .map_or("-".to_string(), |x| format!("x{x:.3}"));
        println!(
            "{:<w_fig$} | {:<w_val$} | {:<w_val$} | {ratio}",
            r.figure,
            base.map_or("-", |b| b.measured.as_str()),
            r.measured
        );
    }
}

/// This build's figure over the baseline's (their first numbers), when both have one.
fn ratio(baseline: &Row, row: &Row) -> Option<f64> {
    let (n, b) = (
        first_number(&row.measured)?,
        first_number(&baseline.measured)?,
    );
    (b > 0.0).then(|| n / b)
}

/// The median of `values` (the mean of the middle two for an even count); `None` when empty.
fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

/// For several (baseline, this build) rounds: each figure's ratio in every round and their median.
pub fn print_median_ratios(pairs: &[(Vec<Row>, Vec<Row>)]) {
    let Some((_, first)) = pairs.first() else {
        return;
    };
    let w_fig = width(first.iter().map(|r| &r.figure), 6);
    println!(
        "\n{:<w_fig$} | median | this / baseline, round by round",
        "figure"
    );
    println!("{}-+--------+-{}", "-".repeat(w_fig), "-".repeat(32));
    for r in first {
        let ratios: Vec<f64> = pairs
            .iter()
            .filter_map(|(base, this)| {
                let b = base.iter().find(|b| b.figure == r.figure)?;
                let t = this.iter().find(|t| t.figure == r.figure)?;
                ratio(b, t)
            })
            .collect();
        let each: Vec<String> = ratios.iter().map(|x| format!("x{x:.3}")).collect();
        let mid = median(ratios).map_or("-".to_string(), |m| format!("x{m:.3}"));
        println!("{:<w_fig$} | {mid:<6} | {}", r.figure, each.join(" "));
    }
}

#[cfg(test)]
mod tests {
    use super::{first_number, median};

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    #[test]
    fn numbers_are_read_from_figures() {
        assert_eq!(first_number("12.3 MB"), Some(12.3));
        assert_eq!(first_number("5,691/s at 16 clients"), Some(5691.0));
        assert_eq!(first_number("x1.16"), Some(1.16));
        assert_eq!(first_number("failed"), None);
    }
}
