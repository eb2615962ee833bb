//! The training monitor: configuration form with presets, Start / Pause / Resume / Stop, loss
//! curves (EMA smoothing, log axis), the sample grid of every logged step, speed and ETA, the
//! run's checkpoints with "use for generation", and opening a run folder, which is followed live
//! while another process (a headless `train` on a GPU server) writes it.

use std::path::{Path, PathBuf};

use egui_plot::{Legend, Line, Plot, PlotPoints};

use super::PaneContext;
use super::picker::{FolderPicker, typed_folder};
use crate::dtgan::run::{RunDir, RunKind, StepMetrics, StopReason, TrainEvent, TrainOutcome};
use crate::dtgan::train::TrainRequest;
use crate::dtgan::{Preset, TrainConfig};
use crate::inpaint::config::InpaintConfig;
use crate::inpaint::train::InpaintTrainRequest;
use crate::nn::device::DeviceChoice;
use crate::protocol::{Command, TrainingControl};

/// Reads one curve's value from a metrics line.
type Getter = fn(&StepMetrics) -> Option<f64>;

/// The curves, by name, and how to read each from a metrics line.
const SERIES: [(&str, Getter); 8] = [
    ("L1 inside", |m| Some(m.l1_inside)),
    ("L1 outside", |m| Some(m.l1_outside)),
    ("val L1 inside", |m| m.val_l1_inside),
    ("val box error", |m| m.val_box_error),
    ("generator loss", |m| Some(m.loss_g)),
    ("critic loss", |m| Some(m.loss_d)),
    ("Wasserstein", |m| Some(m.wasserstein)),
    ("GAN term", |m| Some(m.l_gan)),
];

/// Where the run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    /// Nothing running.
    Idle,
    /// Start was sent; waiting for the first event.
    Starting,
    /// Training.
    Running,
    /// Paused between steps.
    Paused,
}

/// The training monitor pane.
pub struct TrainingPane {
    kind: RunKind,
    /// Inpainting: the group to train on (empty: every group).
    group: String,
    /// Inpainting: learn from that group's defect images too, away from their defects.
    defect_context: bool,
    class: String,
    preset: Preset,
    steps: u64,
    max_minutes: f64,
    run_dir: String,
    resume: bool,
    state: RunState,
    run: Option<PathBuf>,
    metrics: Vec<StepMetrics>,
    samples: Vec<(u64, PathBuf)>,
    total_steps: u64,
    ema: f32,
    log_y: bool,
    shown: [bool; SERIES.len()],
    sample_index: usize,
    sample_texture: Option<(PathBuf, egui::TextureHandle)>,
    generation_choice: Option<PathBuf>,
    picker: FolderPicker<()>,
    message: String,
}

impl Default for TrainingPane {
    fn default() -> Self {
        Self::new()
    }
}

impl TrainingPane {
    /// An idle pane with the `cpu` preset.
    pub fn new() -> Self {
        let cfg = TrainConfig::preset(Preset::Cpu);
        Self {
            kind: RunKind::Dtgan,
            group: String::new(),
            defect_context: false,
            class: String::new(),
            preset: Preset::Cpu,
            steps: cfg.steps,
            max_minutes: 0.0,
            run_dir: String::new(),
            resume: false,
            state: RunState::Idle,
            run: None,
            metrics: Vec::new(),
            samples: Vec::new(),
            total_steps: 0,
            ema: 0.6,
            log_y: true,
            shown: [true, true, true, true, false, false, false, false],
            sample_index: 0,
            sample_texture: None,
            generation_choice: None,
            picker: FolderPicker::default(),
            message: String::new(),
        }
    }

    /// Where the run is.
    pub fn state(&self) -> RunState {
        self.state
    }

    /// The metrics lines received or loaded.
    pub fn metrics(&self) -> &[StepMetrics] {
        &self.metrics
    }

    /// The points of a curve as plotted (after smoothing), e.g. `"L1 inside"`.
    pub fn series(&self, name: &str) -> Vec<[f64; 2]> {
        SERIES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, get)| smooth(&self.metrics, *get, self.ema))
            .unwrap_or_default()
    }

    /// The checkpoint chosen with "use for generation", once.
    pub fn take_generation_choice(&mut self) -> Option<PathBuf> {
        self.generation_choice.take()
    }

    /// News from the running training.
    pub fn on_event(&mut self, ev: TrainEvent) {
        match ev {
            TrainEvent::Started {
                run, step, steps, ..
            } => {
                if self.run.as_ref() != Some(&run) {
                    self.metrics.clear();
                    self.samples.clear();
                }
                self.metrics.retain(|m| m.step <= step);
                self.run = Some(run);
                self.total_steps = steps;
                self.state = RunState::Running;
                self.message = format!("training from step {step} to {steps}");
            }
            TrainEvent::Metrics(m) => {
                if self.metrics.last().is_none_or(|l| l.step < m.step) {
                    self.metrics.push(m);
                }
            }
            TrainEvent::Sample { step, path } => {
                let follow = self.sample_index + 1 >= self.samples.len();
                self.samples.push((step, path));
                if follow {
                    self.sample_index = self.samples.len() - 1;
                }
            }
            TrainEvent::Checkpoint { step, .. } => {
                self.message = format!("checkpoint at step {step}");
            }
            TrainEvent::Paused { .. } => self.state = RunState::Paused,
            TrainEvent::Resumed { .. } => self.state = RunState::Running,
        }
    }

    /// The training thread ended.
    pub fn on_ended(&mut self, result: &Result<TrainOutcome, String>) {
        self.state = RunState::Idle;
        self.message = match result {
            Ok(o) => {
                let why = match o.reason {
                    StopReason::Finished => "finished",
                    StopReason::Stopped => "stopped",
                    StopReason::TimeLimit => "reached its time limit",
                };
                format!("{why} at step {}", o.step)
            }
            Err(e) => format!("failed: {e}"),
        };
    }

    /// A past run's files were read.
    pub fn on_run_loaded(
        &mut self,
        run: PathBuf,
        metrics: Vec<StepMetrics>,
        samples: Vec<(u64, PathBuf)>,
        kind: RunKind,
    ) {
        if self.state != RunState::Idle && self.run.as_ref() != Some(&run) {
            return;
        }
        self.kind = kind;
        // A followed run reloads as it grows: keep the sample the user went back to.
        let same = self.run.as_ref() == Some(&run);
        let at_end = self.sample_index + 1 >= self.samples.len();
        self.total_steps = metrics.last().map_or(0, |m| m.step);
        self.message = match metrics.last() {
            Some(m) => format!("watching {}: step {}", run.display(), m.step),
            None => format!("watching {}: no step logged yet", run.display()),
        };
        self.run = Some(run);
        self.metrics = metrics;
        self.samples = samples;
        if !same || at_end || self.sample_index >= self.samples.len() {
            self.sample_index = self.samples.len().saturating_sub(1);
        }
    }

    fn groups(cx: &PaneContext) -> Vec<String> {
        let mut groups: Vec<String> = cx
            .project
            .map(|p| p.manifest.images.iter().map(|e| e.group.clone()).collect())
            .unwrap_or_default();
        groups.sort();
        groups.dedup();
        groups
    }

    fn default_run_dir(&self, project: &Path) -> PathBuf {
        let name = match self.kind {
            RunKind::Dtgan => format!("{}-{}", self.class, self.preset.name()),
            RunKind::Inpaint => {
                let g = if self.group.is_empty() {
                    "all"
                } else {
                    &self.group
                };
                format!("inpaint-{g}-{}", self.preset.name())
            }
        };
        let base = project.join("runs").join(name);
        (1..)
            .map(|i| {
                if i == 1 {
                    base.clone()
                } else {
                    PathBuf::from(format!("{}-{i}", base.display()))
                }
            })
            .find(|p| !p.exists())
            .unwrap_or(base)
    }

    fn start(&mut self, cx: &mut PaneContext) {
        let Some(project) = cx.project else {
            cx.status.error("open a project first");
            return;
        };
        if self.kind == RunKind::Dtgan && self.class.is_empty() {
            cx.status.error("choose a defect class to train");
            return;
        }
        let run =
            typed_folder(&self.run_dir).unwrap_or_else(|| self.default_run_dir(&project.root));
        let max_minutes = (self.max_minutes > 0.0).then_some(self.max_minutes);
        let cmd = match self.kind {
            RunKind::Dtgan => {
                let mut config = TrainConfig::preset(self.preset);
                config.steps = self.steps;
                Command::StartTraining(Box::new(TrainRequest {
                    project: project.root.clone(),
                    class: self.class.clone(),
                    run: run.clone(),
                    config,
                    resume: self.resume,
                    max_minutes,
                    device: DeviceChoice::Auto,
                }))
            }
            RunKind::Inpaint => {
                let mut config = InpaintConfig::preset(self.preset);
                config.steps = self.steps;
                let groups = if self.group.is_empty() {
                    Vec::new()
                } else {
                    vec![self.group.clone()]
                };
                Command::StartInpaintTraining(Box::new(InpaintTrainRequest {
                    context: self.defect_context.then(|| groups.clone()),
                    project: project.root.clone(),
                    groups,
                    run: run.clone(),
                    config,
                    resume: self.resume,
                    max_minutes,
                    device: DeviceChoice::Auto,
                    init_from: None,
                }))
            }
        };
        if cx.commands.send(cmd).is_err() {
            cx.status.error("the worker is busy; try again");
            return;
        }
        self.run_dir = run.display().to_string();
        self.state = RunState::Starting;
        self.message = format!("starting {}", run.display());
    }

    fn control(&mut self, cx: &mut PaneContext, c: TrainingControl) {
        if cx.commands.send(Command::ControlTraining(c)).is_err() {
            cx.status.error("the worker is busy; try again");
        }
    }

    /// Draws the pane.
    pub fn ui(&mut self, ui: &mut egui::Ui, cx: &mut PaneContext) {
        if let Some(((), dir)) = self.picker.poll() {
            let _ = cx.commands.send(Command::LoadRun(dir));
        }
        self.form(ui, cx);
        ui.separator();
        self.progress_line(ui);
        ui.separator();
        let height = ui.available_height();
        ui.columns(2, |cols| {
            self.plot(&mut cols[0], height);
            self.sample_view(&mut cols[1]);
        });
    }

    fn form(&mut self, ui: &mut egui::Ui, cx: &mut PaneContext) {
        let idle = self.state == RunState::Idle;
        ui.horizontal_wrapped(|ui| {
            ui.add_enabled_ui(idle, |ui| {
                let kind_before = self.kind;
                egui::ComboBox::from_label("network")
                    .selected_text(kind_name(self.kind))
                    .show_ui(ui, |ui| {
                        for k in [RunKind::Dtgan, RunKind::Inpaint] {
                            ui.selectable_value(&mut self.kind, k, kind_name(k));
                        }
                    });
                match self.kind {
                    RunKind::Dtgan => {
                        super::class_picker(ui, &mut self.class, &super::project_classes(cx));
                    }
                    RunKind::Inpaint => {
                        let groups = Self::groups(cx);
                        let shown = if self.group.is_empty() {
                            "all groups".to_string()
                        } else {
                            self.group.clone()
                        };
                        egui::ComboBox::from_label("group")
                            .selected_text(shown)
                            .show_ui(ui, |ui| {
                                ui.selectable_value(&mut self.group, String::new(), "all groups");
                                for g in groups {
                                    ui.selectable_value(&mut self.group, g.clone(), g);
                                }
                            });
                        ui.checkbox(&mut self.defect_context, "learn from defect images too")
                            .on_hover_text(
                                "Also cut training crops from the group's defect images, away \
                                 from their defects (no crop touches a defect's box grown by \
                                 8 px): the model fits the boards or products it will fill, and \
                                 never sees the pixels it is asked to fill.",
                            );
                    }
                }
                let before = self.preset;
                egui::ComboBox::from_label("preset")
                    .selected_text(self.preset.name())
                    .show_ui(ui, |ui| {
                        for p in Preset::ALL {
                            ui.selectable_value(&mut self.preset, p, p.name());
                        }
                    });
                if before != self.preset || kind_before != self.kind {
                    self.steps = match self.kind {
                        RunKind::Dtgan => TrainConfig::preset(self.preset).steps,
                        RunKind::Inpaint => InpaintConfig::preset(self.preset).steps,
                    };
                }
                let l = ui.label("steps");
                ui.add(egui::DragValue::new(&mut self.steps).range(1..=10_000_000))
                    .labelled_by(l.id);
                let l = ui.label("max minutes (0 = none)");
                ui.add(egui::DragValue::new(&mut self.max_minutes).range(0.0..=100_000.0))
                    .labelled_by(l.id);
                ui.checkbox(&mut self.resume, "resume");
                let l = ui.label("run folder");
                ui.add(
                    egui::TextEdit::singleline(&mut self.run_dir)
                        .hint_text("<project>/runs/<class>-<preset>")
                        .desired_width(220.0),
                )
                .labelled_by(l.id);
            });
        });
        ui.horizontal(|ui| {
            if ui.add_enabled(idle, egui::Button::new("Start")).clicked() {
                self.start(cx);
            }
            let running = self.state == RunState::Running;
            if ui
                .add_enabled(running, egui::Button::new("Pause"))
                .clicked()
            {
                self.control(cx, TrainingControl::Pause);
            }
            if ui
                .add_enabled(self.state == RunState::Paused, egui::Button::new("Resume"))
                .clicked()
            {
                self.control(cx, TrainingControl::Resume);
            }
            if ui.add_enabled(!idle, egui::Button::new("Stop")).clicked() {
                self.control(cx, TrainingControl::Stop);
            }
            if ui
                .add_enabled(idle, egui::Button::new("Open past run…"))
                .clicked()
            {
                self.picker.ask((), "Training run folder");
            }
            if let Some(run) = self.run.as_ref().filter(|_| self.kind == RunKind::Dtgan) {
                let dir = RunDir::new(run);
                for (label, path) in [("best", dir.best()), ("last", dir.last())] {
                    if path.exists()
                        && ui
                            .button(format!("Use {label} for generation"))
                            .on_hover_text(path.display().to_string())
                            .clicked()
                    {
                        self.generation_choice = Some(path.clone());
                        cx.status
                            .info(format!("generation uses {}", path.display()));
                    }
                }
            }
        });
    }

    fn progress_line(&self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            let step = self.metrics.last().map_or(0, |m| m.step);
            ui.label(format!("step {step} / {}", self.total_steps));
            if let Some(m) = self.metrics.last() {
                ui.label(format!("{:.2} it/s", m.it_per_s));
                if m.it_per_s > 0.0 && self.total_steps > step {
                    let eta = (self.total_steps - step) as f64 / m.it_per_s;
                    ui.label(format!("ETA {}", format_duration(eta)));
                }
            }
            ui.label(format!("{:?}", self.state));
            ui.label(&self.message);
        });
    }

    fn plot(&mut self, ui: &mut egui::Ui, height: f32) {
        ui.horizontal_wrapped(|ui| {
            ui.add(egui::Slider::new(&mut self.ema, 0.0..=0.99).text("EMA"));
            ui.checkbox(&mut self.log_y, "log axis");
            for (i, (name, _)) in SERIES.iter().enumerate() {
                ui.checkbox(&mut self.shown[i], *name);
            }
        });
        let log = self.log_y;
        let mut plot = Plot::new("training-curves")
            .legend(Legend::default())
            .height((height - 60.0).max(120.0));
        if log {
            plot = plot.y_axis_formatter(|mark, _| format!("{:.3}", 10f64.powf(mark.value)));
        }
        let lines: Vec<(&str, Vec<[f64; 2]>)> = SERIES
            .iter()
            .zip(self.shown)
            .filter(|(_, on)| *on)
            .map(|((name, get), _)| {
                let pts = smooth(&self.metrics, *get, self.ema)
                    .into_iter()
                    .filter_map(|[x, y]| {
                        if log {
                            (y > 0.0).then(|| [x, y.log10()])
                        } else {
                            Some([x, y])
                        }
                    })
                    .collect();
                (*name, pts)
            })
            .collect();
        plot.show(ui, |p| {
            for (name, pts) in lines {
                p.line(Line::new(name, PlotPoints::from(pts)));
            }
        });
    }

    fn sample_view(&mut self, ui: &mut egui::Ui) {
        if self.samples.is_empty() {
            ui.label(match self.kind {
                RunKind::Dtgan => {
                    "Sample grids (defect-free | mask | generated | real) appear here."
                }
                RunKind::Inpaint => {
                    "Sample grids (hole | coarse | refined | attention flow | truth) appear here; \
                     L1 inside / outside are then in / outside the hole."
                }
            });
            return;
        }
        let last = self.samples.len() - 1;
        self.sample_index = self.sample_index.min(last);
        let step = self.samples[self.sample_index].0;
        ui.add(
            egui::Slider::new(&mut self.sample_index, 0..=last)
                .text(format!("sample at step {step}")),
        );
        let path = self.samples[self.sample_index].1.clone();
        if self.sample_texture.as_ref().is_none_or(|(p, _)| *p != path) {
            // Small PNGs, decoded only when the slider moves.
            self.sample_texture = image::open(&path).ok().map(|img| {
                let rgba = img.to_rgba8();
                let size = [rgba.width() as usize, rgba.height() as usize];
                let color = egui::ColorImage::from_rgba_unmultiplied(size, rgba.as_raw());
                let tex =
                    ui.ctx()
                        .load_texture("sample-grid", color, egui::TextureOptions::NEAREST);
                (path.clone(), tex)
            });
        }
        egui::ScrollArea::both().show(ui, |ui| match &self.sample_texture {
            Some((_, tex)) => {
                let size = tex.size_vec2();
                let scale = (ui.available_width() / size.x).min(1.5);
                ui.image((tex.id(), size * scale));
            }
            None => {
                ui.colored_label(
                    egui::Color32::RED,
                    format!("cannot read {}", path.display()),
                );
            }
        });
    }
}

fn kind_name(kind: RunKind) -> &'static str {
    match kind {
        RunKind::Dtgan => "defect transfer (DTGAN)",
        RunKind::Inpaint => "inpainting (twins)",
    }
}

/// Exponential moving average of a metric (weight `ema` on the past), as plot points.
fn smooth(metrics: &[StepMetrics], get: Getter, ema: f32) -> Vec<[f64; 2]> {
    let a = f64::from(ema.clamp(0.0, 0.999));
    let mut acc: Option<f64> = None;
    metrics
        .iter()
        .filter_map(|m| {
            let v = get(m)?;
            if !v.is_finite() {
                return None;
            }
            let s = match acc {
                Some(prev) => a * prev + (1.0 - a) * v,
                None => v,
            };
            acc = Some(s);
            Some([m.step as f64, s])
        })
        .collect()
}

fn format_duration(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}
