//! `dtgan-studio`: the studio window, or a headless command (see `--help`).

use std::process::ExitCode;

use clap::Parser;
use dtgan_studio::cli::{Cli, CliCommand, run};
use dtgan_studio::settings::Settings;
use dtgan_studio::ui::app::{StartWith, StudioApp};

fn main() -> ExitCode {
    dtgan_studio::nn::threads::configure_candle_pool();
    dtgan_studio::nn::alloc::tune_allocator();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        None => open_studio(StartWith::LastOrDemo),
        Some(CliCommand::Open { dir }) => {
            if dir.join(dtgan_studio::project::MANIFEST_FILE).is_file() {
                open_studio(StartWith::Project(dir))
            } else {
                Err(anyhow::anyhow!(
                    "{}: not a DTGAN Studio project (no {}); create one with `import` or `demo`",
                    dir.display(),
                    dtgan_studio::project::MANIFEST_FILE
                ))
            }
        }
        Some(command) => {
            quit_quietly_on_closed_pipe();
            run(command)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", dtgan_studio::describe(&e));
            ExitCode::FAILURE
        }
    }
}

/// A headless command whose output is piped into a reader that stops early (`| head`) ends
/// quietly, as Unix tools do, instead of panicking in `println!` (Rust ignores SIGPIPE).
#[allow(unsafe_code)]
fn quit_quietly_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: `signal` only restores the default disposition of SIGPIPE for the process (the
    // kernel ends it on a write to a closed pipe); no handler, so no Rust code runs in one.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn open_studio(start: StartWith) -> anyhow::Result<()> {
    // Model threads yield to the UI thread (see `nn::threads`).
    dtgan_studio::nn::threads::init_model_pool();
    let settings = Settings::from_env();
    let options = eframe::NativeOptions {
        // Layout and pane settings live beside the studio's other files.
        persistence_path: settings.as_ref().map(|s| s.home.join("ui-state.ron")),
        viewport: egui::ViewportBuilder::default()
            .with_title("DTGAN Studio")
            .with_app_id("dtgan-studio")
            .with_inner_size([1400.0, 860.0])
            .with_drag_and_drop(true),
        ..Default::default()
    };
    eframe::run_native(
        "DTGAN Studio",
        options,
        Box::new(move |cc| {
            let app = StudioApp::new(&cc.egui_ctx, cc.storage, start, settings)?;
            Ok(Box::new(app))
        }),
    )
    .map_err(|e| anyhow::anyhow!("cannot open the studio window: {e}"))
}
