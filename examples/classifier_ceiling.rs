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
use dtgan_studio::eval::classifier::{Classifier, ClassifierConfig, Example};
use dtgan_studio::eval::experiment::open_data;
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
    let test: BTreeSet<String> = args
        .test_groups
        .split(',')
        .map(|g| g.trim().to_string())
        .collect();
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
    let cfg = ClassifierConfig {
        width: 12,
        epochs: args.epochs,
        batch_size: 32,
        lr: 1e-2,
        balanced: false,
        tta: true,
        max_pool: args.max_pool,
    };
    let n = classes.len();
    let mut balanced = Vec::new();
    for seed in 0..args.seeds {
        let start = std::time::Instant::now();
        let net = Classifier::train(n, &train, &cfg, seed, &Device::Cpu, &mut |_, _, _| true)
            .map_err(anyhow::Error::msg)
            .context("training the classifier")?;
        let patches: Vec<_> = tests.iter().map(|p| &p.pixels).collect();
        let predicted = net.predict_dihedral(&patches)?;
        let mut confusion = vec![vec![0usize; n]; n];
        for (p, &guess) in tests.iter().zip(&predicted) {
            confusion[label(&p.class)][guess] += 1;
        }
        let recall: Vec<f64> = confusion
            .iter()
            .enumerate()
            .map(|(i, row)| row[i] as f64 / row.iter().sum::<usize>().max(1) as f64)
            .collect();
        let b = recall.iter().sum::<f64>() / n as f64;
        balanced.push(b);
        println!(
            "seed {seed}: balanced accuracy {b:.3}, recall {:?} ({:.0} s)",
            recall.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>(),
            start.elapsed().as_secs_f64()
        );
        for row in &confusion {
            println!("    {row:?}");
        }
    }
    println!(
        "mean balanced accuracy {:.3}",
        balanced.iter().sum::<f64>() / balanced.len() as f64
    );
    Ok(())
}
