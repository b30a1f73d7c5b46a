//! Results of evaluated rows and the one report writer: JSON (for
//! programs) and Markdown (for people), each written atomically.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::eval::features::Head;
use crate::eval::probes::ProbeScores;
use crate::group::GroupKind;

/// One evaluated (row, seed). A row is identified by its config and head
/// ([`RowResult::same_row_and_seed`]); `model` is the head's label as it
/// was shown when the row was written, for people and other programs.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(try_from = "StoredRow")]
pub struct RowResult {
    /// Row label, e.g. "Gram Pooling".
    pub model: String,
    /// The head the features came from.
    pub head: Head,
    /// The group (None for the baseline); written as the group column,
    /// "D4" or "-".
    #[serde(with = "spelled::group_column")]
    pub group: Option<GroupKind>,
    /// Config stem.
    pub config: String,
    /// Training seed.
    pub seed: u64,
    /// Number of features.
    pub features: usize,
    /// Probe scores.
    pub scores: ProbeScores,
    /// Paper's logistic-regression accuracy (%), NaN where there is none
    /// (written as `null`).
    pub paper_logistic: f64,
    /// Paper's neural-network accuracy (%), NaN where there is none.
    pub paper_mlp: f64,
}

impl RowResult {
    /// The row of `(config, head)` for one seed, from its evaluation, with
    /// the paper's (logistic, MLP) accuracies (NaN where there are none).
    pub fn new(
        (config, head): (&str, Head),
        group: Option<GroupKind>,
        seed: u64,
        (features, scores): (usize, &ProbeScores),
        (paper_logistic, paper_mlp): (f64, f64),
    ) -> Self {
        Self {
            model: head.label().into(),
            head,
            group,
            config: config.into(),
            seed,
            features,
            scores: scores.clone(),
            paper_logistic,
            paper_mlp,
        }
    }

    /// The same row (config and head).
    pub fn same_row(&self, other: &RowResult) -> bool {
        self.config == other.config && self.head == other.head
    }

    /// The same row and seed.
    pub fn same_row_and_seed(&self, other: &RowResult) -> bool {
        self.same_row(other) && self.seed == other.seed
    }
}

/// A row as a report file holds it: reports written before rows carried
/// their head have only its label, from which the head is recovered.
#[derive(Deserialize)]
struct StoredRow {
    model: String,
    head: Option<Head>,
    #[serde(with = "spelled::group_column")]
    group: Option<GroupKind>,
    config: String,
    seed: u64,
    features: usize,
    scores: ProbeScores,
    #[serde(deserialize_with = "crate::eval::probes::nan_if_null")]
    paper_logistic: f64,
    #[serde(deserialize_with = "crate::eval::probes::nan_if_null")]
    paper_mlp: f64,
}

impl TryFrom<StoredRow> for RowResult {
    type Error = anyhow::Error;

    fn try_from(r: StoredRow) -> Result<Self> {
        let head = match r.head {
            Some(head) => head,
            None => Head::from_label(&r.model).ok_or_else(|| {
                anyhow::anyhow!("row {:?} of config {}: no such head", r.model, r.config)
            })?,
        };
        Ok(Self {
            model: r.model,
            head,
            group: r.group,
            config: r.config,
            seed: r.seed,
            features: r.features,
            scores: r.scores,
            paper_logistic: r.paper_logistic,
            paper_mlp: r.paper_mlp,
        })
    }
}

/// The spellings report files use for typed values, as serde `with`
/// modules: the files read as they always have, the code sees types.
pub(crate) mod spelled {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    use crate::eval::features::Head;
    use crate::group::GroupKind;

    /// A group column: "D4", or "-" for the baseline (no group).
    pub fn group_label(group: Option<GroupKind>) -> String {
        group.map_or("-".into(), |g| g.name().to_uppercase())
    }

    pub mod group_column {
        use super::*;

        pub fn serialize<S: Serializer>(g: &Option<GroupKind>, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(&group_label(*g))
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<GroupKind>, D::Error> {
            let text = String::deserialize(d)?;
            match text.as_str() {
                "-" => Ok(None),
                name => name.parse().map(Some).map_err(D::Error::custom),
            }
        }
    }

    /// A group in capitals ("D4").
    pub mod group_upper {
        use super::*;

        pub fn serialize<S: Serializer>(g: &GroupKind, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(&g.name().to_uppercase())
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<GroupKind, D::Error> {
            String::deserialize(d)?.parse().map_err(D::Error::custom)
        }
    }

    /// A head by its row label ("Gram Pooling").
    pub mod head_label {
        use super::*;

        pub fn serialize<S: Serializer>(h: &Head, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(h.label())
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Head, D::Error> {
            let label = String::deserialize(d)?;
            Head::from_label(&label).ok_or_else(|| D::Error::custom(format!("no head {label:?}")))
        }
    }

    /// A head by its command-line name ("gram", "attention-q").
    pub mod head_name {
        use super::*;

        pub fn serialize<S: Serializer>(h: &Head, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(h.name())
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Head, D::Error> {
            let name = String::deserialize(d)?;
            Head::from_name(&name).ok_or_else(|| D::Error::custom(format!("no head {name:?}")))
        }
    }
}

/// Write `<out>/<stem>.json` and `<out>/<stem>.md`, each atomically, and
/// return the Markdown and both paths.
pub fn write_reports(
    out: &Path,
    stem: &str,
    title: &str,
    results: &[RowResult],
) -> Result<(String, PathBuf, PathBuf)> {
    let md = markdown(title, results);
    let (json_path, md_path) = (
        out.join(format!("{stem}.json")),
        out.join(format!("{stem}.md")),
    );
    crate::atomic::write(
        &json_path,
        serde_json::to_string_pretty(results)?.as_bytes(),
    )?;
    crate::atomic::write(&md_path, md.as_bytes())?;
    Ok((md, json_path, md_path))
}

/// CSV text (RFC 4180, through the csv crate): a header and the rows, each
/// field quoted where it holds a comma, a quote or a line break (run names
/// may hold them).
pub fn csv_text(header: &[&str], rows: &[Vec<String>]) -> Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(header)?;
    for row in rows {
        w.write_record(row)?;
    }
    let bytes = w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(String::from_utf8(bytes)?)
}

/// Mean and sample standard deviation (0 for one value).
pub(crate) fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (m, var.sqrt())
}

/// `mean ± std` of `v` to `decimals` places; the mean alone for one value,
/// whose spread is unknown (not zero).
fn mean_pm_std(v: &[f64], decimals: usize) -> String {
    if v.iter().all(|x| x.is_nan()) {
        return "–".into();
    }
    let (m, s) = mean_std(v);
    if v.len() < 2 {
        format!("{m:.decimals$}")
    } else {
        format!("{m:.decimals$} ± {s:.decimals$}")
    }
}

/// Markdown table of mean ± standard deviation over seeds, paper beside ours
/// (the mean alone for a row of one seed).
/// `title` is e.g. "Table 1 (augmented MNIST, preset Full" or
/// "Evaluation (frozen features": the parenthesis is closed here.
pub fn markdown(title: &str, results: &[RowResult]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{title}, mean ± std over each row's seeds, the value alone for one seed; accuracies in %)\n"
    );
    let paper = |v: f64| {
        if v.is_nan() {
            "–".to_string()
        } else {
            format!("{v:.1}")
        }
    };
    let mut rows: Vec<&RowResult> = Vec::new();
    for r in results {
        if !rows.iter().any(|s| s.same_row(r)) {
            rows.push(r);
        }
    }
    // rows of different runs that would read alike name their run
    let alike = |a: &RowResult, b: &RowResult| {
        (&a.model, &a.group, a.features) == (&b.model, &b.group, b.features) && a.config != b.config
    };
    let named = rows.iter().any(|a| rows.iter().any(|b| alike(a, b)));
    let (run_head, run_rule) = if named { ("| Run ", "|---") } else { ("", "") };
    let _ = writeln!(
        out,
        "{run_head}| Model | Group | Features | Seeds | LogReg (paper) | LogReg (ours) | NN (paper) | NN (ours) | kNN (ours) | k-means acc (ours) | NMI (ours) | clusters acc (ours) | clusters NMI (ours) |"
    );
    let _ = writeln!(
        out,
        "{run_rule}|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for r in rows {
        let same: Vec<&RowResult> = results.iter().filter(|x| x.same_row(r)).collect();
        let stat = |f: &dyn Fn(&RowResult) -> f64, scale: f64, decimals: usize| {
            mean_pm_std(
                &same.iter().map(|x| f(x) * scale).collect::<Vec<_>>(),
                decimals,
            )
        };
        let run = if named {
            format!("| {} ", r.config)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "{run}| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.model,
            spelled::group_label(r.group),
            r.features,
            same.len(),
            paper(r.paper_logistic),
            stat(&|x| x.scores.logistic, 100.0, 1),
            paper(r.paper_mlp),
            stat(&|x| x.scores.mlp, 100.0, 1),
            stat(&|x| x.scores.knn, 100.0, 1),
            stat(&|x| x.scores.kmeans_accuracy, 100.0, 1),
            stat(&|x| x.scores.nmi, 1.0, 3),
            stat(&|x| x.scores.cluster_accuracy, 100.0, 1),
            stat(&|x| x.scores.cluster_nmi, 1.0, 3),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::probes::ProbeSeconds;

    fn row(config: &str, seed: u64, logistic: f64) -> RowResult {
        RowResult {
            model: "Gram Pooling".into(),
            head: Head::Gram,
            group: Some(GroupKind::D4),
            config: config.into(),
            seed,
            features: 944,
            scores: ProbeScores {
                logistic,
                mlp: 0.9,
                knn: 0.9,
                kmeans_accuracy: 0.3,
                nmi: 0.3,
                cluster_accuracy: 0.8,
                cluster_nmi: f64::NAN,
                seconds: ProbeSeconds::default(),
            },
            paper_logistic: 65.2,
            paper_mlp: f64::NAN,
        }
    }

    /// A row of two seeds shows mean ± sample std; a row of one seed shows
    /// its value alone, not a spread of 0.
    #[test]
    fn one_seed_has_no_spread() {
        let md = markdown(
            "T (x",
            &[row("a", 0, 0.94), row("a", 1, 0.95), row("b", 0, 0.96)],
        );
        // rows of two runs that read alike name their run first
        let lines: Vec<&str> = md.lines().filter(|l| l.contains("| Gram")).collect();
        assert_eq!(lines.len(), 2, "{md}");
        assert!(
            lines[0].starts_with("| a |") && lines[1].starts_with("| b |"),
            "{md}"
        );
        assert!(
            lines[0].contains("| 2 | 65.2 | 94.5 ± 0.7 | – | 90.0 ± 0.0 |"),
            "{md}"
        );
        assert!(
            lines[0].ends_with("| 0.300 ± 0.000 | 80.0 ± 0.0 | – |"),
            "{md}"
        );
        assert!(
            lines[1].contains("| 1 | 65.2 | 96.0 | – | 90.0 | 90.0 | 30.0 | 0.300 | 80.0 | – |"),
            "{md}"
        );
        assert!(!lines[1].contains('±'), "{md}");
    }

    /// A report written before rows carried their head still reads: the
    /// head comes from the label; a label no head has is refused by name.
    #[test]
    fn reports_without_heads_still_read() {
        let mut json = serde_json::to_value(vec![row("d12_gram", 0, 0.95)]).unwrap();
        json[0].as_object_mut().unwrap().remove("head");
        let rows: Vec<RowResult> = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(rows[0].head, Head::Gram);
        assert!(rows[0].same_row_and_seed(&row("d12_gram", 0, 0.5)));
        assert!(!rows[0].same_row(&row("d4_gram", 0, 0.95)));
        json[0]["model"] = "Gramm Pooling".into();
        let err = serde_json::from_value::<Vec<RowResult>>(json)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"Gramm Pooling\"") && err.contains("no such head"),
            "{err}"
        );
    }

    /// The shipped three-seed Table 1 report (written before rows carried
    /// their head) reads, every row with the head its label names.
    #[test]
    fn the_shipped_table_report_reads() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/docs/results/table1_full/table1_full.json"
        );
        let rows: Vec<RowResult> =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!(rows.len(), 27);
        assert!(rows.iter().all(|r| r.head.label() == r.model));
        // written before the clustering columns: not measured, not zero
        assert!(rows.iter().all(|r| r.scores.cluster_accuracy.is_nan()));
        assert_eq!(rows.iter().filter(|r| r.head == Head::Gram).count(), 6);
    }

    /// A label shown differently does not split a row: rows are matched by
    /// config and head.
    #[test]
    fn rows_are_matched_by_head_not_label() {
        let mut renamed = row("a", 1, 0.95);
        renamed.model = "Gram pooling (renamed)".into();
        let md = markdown("T (x", &[row("a", 0, 0.94), renamed]);
        assert_eq!(
            md.lines().filter(|l| l.starts_with("| Gram")).count(),
            1,
            "{md}"
        );
    }
}
