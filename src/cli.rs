//! The command line: every step of the studio also runs headless.
//!
//! `dtgan-studio` with no arguments opens the studio; each subcommand calls the same library
//! functions as the GUI.

pub mod evaluate;
mod generate;
mod inpaint;
mod model;

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use crate::demo::{DemoConfig, make_demo};
use crate::project::Project;
use crate::project::detect::detect_layout;
use crate::project::export::{ExportFormat, ExportOptions, export_with};
use crate::project::import::{ImportRequest, Layout, import};
use crate::project::masks::derive_box_masks;
use crate::project::stats::ProjectStats;

/// DTGAN Studio: turn a few real defect images into thousands of realistic synthetic ones.
#[derive(Debug, Parser)]
#[command(name = "dtgan-studio", version, about)]
pub struct Cli {
    /// What to do; without a command the studio opens (last project, or the demo on first start).
    #[command(subcommand)]
    pub command: Option<CliCommand>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum CliCommand {
    /// Write the demo project (synthetic OLED panels with exact masks and twins) to a new folder.
    Demo {
        /// Target folder (created; must be empty if it exists).
        #[arg(long)]
        out: PathBuf,
        /// Random seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Image side in pixels.
        #[arg(long)]
        size: Option<u32>,
        /// Defect-free images per product.
        #[arg(long)]
        good_per_group: Option<usize>,
        /// Defect images per class and product (each with its twin).
        #[arg(long)]
        defects_per_class: Option<usize>,
    },
    /// Import images into a project (created if missing).
    Import {
        /// The project folder.
        #[arg(long)]
        project: PathBuf,
        /// Source layout; `auto` recognises it from the folder.
        #[arg(long, value_enum, default_value = "auto")]
        layout: LayoutArg,
        /// Source folder.
        #[arg(long)]
        from: PathBuf,
        /// Folder of pixel masks by stem (DeepPCB: derived_masks/binary).
        #[arg(long)]
        masks: Option<PathBuf>,
        /// Group (product / pattern) for every imported image; default from the data.
        #[arg(long)]
        group: Option<String>,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print counts per role, class, group and status.
    Info {
        /// The project folder.
        #[arg(long)]
        project: PathBuf,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Export the images for training a classifier (ImageFolder) or detector (COCO).
    Export {
        /// The project folder.
        #[arg(long)]
        project: PathBuf,
        /// Output layout.
        #[arg(long, value_enum)]
        format: ExportFormat,
        /// Target folder (created; must be empty if it exists).
        #[arg(long)]
        out: PathBuf,
        /// Leave synthetic defect images out.
        #[arg(long)]
        no_synthetic: bool,
        /// Include templates (defect-free twins) as `good` images.
        #[arg(long)]
        templates: bool,
    },
    /// Mask operations.
    Masks {
        /// The operation.
        #[command(subcommand)]
        op: MasksOp,
    },
    /// Train the defect-transfer GAN on one class of a project.
    Train(model::TrainArgs),
    /// Inpainting: train the model, make defect-free twins, measure fill quality.
    Inpaint {
        /// What to do.
        #[command(subcommand)]
        op: inpaint::InpaintCommand,
    },
    /// Paint new defects into defect-free images with a trained generator.
    Generate(generate::GenerateArgs),
    /// Measure the seams of each composite mode on real pairs.
    Seams(generate::SeamsArgs),
    /// Time training steps per preset and generation per image size.
    Bench(generate::BenchArgs),
    /// The minority-class recall experiment: five training sets, several seeds, a report folder.
    Evaluate(Box<evaluate::EvaluateArgs>),
    /// Open the studio on a project.
    Open {
        /// The project folder.
        dir: PathBuf,
    },
}

/// `--layout` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LayoutArg {
    /// Recognise the layout from the folder.
    Auto,
    /// `good/`, `defect/<class>/`, `masks/<class>/`.
    Folders,
    /// DeepPCB pairs and boxes.
    Deeppcb,
}

/// `masks` subcommands.
#[derive(Debug, Subcommand)]
pub enum MasksOp {
    /// Derive box masks from the pixel masks of every image that has one.
    Boxes {
        /// The project folder.
        #[arg(long)]
        project: PathBuf,
        /// Margin in pixels around each defect region (default: the project's, 8 if unset).
        #[arg(long)]
        margin: Option<u32>,
    },
}

/// A progress bar on stderr (hidden when stderr is not a terminal).
fn progress_bar(message: &'static str) -> ProgressBar {
    let bar = ProgressBar::new(0);
    if let Ok(style) = ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} {elapsed}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message);
    bar
}

fn report(bar: &ProgressBar) -> impl Fn(usize, usize) + Sync + '_ {
    move |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    }
}

/// Runs a headless subcommand (everything but opening the studio).
pub fn run(command: CliCommand) -> anyhow::Result<()> {
    match command {
        CliCommand::Train(args) => model::run_train(&args)?,
        CliCommand::Inpaint { op } => match op {
            inpaint::InpaintCommand::Train(args) => inpaint::run_train(&args)?,
            inpaint::InpaintCommand::Apply(args) => inpaint::run_apply(&args)?,
            inpaint::InpaintCommand::Eval(args) => inpaint::run_eval(&args)?,
        },
        CliCommand::Generate(args) => generate::run_generate(&args)?,
        CliCommand::Seams(args) => generate::run_seams(&args)?,
        CliCommand::Bench(args) => generate::run_bench(&args)?,
        CliCommand::Evaluate(args) => evaluate::run_evaluate(&args)?,
        CliCommand::Demo {
            out,
            seed,
            size,
            good_per_group,
            defects_per_class,
        } => {
            let bar = progress_bar("demo");
            let d = DemoConfig::default();
            let cfg = DemoConfig {
                seed,
                size: size.unwrap_or(d.size),
                good_per_group: good_per_group.unwrap_or(d.good_per_group),
                defects_per_class_per_group: defects_per_class
                    .unwrap_or(d.defects_per_class_per_group),
            };
            let project = make_demo(&out, &cfg, &report(&bar))
                .with_context(|| format!("making the demo project in {}", out.display()))?;
            bar.finish_and_clear();
            let stats = ProjectStats::of(&project.manifest);
            println!(
                "demo project written to {} ({} images)",
                out.display(),
                stats.images
            );
        }
        CliCommand::Import {
            project,
            layout,
            from,
            masks,
            group,
            json,
        } => {
            let (layout, masks) = resolve_layout(layout, &from, masks)?;
            let mut p = Project::open_or_create(&project)?;
            let bar = progress_bar("import");
            let req = ImportRequest {
                layout,
                from: from.clone(),
                masks,
                group,
            };
            let summary = import(&mut p, &req, &report(&bar))
                .with_context(|| format!("importing {}", from.display()))?;
            bar.finish_and_clear();
            if json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                println!("{summary}");
                for s in &summary.skipped {
                    eprintln!("skipped: {}", s.reason);
                }
            }
        }
        CliCommand::Info { project, json } => {
            let p = Project::open(&project)?;
            let stats = ProjectStats::of(&p.manifest);
            if json {
                println!("{}", serde_json::to_string_pretty(&stats)?);
            } else {
                print_info(&p, &stats);
            }
        }
        CliCommand::Export {
            project,
            format,
            out,
            no_synthetic,
            templates,
        } => {
            let p = Project::open(&project)?;
            let options = ExportOptions {
                include_synthetic: !no_synthetic,
                include_templates: templates,
            };
            let bar = progress_bar("export");
            let mut progress = report(&bar);
            let summary = export_with(&p, format, &options, &out, &mut progress)
                .with_context(|| format!("exporting {}", project.display()))?;
            bar.finish_and_clear();
            println!("{summary}");
            for s in &summary.skipped {
                eprintln!("skipped: {}: {}", s.id, s.reason);
            }
        }
        CliCommand::Masks {
            op: MasksOp::Boxes { project, margin },
        } => {
            let mut p = Project::open(&project)?;
            let margin = margin.unwrap_or(p.manifest.box_margin);
            let bar = progress_bar("boxes");
            let n = derive_box_masks(&mut p, margin, &report(&bar))?;
            bar.finish_and_clear();
            println!("{n} box masks written (margin {margin} px)");
        }
        CliCommand::Open { .. } => anyhow::bail!("`open` starts the studio; call it from main"),
    }
    Ok(())
}

fn resolve_layout(
    layout: LayoutArg,
    from: &std::path::Path,
    masks: Option<PathBuf>,
) -> anyhow::Result<(Layout, Option<PathBuf>)> {
    Ok(match layout {
        LayoutArg::Folders => (Layout::Folders, masks),
        LayoutArg::Deeppcb => (Layout::Deeppcb, masks),
        LayoutArg::Auto => {
            let found = detect_layout(from).with_context(|| {
                format!(
                    "{}: cannot tell its layout (expected good/ or defect/<class>/, or pairs/ and boxes/); pass --layout",
                    from.display()
                )
            })?;
            (found.layout, masks.or(found.masks))
        }
    })
}

fn print_info(p: &Project, s: &ProjectStats) {
    println!(
        "{} — {} images ({})",
        p.manifest.name,
        s.images,
        p.root.display()
    );
    let line = |title: &str, map: &std::collections::BTreeMap<String, usize>| {
        let parts: Vec<String> = map.iter().map(|(k, v)| format!("{k} {v}")).collect();
        println!(
            "  {title:<9} {}",
            if parts.is_empty() {
                "-".to_owned()
            } else {
                parts.join(", ")
            }
        );
    };
    line("roles", &s.by_role);
    line("classes", &s.by_class);
    line("groups", &s.by_group);
    line("defects", &s.regions_by_class);
    println!(
        "  status    {} with mask, {} with box, {} with twin",
        s.with_mask, s.with_box, s.with_twin
    );
}
