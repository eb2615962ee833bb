//! How well the evaluation's classifier separates a dataset's classes when it sees every real
//! training patch: the ceiling for any minor class, with no synthetic data involved. Trains on
//! the patches of every group but the test groups and prints, per seed, the class-balanced
//! accuracy, each class's recall and the confusion matrix.
//!
//! ```sh
//! cargo run --release --example classifier_ceiling -- --data ../shared/data/magnetic_tile \
//!     --cache /tmp/tile-project --test-groups G1,G2,... [--epochs 24] [--seeds 2] [--max-pool]
//! ```

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::{Context, bail};
use candle_core::Device;
use clap::Parser;
use dtgan_studio::dtgan::config::Preset;
use dtgan_studio::eval::classifier::{Classifier, Example};
use dtgan_studio::eval::experiment::{EvalConfig, open_data, parse_groups};
use dtgan_studio::eval::metrics::{Confusion, MeanSd};
use dtgan_studio::eval::patches::{Selection, project_patches};

#[derive(Parser)]
struct Args {
    /// A project, or a folder in an import layout.
    #[arg(long)]
    data: PathBuf,
    /// Where a folder in an import layout is imported (reused when there).
    #[arg(long)]
    cache: PathBuf,
    /// Groups to test on (comma-separated); the classifier trains on all the others.
    #[arg(long)]
    test_groups: String,
    /// Passes over the training set (the `cpu` preset's: 24).
    #[arg(long, default_value_t = 24)]
    epochs: usize,
    /// Classifiers trained, one per seed.
    #[arg(long, default_value_t = 2)]
    seeds: u64,
    /// Pool the last features by their maximum as well as their mean.
    #[arg(long)]
    max_pool: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let project = open_data(&args.data, &args.cache)?;
    let test: BTreeSet<String> = parse_groups(&args.test_groups).into_iter().collect();
    let all = project_patches(&project, &Selection::default(), 1)?;
    let classes: Vec<String> = all
        .iter()
        .map(|p| p.class.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let label = |c: &str| classes.iter().position(|x| x == c).unwrap_or(0);
    let train: Vec<Example> = all
        .iter()
        .filter(|p| !test.contains(&p.group))
        .map(|p| Example {
            patch: p.pixels.clone(),
            label: label(&p.class),
        })
        .collect();
    let tests: Vec<_> = all.iter().filter(|p| test.contains(&p.group)).collect();
    if train.is_empty() || tests.is_empty() {
        bail!(
            "{}: {} training and {} test patches; check --test-groups",
            args.data.display(),
            train.len(),
            tests.len()
        );
    }
    println!(
        "classes {classes:?}, {} training and {} test patches",
        train.len(),
        tests.len()
    );
    let mut cfg = EvalConfig::preset(Preset::Cpu).classifier;
    cfg.epochs = args.epochs;
    cfg.max_pool = args.max_pool;
    let n = classes.len();
    let patches: Vec<_> = tests.iter().map(|p| &p.pixels).collect();
    let truth: Vec<usize> = tests.iter().map(|p| label(&p.class)).collect();
    let mut balanced = Vec::new();
    for seed in 0..args.seeds {
        let start = std::time::Instant::now();
        let net = Classifier::train(n, &train, &cfg, seed, &Device::Cpu, &mut |_, _, _| true)
            .map_err(anyhow::Error::msg)
            .context("training the classifier")?;
        let confusion = Confusion::from_pairs(n, &truth, &net.predict_dihedral(&patches)?);
        let b = confusion.balanced_accuracy();
        balanced.push(b);
        println!(
            "seed {seed}: balanced accuracy {b:.3}, recall {:?} ({:.0} s)",
            (0..n)
                .map(|c| confusion
                    .recall(c)
                    .map_or("n/a".into(), |r| format!("{r:.2}")))
                .collect::<Vec<_>>(),
            start.elapsed().as_secs_f64()
        );
        for row in &confusion.counts {
            println!("    {row:?}");
        }
    }
    println!("balanced accuracy over the seeds {}", MeanSd::of(&balanced));
    Ok(())
}
