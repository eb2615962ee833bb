//! The report folder: `results.json` (everything, machine-readable), `report.md` (the tables)
//! and `plot.png` (the bar chart). Each file is written atomically.

use std::fmt::Write as _;
use std::path::Path;

use super::experiment::{DID_NOT_LEARN, EvalError, EvalResults};
use super::metrics::MeanSd;

/// File names in the report folder.
pub const RESULTS: &str = "results.json";
/// The Markdown report.
pub const REPORT: &str = "report.md";
/// The chart.
pub const PLOT: &str = "plot.png";

fn write(path: &Path, bytes: &[u8]) -> Result<(), EvalError> {
    crate::fsutil::write_atomic(path, bytes).map_err(|source| EvalError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes the three files into `dir`.
pub fn write_report(dir: &Path, r: &EvalResults) -> Result<(), EvalError> {
    let json = serde_json::to_vec_pretty(r).map_err(|e| EvalError::Data(e.to_string()))?;
    write(&dir.join(RESULTS), &json)?;
    write(&dir.join(REPORT), markdown(r).as_bytes())?;
    let png =
        crate::imaging::io::encode_png(&image::DynamicImage::ImageRgb8(super::plot::render(r)))
            .map_err(|e| EvalError::Data(format!("{}: {e}", dir.join(PLOT).display())))?;
    write(&dir.join(PLOT), &png)
}

/// Reads a report folder's `results.json`.
pub fn read_results(dir: &Path) -> Result<EvalResults, EvalError> {
    let path = dir.join(RESULTS);
    let text = std::fs::read_to_string(&path).map_err(|source| EvalError::Io {
        path: path.clone(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| EvalError::Data(format!("{}: {e}", path.display())))
}

fn counts(m: &std::collections::BTreeMap<String, usize>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The Markdown report.
pub fn markdown(r: &EvalResults) -> String {
    let mut s = String::new();
    let d = &r.data;
    let _ = writeln!(s, "# Minority-class recall: {}\n", r.minor);
    let _ = writeln!(
        s,
        "A {}-class patch classifier ({}) trained five ways, {} seeds each, and tested on `{}`{}.\n",
        r.classes.len(),
        r.classes.join(", "),
        r.seeds,
        d.test.display(),
        if d.test_groups.is_empty() {
            String::new()
        } else {
            format!(" (groups {})", groups(&d.test_groups))
        }
    );
    let _ = writeln!(
        s,
        "| case | training set | minor-class patches | recall | precision | accuracy |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|");
    for c in &r.cases {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            c.case,
            if c.negatives > 0 {
                format!("{} (+ {} paired negatives)", c.name, c.negatives)
            } else {
                c.name.clone()
            },
            c.minor_train,
            c.recall,
            if c.precision.n < c.per_seed.len() && c.precision.n > 0 {
                format!(
                    "{} ({} of {} seeds)",
                    c.precision,
                    c.precision.n,
                    c.per_seed.len()
                )
            } else {
                c.precision.to_string()
            },
            c.accuracy
        );
    }
    let _ = writeln!(
        s,
        "\nMean ± sample standard deviation over the seeds. Recall and precision are the minor \
         class's; precision and accuracy weight every test class equally (each confusion-matrix \
         row scaled to the same total), so they do not depend on the test set's class sizes. \
         \"n/a\": the classifier never predicted the class.\n"
    );
    let failed: Vec<String> = r
        .cases
        .iter()
        .flat_map(|c| &c.per_seed)
        .filter(|x| x.did_not_learn())
        .map(|x| {
            format!(
                "case {} seed {} (training loss {:.2}, guessing {:.2})",
                x.case,
                x.seed,
                x.train_loss.unwrap_or(f64::NAN),
                x.guessing_loss.unwrap_or(f64::NAN)
            )
        })
        .collect();
    if !failed.is_empty() {
        let _ = writeln!(
            s,
            "**Classifier trainings that did not learn** (the last epoch's training loss above \
             {DID_NOT_LEARN} of the loss of guessing by class frequency: the training diverged; \
             their scores count in the means above): {}.\n",
            failed.join("; ")
        );
    }
    let _ = writeln!(s, "![recall and precision per case]({})\n", PLOT);
    let q = &r.realism;
    let _ = writeln!(s, "## Realism of the synthetic {} patches\n", r.minor);
    let _ = writeln!(s, "| score | value |");
    let _ = writeln!(s, "|---|---|");
    let _ = writeln!(
        s,
        "| C2ST accuracy (real test vs synthetic, {} + {} held out; 0.5 = indistinguishable) | {} |",
        q.c2st_patches - q.c2st_patches / 2,
        q.c2st_patches - q.c2st_patches / 2,
        q.c2st_accuracy
    );
    let _ = writeln!(
        s,
        "| KID, real test vs synthetic | {} |",
        kid_cell(&q.kid_synthetic)
    );
    let _ = writeln!(
        s,
        "| KID, real test vs classical augmentation of the K real | {} |",
        kid_cell(&q.kid_augmented)
    );
    let _ = writeln!(
        s,
        "| KID, real test vs other defect classes (a different defect) | {} |",
        kid_cell(&q.kid_other_classes)
    );
    let _ = writeln!(
        s,
        "\nKID is computed on the penultimate features of the case (b) classifier (trained on \
         real images only), not on Inception features: no pretrained network is available \
         offline. Lower is closer; values are comparable only within this table.\n"
    );
    let _ = writeln!(s, "## Setup\n");
    let _ = writeln!(
        s,
        "- Mode: **{}**. {}",
        d.mode,
        if d.mode == "few-shot" {
            format!(
                "The data has no source groups, so the DTGAN learned {} from the K = {} real images alone.",
                r.minor, r.k
            )
        } else {
            format!(
                "The DTGAN learned {} in groups {} and painted it into defect-free images of the target groups {}.",
                r.minor,
                groups(&d.source_groups),
                groups(&d.target_groups)
            )
        }
    );
    let _ = writeln!(
        s,
        "- DTGAN: {} training pairs; twins: {}; {} steps (`{}`).",
        d.dtgan_pairs,
        d.twins,
        r.dtgan_steps,
        r.dtgan_run.display()
    );
    let _ = writeln!(
        s,
        "- Classifier groups: {}; test groups: {}.",
        groups(&d.target_groups),
        if d.test_groups.is_empty() {
            "all of the test data".to_string()
        } else {
            groups(&d.test_groups)
        }
    );
    let _ = writeln!(
        s,
        "- Training patches per class (before the minor class is cut to K = {}; other classes capped at {}): {}.",
        r.k,
        r.config.max_per_class,
        counts(&d.train_counts)
    );
    let _ = writeln!(s, "- Test patches per class: {}.", counts(&d.test_counts));
    let _ = writeln!(
        s,
        "- Synthetic and augmented patches: {} each; drawn once (master seed {}) and shared by every seed. Synthetic patches take the generated pixels of composite `{}`.",
        r.synthetic, r.seed, r.config.composite
    );
    if r.config.paired_negatives {
        let pairs = r.cases.iter().map(|c| c.negatives).max().unwrap_or(0);
        let which = match r.config.paired_negatives_max {
            Some(m) if m < r.synthetic => format!(
                "the defect-free patches under {m} of the synthetic defects, spread evenly over them, cut before painting, join"
            ),
            _ => "the defect-free patch under each synthetic defect, cut before painting, joins"
                .to_owned(),
        };
        let _ = writeln!(
            s,
            "- Paired negatives: {which} the `good` class of cases c and d ({pairs} patches).",
        );
    }
    let y = &d.synthesis;
    let _ = match y.worst_match {
        Some(worst) => writeln!(
            s,
            "- Placement: {} candidate places matched against the real defects' surroundings; the best-matching were painted (largest mismatch used {:.3} of full scale); {} painted; skipped: {} fainter than half the real defect, {} that changed the pattern's connected parts, or turned its pixels, otherwise than the real defect ({}){}.",
            y.candidates,
            worst,
            y.painted,
            y.faint,
            y.other_effect,
            if r.config.same_effect {
                "checked"
            } else {
                "not checked: `--same-effect false`"
            },
            if y.faint_used > 0 {
                format!(" (but {} of them used: too few good ones)", y.faint_used)
            } else {
                String::new()
            }
        ),
        None => writeln!(
            s,
            "- Placement: random (no real or inpainted twin to match; a box filled by blending is \
             no guide); {} painted.",
            y.painted
        ),
    };
    let c = &r.config.classifier;
    let _ = writeln!(
        s,
        "- Classifier: residual CNN, width {}, {}, {} epochs, batch {}, Adam lr {}, {}; {}; preset `{}`.",
        c.width,
        if c.max_pool {
            "features pooled by their mean and maximum"
        } else {
            "features pooled by their mean"
        },
        c.epochs,
        c.batch_size,
        c.lr,
        if c.balanced {
            "class-balanced loss (each class weighted by n / (classes x its count))"
        } else {
            "unweighted loss"
        },
        if c.tta {
            "predictions from the mean probabilities of each test patch's 8 flips and quarter turns"
        } else {
            "predictions from each test patch as it is"
        },
        r.config.preset.name()
    );
    let t = &r.timing;
    let _ = writeln!(
        s,
        "- Time: {:.1} min in all (data {:.0} s, DTGAN {:.1} min, synthesis {:.0} s, classifiers {:.1} min, realism {:.0} s).",
        t.total_s / 60.0,
        t.data_s,
        t.dtgan_s / 60.0,
        t.synthesis_s,
        t.classifiers_s / 60.0,
        t.realism_s
    );
    let _ = writeln!(
        s,
        "- Patches: `patches/synthetic/`, `patches/augmented/`, `patches/real-k/`."
    );
    s
}

/// A group list, shortened to its first few names and a count when long.
fn groups(g: &[String]) -> String {
    if g.len() <= 8 {
        g.join(", ")
    } else {
        format!("{}, ... ({} groups)", g[..6].join(", "), g.len())
    }
}

fn kid_cell(s: &MeanSd) -> String {
    if s.mean.is_nan() {
        "n/a".into()
    } else {
        format!("{:.4} ± {:.4}", s.mean, s.sd)
    }
}
