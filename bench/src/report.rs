//! Result bookkeeping and the Markdown table.

/// The columns of a report: one per server under test, plus the ratios shown
/// next to them.
#[derive(Clone, Debug)]
pub struct Layout {
    /// Column headers, one per server, in A/B order.
    pub labels: Vec<String>,
    /// Ratio columns: the first one drives the Target/Verdict columns.
    pub ratios: Vec<Ratio>,
    /// Show the Target and Verdict columns.
    pub targets: bool,
    /// Columns whose value is shown as a fraction of the row's ceiling.
    pub ceiling_cols: Vec<usize>,
    /// Show the ratios in the resources table too.
    pub usage_ratios: bool,
    /// Columns that only some workloads run (the no-fsync reference): an
    /// empty cell, not `n/a`, where they have no value.
    pub partial_cols: Vec<usize>,
}

/// Column `a` against column `b`, oriented so that > 1 means `a` is better.
#[derive(Clone, Debug)]
pub struct Ratio {
    pub a: usize,
    pub b: usize,
    /// Header in the main table, e.g. "Ratio (>1 = Ferry better)".
    pub header: String,
    /// Short form for the resources table, e.g. "D/F" (b's use ÷ a's use).
    pub short: String,
}

#[derive(Clone, Debug)]
pub enum Target {
    None,
    /// Ratio (oriented, >1 = Ferry better) at least this.
    Ratio(f64),
    /// Ratio at least `.0` and Ferry at least `.1` of the named ceiling.
    RatioAndCeiling(f64, f64),
    /// Ferry's absolute value at most this.
    FerryAtMost(f64),
}

#[derive(Clone, Debug)]
pub struct Row {
    pub id: String,
    pub workload: String,
    pub metric: String,
    pub unit: String,
    pub higher_better: bool,
    /// One list of samples per column.
    pub samples: Vec<Vec<f64>>,
    pub errors: Vec<Option<String>>,
    pub target: Target,
    /// (ceiling name, ceiling value in the same unit)
    pub ceiling: Option<(String, f64)>,
    pub decimals: usize,
}

impl Row {
    pub fn value(&self, k: usize) -> Option<f64> {
        if self.samples[k].is_empty() {
            None
        } else {
            Some(median(&self.samples[k]))
        }
    }

    /// Column `a` against column `b`, oriented so that > 1 means `a` is better.
    pub fn ratio(&self, a: usize, b: usize) -> Option<f64> {
        let (f, d) = (self.value(a)?, self.value(b)?);
        if f <= 0.0 || d <= 0.0 {
            return None;
        }
        Some(if self.higher_better { f / d } else { d / f })
    }

    /// Column `k` does not run this row's workload (a partial column).
    fn skipped(&self, layout: &Layout, k: usize) -> bool {
        layout.partial_cols.contains(&k) && self.samples[k].is_empty() && self.errors[k].is_none()
    }

    fn cell(&self, k: usize) -> String {
        match (self.value(k), &self.errors[k]) {
            (Some(v), _) => {
                let mut s = fmt(v, self.decimals);
                if self.samples[k].len() > 1 {
                    let lo = self.samples[k]
                        .iter()
                        .cloned()
                        .fold(f64::INFINITY, f64::min);
                    let hi = self.samples[k]
                        .iter()
                        .cloned()
                        .fold(f64::NEG_INFINITY, f64::max);
                    if v != 0.0 && (hi - lo) / v.abs() > 0.15 {
                        s.push_str(" ~"); // noisy: reps differ by >15 %
                    }
                }
                s
            }
            (None, Some(_)) => "error".into(),
            (None, None) => "n/a".into(),
        }
    }

    fn target_cell(&self, layout: &Layout) -> (String, String) {
        let ratio = layout.ratios.first().and_then(|q| self.ratio(q.a, q.b));
        match &self.target {
            Target::None => (String::new(), String::new()),
            Target::Ratio(r) => (format!("≥ {r}×"), verdict(ratio.map(|x| x >= *r))),
            Target::RatioAndCeiling(r, frac) => {
                let name = self
                    .ceiling
                    .as_ref()
                    .map(|c| c.0.as_str())
                    .unwrap_or("ceiling");
                let t = format!("≥ {r}× and ≥ {:.0} % of {name}", frac * 100.0);
                let ok_ceiling = match (&self.ceiling, self.value(0)) {
                    (Some((_, c)), Some(f)) => Some(f >= c * frac),
                    _ => None,
                };
                let ok = match (ratio.map(|x| x >= *r), ok_ceiling) {
                    (Some(a), Some(b)) => Some(a && b),
                    _ => None,
                };
                (t, verdict(ok))
            }
            Target::FerryAtMost(v) => (
                format!("≤ {} {}", fmt(*v, 0), self.unit),
                verdict(self.value(0).map(|f| f <= *v)),
            ),
        }
    }

    fn ceiling_cell(&self, layout: &Layout) -> String {
        let Some((name, c)) = &self.ceiling else {
            return String::new();
        };
        let pct = |k: usize| {
            self.value(k)
                .map(|v| format!("{:.0} %", v / c * 100.0))
                .unwrap_or("–".into())
        };
        let cells: Vec<String> = layout
            .ceiling_cols
            .iter()
            .filter(|&&k| !self.skipped(layout, k))
            .map(|&k| pct(k))
            .collect();
        format!("{} of {name}", cells.join(" / "))
    }
}

pub fn verdict(ok: Option<bool>) -> String {
    match ok {
        Some(true) => "met".into(),
        Some(false) => "**missed**".into(),
        None => "–".into(),
    }
}

pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

pub fn fmt(v: f64, decimals: usize) -> String {
    if v.abs() >= 1000.0 && decimals == 0 {
        // thousands separator for readability
        let s = format!("{:.0}", v);
        let mut out = String::new();
        for (i, ch) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 && ch != '-' {
                out.push(',');
            }
            out.push(ch);
        }
        out
    } else {
        format!("{:.*}", decimals, v)
    }
}

pub fn main_table(layout: &Layout, rows: &[Row]) -> String {
    let mut s = String::from("| Workload | Metric |");
    let mut sep = String::from("|---|---|");
    for l in &layout.labels {
        s.push_str(&format!(" {l} |"));
        sep.push_str("--:|");
    }
    for q in &layout.ratios {
        s.push_str(&format!(" {} |", q.header));
        sep.push_str("--:|");
    }
    if layout.targets {
        s.push_str(" Target | Verdict |");
        sep.push_str("---|---|");
    }
    if !layout.ceiling_cols.is_empty() {
        let names: Vec<&str> = layout
            .ceiling_cols
            .iter()
            .map(|&k| layout.labels[k].as_str())
            .collect();
        s.push_str(&format!(" {} vs ceiling |", names.join(" / ")));
        sep.push_str("---|");
    }
    s.push('\n');
    s.push_str(&sep);
    s.push('\n');
    for r in rows {
        s.push_str(&format!(
            "| {} | {} ({}{}) |",
            r.workload,
            r.metric,
            r.unit,
            if r.higher_better {
                ", higher is better"
            } else {
                ", lower is better"
            }
        ));
        for k in 0..layout.labels.len() {
            if r.skipped(layout, k) {
                s.push_str("  |");
            } else {
                s.push_str(&format!(" {} |", r.cell(k)));
            }
        }
        for q in &layout.ratios {
            if r.skipped(layout, q.a) || r.skipped(layout, q.b) {
                s.push_str("  |");
                continue;
            }
            s.push_str(&format!(
                " {} |",
                r.ratio(q.a, q.b)
                    .map(|x| format!("{:.2}×", x))
                    .unwrap_or("–".into())
            ));
        }
        if layout.targets {
            let (t, v) = r.target_cell(layout);
            s.push_str(&format!(" {t} | {v} |"));
        }
        if !layout.ceiling_cols.is_empty() {
            s.push_str(&format!(" {} |", r.ceiling_cell(layout)));
        }
        s.push('\n');
    }
    s
}

#[derive(Clone, Debug, Default)]
pub struct UsageRow {
    pub key: String,
    /// Per column: peak RSS samples (MiB) and CPU seconds of the server.
    pub rss: Vec<Vec<f64>>,
    pub cpu: Vec<Vec<f64>>,
    /// Per column: CPU seconds of its storage backend process (S3 server), if any.
    pub backend_cpu: Vec<Vec<f64>>,
}

impl UsageRow {
    pub fn new(key: &str, cols: usize) -> UsageRow {
        UsageRow {
            key: key.into(),
            rss: vec![vec![]; cols],
            cpu: vec![vec![]; cols],
            backend_cpu: vec![vec![]; cols],
        }
    }
}

/// `backends[k]`: name of column k's storage backend process, if it has one.
pub fn usage_table(layout: &Layout, backends: &[Option<String>], rows: &[UsageRow]) -> String {
    let n = layout.labels.len();
    let max = |v: &Vec<f64>| {
        if v.is_empty() {
            None
        } else {
            Some(v.iter().cloned().fold(0.0, f64::max))
        }
    };
    let med = |v: &Vec<f64>| if v.is_empty() { None } else { Some(median(v)) };
    let c = |x: Option<f64>, d: usize| x.map(|x| format!("{:.*}", d, x)).unwrap_or("n/a".into());
    // A column this workload did not run: an empty cell.
    let cell = |k: usize, x: Option<f64>, d: usize| {
        if x.is_none() && layout.partial_cols.contains(&k) {
            String::new()
        } else {
            c(x, d)
        }
    };
    let ratio = |q: &Ratio, a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if a > 0.0 => format!("{:.2}×", b / a),
        // A column this workload did not run: an empty cell.
        (None, _) if layout.partial_cols.contains(&q.a) => String::new(),
        (_, None) if layout.partial_cols.contains(&q.b) => String::new(),
        _ => "–".into(),
    };
    let mut s = String::from("| During |");
    let mut sep = String::from("|---|");
    let mut head = |h: String| {
        s.push_str(&format!(" {h} |"));
        sep.push_str("--:|");
    };
    for l in &layout.labels {
        head(format!("{l} peak RSS (MiB)"));
    }
    let ratios: &[Ratio] = if layout.usage_ratios {
        &layout.ratios
    } else {
        &[]
    };
    for q in ratios {
        head(format!("RSS ratio ({})", q.short));
    }
    for l in &layout.labels {
        head(format!("{l} CPU (s)"));
    }
    for q in ratios {
        head(format!("CPU ratio ({})", q.short));
    }
    for (k, b) in backends.iter().enumerate() {
        if let Some(b) = b {
            head(format!("{b} CPU for {} (s)", layout.labels[k]));
        }
    }
    s.push('\n');
    s.push_str(&sep);
    s.push('\n');
    for r in rows {
        let rss: Vec<Option<f64>> = (0..n).map(|k| r.rss.get(k).and_then(max)).collect();
        let cpu: Vec<Option<f64>> = (0..n).map(|k| r.cpu.get(k).and_then(med)).collect();
        let mut cells = vec![r.key.clone()];
        cells.extend(rss.iter().enumerate().map(|(k, x)| cell(k, *x, 1)));
        cells.extend(ratios.iter().map(|q| ratio(q, rss[q.a], rss[q.b])));
        cells.extend(cpu.iter().enumerate().map(|(k, x)| cell(k, *x, 2)));
        cells.extend(ratios.iter().map(|q| ratio(q, cpu[q.a], cpu[q.b])));
        for (k, b) in backends.iter().enumerate() {
            if b.is_some() {
                cells.push(c(r.backend_cpu.get(k).and_then(med), 2));
            }
        }
        s.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout {
            labels: vec![
                "Ferry".into(),
                "Distribution".into(),
                "Ferry no-fsync".into(),
            ],
            ratios: vec![
                Ratio {
                    a: 0,
                    b: 1,
                    header: "Ratio".into(),
                    short: "D/F".into(),
                },
                Ratio {
                    a: 0,
                    b: 2,
                    header: "Ferry ÷ Ferry no-fsync".into(),
                    short: "no-fsync/F".into(),
                },
            ],
            targets: false,
            ceiling_cols: vec![0, 1, 2],
            usage_ratios: true,
            partial_cols: vec![2],
        }
    }

    fn row(samples: Vec<Vec<f64>>) -> Row {
        Row {
            id: "x".into(),
            workload: "w".into(),
            metric: "m".into(),
            unit: "MB/s".into(),
            higher_better: true,
            errors: vec![None; samples.len()],
            samples,
            target: Target::None,
            ceiling: Some(("disk".into(), 200.0)),
            decimals: 0,
        }
    }

    #[test]
    fn partial_column_is_blank_where_it_did_not_run() {
        let t = main_table(&layout(), &[row(vec![vec![100.0], vec![50.0], vec![]])]);
        let line = t.lines().nth(2).unwrap();
        assert_eq!(
            line,
            "| w | m (MB/s, higher is better) | 100 | 50 |  | 2.00× |  | 50 % / 25 % of disk |"
        );
        let t = main_table(
            &layout(),
            &[row(vec![vec![100.0], vec![50.0], vec![200.0]])],
        );
        assert!(t.contains("| 100 | 50 | 200 | 2.00× | 0.50× | 50 % / 25 % / 100 % of disk |"));
    }
}
