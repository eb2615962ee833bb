//! `evaluate`: the minority-class recall experiment, headless.

use std::path::PathBuf;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};

use crate::dtgan::Preset;
use crate::dtgan::generate::Composite;
use crate::dtgan::run::TrainControl;
use crate::eval::experiment::{EvalConfig, EvalEvent, EvalRequest, evaluate, parse_groups};
use crate::nn::device::DeviceChoice;

/// `evaluate` arguments.
#[derive(Debug, clap::Args)]
pub struct EvaluateArgs {
    /// Training data: a project, or a folder in an import layout (DeepPCB, folders).
    #[arg(long)]
    pub train: PathBuf,
    /// Test data: a project or import-layout folder no model has seen (may be --train's folder
    /// with --test-groups, or with neither group list to hold out about 30 % of the groups).
    #[arg(long)]
    pub test: PathBuf,
    /// The minor (rare) class.
    #[arg(long)]
    pub minor: String,
    /// The report folder (results.json, report.md, plot.png).
    #[arg(long)]
    pub out: PathBuf,
    /// Real minor-class images the classifier may see.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// Synthetic (and augmented) minor-class images [default: 40 x K].
    #[arg(long)]
    pub synthetic: Option<usize>,
    /// Classifier trainings per case.
    #[arg(long, default_value_t = 5)]
    pub seeds: usize,
    /// Model sizes: tiny (tests), cpu, paper.
    #[arg(long, value_enum, default_value = "cpu")]
    pub preset: Preset,
    /// Stop the DTGAN's training after this many minutes (with a checkpoint).
    #[arg(long)]
    pub max_minutes: Option<f64>,
    /// DTGAN steps [default: the preset's].
    #[arg(long)]
    pub dtgan_steps: Option<u64>,
    /// At most this many training patches per class besides the minor one [default: the
    /// preset's: 300 for `cpu`]. More make a stronger classifier and a slower evaluation.
    #[arg(long)]
    pub max_per_class: Option<usize>,
    /// Passes of each classifier over its training set [default: the preset's: 24 for `cpu`].
    #[arg(long)]
    pub classifier_epochs: Option<usize>,
    /// Use this trained DTGAN instead of training one: a run folder (its best checkpoint, as
    /// `generate` takes it) or a checkpoint file. An evaluation's own DTGAN paints with its last
    /// checkpoint, so to reuse it exactly give `OUT/dtgan/last.safetensors`.
    #[arg(long)]
    pub dtgan: Option<PathBuf>,
    /// Training groups the DTGAN learns the minor class from; the classifier never sees them
    /// (comma-separated). Without them the DTGAN learns from the K real images (few-shot).
    #[arg(long)]
    pub source_groups: Option<String>,
    /// Only these groups of --train (comma-separated).
    #[arg(long)]
    pub train_groups: Option<String>,
    /// Only these groups of --test (comma-separated).
    #[arg(long)]
    pub test_groups: Option<String>,
    /// Train the classifiers with a class-balanced loss (each class weighted by n / (classes x
    /// its count)); the default is the plain loss, which recalled the minor class better on
    /// DeepPCB at no cost in precision (README).
    #[arg(long)]
    pub balanced_loss: bool,
    /// Classify each test patch by the mean class probabilities of its eight flips and quarter
    /// turns (test-time augmentation: `true`) or by the patch alone (`false`) [default: the
    /// preset's: `true` for `cpu` and `paper`].
    #[arg(long)]
    pub tta: Option<bool>,
    /// Pool the classifier's last features by their maximum as well as their mean (`true`):
    /// a defect covering a few pixels of its patch (a blowhole in a tile's grain) is not
    /// averaged away [default: false].
    #[arg(long)]
    pub max_pool: Option<bool>,
    /// Which pixels of each generated tile a synthetic patch takes: none (the whole tile), mask,
    /// or dilated:K (the mask grown by K pixels).
    #[arg(long, default_value_t = Composite::default())]
    pub composite: Composite,
    /// Candidate places drawn per synthetic defect where the real defects have twins; the
    /// best-matching of them are painted, so more candidates mean closer matches (and less
    /// varied places) [default: 12].
    #[arg(long)]
    pub candidates: Option<usize>,
    /// Where the pattern is two-level (printed circuits), skip a synthetic defect that changes
    /// the pattern's connected parts otherwise than the real defect it copies did (a short
    /// that stops short of the second trace, an open that leaves a bridge), or turns the pixels
    /// under its mask the other way (a spur that bites instead of adding copper)
    /// [default: true].
    #[arg(long)]
    pub same_effect: Option<bool>,
    /// Also train the synthetic cases (c, d) on the defect-free patch under each synthetic
    /// defect, as a `good` patch: each place is seen with and without the defect, so the
    /// classifier cannot take the kind of place for the defect [default: true].
    #[arg(long)]
    pub paired_negatives: Option<bool>,
    /// At most N paired negatives, spread evenly over the synthetic defects [default: one per
    /// synthetic defect]. Where the `good` class has few patches, fewer pairs keep more of the
    /// minor class's recall.
    #[arg(long, value_name = "N")]
    pub paired_negatives_max: Option<usize>,
    /// Master seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Compute device.
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceChoice,
    /// Print results.json on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
}

impl EvaluateArgs {
    /// The request these arguments describe.
    pub fn request(&self) -> EvalRequest {
        let mut config = EvalConfig::preset(self.preset);
        if let Some(s) = self.dtgan_steps {
            config.dtgan.steps = s;
        }
        config.classifier.balanced = self.balanced_loss;
        if let Some(tta) = self.tta {
            config.classifier.tta = tta;
        }
        if let Some(m) = self.max_pool {
            config.classifier.max_pool = m;
        }
        if let Some(n) = self.max_per_class {
            config.max_per_class = n;
        }
        if let Some(e) = self.classifier_epochs {
            config.classifier.epochs = e;
        }
        config.composite = self.composite;
        if let Some(n) = self.candidates {
            config.candidates = n;
        }
        if let Some(on) = self.same_effect {
            config.same_effect = on;
        }
        if let Some(on) = self.paired_negatives {
            config.paired_negatives = on;
        }
        if let Some(n) = self.paired_negatives_max {
            config.paired_negatives_max = Some(n);
        }
        EvalRequest {
            train: self.train.clone(),
            test: self.test.clone(),
            train_groups: self
                .train_groups
                .as_deref()
                .map(parse_groups)
                .unwrap_or_default(),
            test_groups: self
                .test_groups
                .as_deref()
                .map(parse_groups)
                .unwrap_or_default(),
            source_groups: self
                .source_groups
                .as_deref()
                .map(parse_groups)
                .unwrap_or_default(),
            minor: self.minor.clone(),
            k: self.k,
            synthetic: self.synthetic,
            seeds: self.seeds,
            seed: self.seed,
            config,
            max_minutes: self.max_minutes,
            dtgan_run: self.dtgan.clone(),
            out: self.out.clone(),
            device: self.device,
        }
    }
}

/// Runs `evaluate` with a progress bar on stderr and the table (or JSON) on stdout.
pub fn run_evaluate(args: &EvaluateArgs) -> anyhow::Result<()> {
    let req = args.request();
    let bar = ProgressBar::new(0);
    if let Ok(style) = ProgressStyle::with_template("{msg:50} [{bar:25}] {pos}/{len} {elapsed}") {
        bar.set_style(style.progress_chars("=> "));
    }
    // Without a terminal (a log file) the bar is hidden: stages and results still go to stderr.
    let say = |line: String| {
        if bar.is_hidden() {
            eprintln!("{line}");
        } else {
            bar.println(line);
        }
    };
    let control = TrainControl::new();
    let results = evaluate(&req, &control, &mut |ev| match ev {
        EvalEvent::Stage(s) => {
            say(s.clone());
            bar.set_message(s);
            bar.set_position(0);
        }
        EvalEvent::Progress { done, total } => {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        }
        EvalEvent::CaseDone(r) => say(format!(
            "  case {} seed {}: recall {:.3}, precision {}, accuracy {:.3}{}",
            r.case,
            r.seed,
            r.recall,
            r.precision.map_or("n/a".into(), |p| format!("{p:.3}")),
            r.accuracy,
            match (r.did_not_learn(), r.train_loss, r.guessing_loss) {
                (true, Some(t), Some(g)) => format!(
                    " (the classifier did not learn: training loss {t:.2}, guessing {g:.2})"
                ),
                _ => String::new(),
            }
        )),
    })
    .with_context(|| format!("evaluating {} into {}", args.minor, args.out.display()))?;
    bar.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        println!(
            "case  training set                       minor  recall          precision       accuracy"
        );
        for c in &results.cases {
            println!(
                "{:<5} {:<34} {:>5}  {:<15} {:<15} {}",
                c.case,
                c.name,
                c.minor_train,
                c.recall.to_string(),
                c.precision.to_string(),
                c.accuracy
            );
        }
        let q = &results.realism;
        println!(
            "C2ST accuracy {} (0.5 = indistinguishable); KID synthetic {}, augmented {}, other classes {}",
            q.c2st_accuracy, q.kid_synthetic, q.kid_augmented, q.kid_other_classes
        );
        println!(
            "report: {}",
            args.out.join(crate::eval::report::REPORT).display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use crate::cli::{Cli, CliCommand};

    fn request(extra: &[&str]) -> crate::eval::experiment::EvalRequest {
        let mut args = vec![
            "dtgan-studio",
            "evaluate",
            "--train",
            "t",
            "--test",
            "t",
            "--minor",
            "open",
            "--out",
            "o",
        ];
        args.extend_from_slice(extra);
        match Cli::try_parse_from(args).expect("arguments parse").command {
            Some(CliCommand::Evaluate(a)) => a.request(),
            other => panic!("not evaluate: {other:?}"),
        }
    }

    #[test]
    fn the_plain_loss_is_the_default_and_balanced_loss_is_asked_for() {
        assert!(!request(&[]).config.classifier.balanced);
        assert!(request(&["--balanced-loss"]).config.classifier.balanced);
        let r = request(&["--dtgan-steps", "77", "--source-groups", "a, b"]);
        assert_eq!(r.config.dtgan.steps, 77);
        assert_eq!(r.source_groups, ["a", "b"]);
    }

    #[test]
    fn mean_pooling_is_the_default_and_max_pooling_is_asked_for() {
        assert!(!request(&[]).config.classifier.max_pool);
        assert!(request(&["--max-pool", "true"]).config.classifier.max_pool);
        assert!(!request(&["--max-pool", "false"]).config.classifier.max_pool);
    }

    #[test]
    fn paired_negatives_are_the_default_and_can_be_turned_off() {
        assert!(request(&[]).config.paired_negatives);
        assert!(
            !request(&["--paired-negatives", "false"])
                .config
                .paired_negatives
        );
        assert!(
            request(&["--paired-negatives", "true"])
                .config
                .paired_negatives
        );
        assert_eq!(request(&[]).config.paired_negatives_max, None);
        assert_eq!(
            request(&["--paired-negatives-max", "100"])
                .config
                .paired_negatives_max,
            Some(100)
        );
    }
}
