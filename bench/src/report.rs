//! Result bookkeeping and the Markdown table.

pub const KINDS: [&str; 2] = ["Ferry", "Distribution"];

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
    pub samples: [Vec<f64>; 2],
    pub errors: [Option<String>; 2],
    pub target: Target,
    /// (ceiling name, ceiling value in the same unit)
    pub ceiling: Option<(String, f64)>,
    pub decimals: usize,
}

impl Row {
    pub fn value(&self, k: usize) -> Option<f64> {
        if self.samples[k].is_empty() { None } else { Some(median(&self.samples[k])) }
    }

    pub fn ratio(&self) -> Option<f64> {
        let (f, d) = (self.value(0)?, self.value(1)?);
        if f <= 0.0 || d <= 0.0 {
            return None;
        }
        Some(if self.higher_better { f / d } else { d / f })
    }

    fn cell(&self, k: usize) -> String {
        match (self.value(k), &self.errors[k]) {
            (Some(v), _) => {
                let mut s = fmt(v, self.decimals);
                if self.samples[k].len() > 1 {
                    let lo = self.samples[k].iter().cloned().fold(f64::INFINITY, f64::min);
                    let hi = self.samples[k].iter().cloned().fold(f64::NEG_INFINITY, f64::max);
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

    fn target_cell(&self) -> (String, String) {
        let ratio = self.ratio();
        match &self.target {
            Target::None => (String::new(), String::new()),
            Target::Ratio(r) => (format!("≥ {r}×"), verdict(ratio.map(|x| x >= *r))),
            Target::RatioAndCeiling(r, frac) => {
                let name = self.ceiling.as_ref().map(|c| c.0.as_str()).unwrap_or("ceiling");
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

    fn ceiling_cell(&self) -> String {
        let Some((name, c)) = &self.ceiling else { return String::new() };
        let pct = |k: usize| self.value(k).map(|v| format!("{:.0} %", v / c * 100.0)).unwrap_or("–".into());
        format!("{} / {} of {name}", pct(0), pct(1))
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
    if n % 2 == 1 { s[n / 2] } else { (s[n / 2 - 1] + s[n / 2]) / 2.0 }
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

pub fn main_table(rows: &[Row]) -> String {
    let mut s = String::new();
    s.push_str(
        "| Workload | Metric | Ferry | Distribution | Ratio (>1 = Ferry better) | Target | Verdict | Ferry / Distribution vs ceiling |\n\
         |---|---|--:|--:|--:|---|---|---|\n",
    );
    for r in rows {
        let (t, v) = r.target_cell();
        let ratio = r.ratio().map(|x| format!("{:.2}×", x)).unwrap_or("–".into());
        s.push_str(&format!(
            "| {} | {} ({}{}) | {} | {} | {} | {} | {} | {} |\n",
            r.workload,
            r.metric,
            r.unit,
            if r.higher_better { ", higher is better" } else { ", lower is better" },
            r.cell(0),
            r.cell(1),
            ratio,
            t,
            v,
            r.ceiling_cell()
        ));
    }
    s
}

#[derive(Clone, Debug, Default)]
pub struct UsageRow {
    pub key: String,
    pub rss: [Vec<f64>; 2],
    pub cpu: [Vec<f64>; 2],
}

pub fn usage_table(rows: &[UsageRow]) -> String {
    let mut s = String::new();
    s.push_str(
        "| During | Ferry peak RSS (MiB) | Distribution peak RSS (MiB) | RSS ratio (D/F) | Ferry CPU (s) | Distribution CPU (s) | CPU ratio (D/F) |\n\
         |---|--:|--:|--:|--:|--:|--:|\n",
    );
    let max = |v: &Vec<f64>| if v.is_empty() { None } else { Some(v.iter().cloned().fold(0.0, f64::max)) };
    let med = |v: &Vec<f64>| if v.is_empty() { None } else { Some(median(v)) };
    let c = |x: Option<f64>, d: usize| x.map(|x| format!("{:.*}", d, x)).unwrap_or("n/a".into());
    let ratio = |f: Option<f64>, d: Option<f64>| match (f, d) {
        (Some(f), Some(d)) if f > 0.0 => format!("{:.2}×", d / f),
        _ => "–".into(),
    };
    for r in rows {
        let (fr, dr) = (max(&r.rss[0]), max(&r.rss[1]));
        let (fc, dc) = (med(&r.cpu[0]), med(&r.cpu[1]));
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            r.key,
            c(fr, 1),
            c(dr, 1),
            ratio(fr, dr),
            c(fc, 2),
            c(dc, 2),
            ratio(fc, dc)
        ));
    }
    s
}
