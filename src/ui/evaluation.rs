//! The Evaluation pane: the minority-class recall experiment (does synthetic data make the
//! classifier find the rare class?). Pick the data and its groups, the minor class, K, the
//! synthetic count, the seeds and how synthetic defects are placed (as `evaluate`'s flags); Run
//! (with progress and Cancel) or load an earlier report; the result table, the realism scores
//! and the bar chart are shown here, and the report folder opens in the file manager.

use std::path::{Path, PathBuf};

use egui_plot::{Bar, BarChart, Legend, Line, Plot, PlotPoints};

use super::PaneContext;
use super::picker::{FolderPicker, typed_folder};
use crate::dtgan::Preset;
use crate::eval::experiment::{
    CASES, EvalConfig, EvalEvent, EvalRequest, EvalResults, SeedResult, parse_groups,
};
use crate::nn::device::DeviceChoice;
use crate::protocol::Command;

/// What a folder dialog is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pick {
    Train,
    Test,
    Out,
    Report,
    Dtgan,
}

/// The Evaluation pane.
pub struct EvaluationPane {
    /// Training data folder (a project or an import layout).
    pub train_dir: String,
    /// Test data folder.
    pub test_dir: String,
    /// Report folder.
    pub out_dir: String,
    /// The minor class.
    pub minor: String,
    /// Real minor-class images.
    pub k: usize,
    /// Synthetic images (0: 40 x K).
    pub synthetic: usize,
    /// Seeds per case.
    pub seeds: usize,
    /// Model sizes.
    pub preset: Preset,
    /// DTGAN time limit, minutes (0: none).
    pub max_minutes: f64,
    /// An existing DTGAN run folder or checkpoint to use instead of training one (empty: train).
    pub dtgan_run: String,
    /// Comma-separated source groups.
    pub source_groups: String,
    /// Comma-separated test groups.
    pub test_groups: String,
    /// Comma-separated groups of the training data the classifier takes (empty: all but the
    /// source groups, and the test groups when the test data is the same folder).
    pub train_groups: String,
    /// Candidate places drawn per synthetic defect; the best-matching are painted.
    pub candidates: usize,
    /// Skip a synthetic defect that changes a two-level pattern otherwise than its real one.
    pub same_effect: bool,
    /// Add the defect-free patch under each synthetic defect to the `good` class (cases c, d).
    pub paired_negatives: bool,
    /// At most this many paired negatives (0: one per synthetic defect).
    pub paired_max: usize,
    /// Pool the classifier's last features by their maximum as well as their mean.
    pub max_pool: bool,
    /// The project the defaults were taken from.
    defaults_for: Option<PathBuf>,
    running: bool,
    stage: String,
    progress: (usize, usize),
    done: Vec<SeedResult>,
    results: Option<(PathBuf, Box<EvalResults>)>,
    error: Option<String>,
    picker: FolderPicker<Pick>,
}

impl Default for EvaluationPane {
    fn default() -> Self {
        Self::new()
    }
}

/// Opens `dir` in the system's file manager.
fn open_folder(dir: &Path) -> std::io::Result<()> {
    let program = if cfg!(target_os = "macos") {
        "open"
    } else if cfg!(target_os = "windows") {
        "explorer"
    } else {
        "xdg-open"
    };
    std::process::Command::new(program)
        .arg(dir)
        .spawn()
        .map(|_| ())
}

impl EvaluationPane {
    /// An idle pane with the default settings.
    pub fn new() -> Self {
        let config = EvalConfig::preset(Preset::Cpu);
        Self {
            train_dir: String::new(),
            test_dir: String::new(),
            out_dir: String::new(),
            minor: String::new(),
            k: 10,
            synthetic: 0,
            seeds: 5,
            preset: Preset::Cpu,
            max_minutes: 15.0,
            dtgan_run: String::new(),
            source_groups: String::new(),
            test_groups: String::new(),
            train_groups: String::new(),
            candidates: config.candidates,
            same_effect: config.same_effect,
            paired_negatives: config.paired_negatives,
            paired_max: config.paired_negatives_max.unwrap_or(0),
            max_pool: config.classifier.max_pool,
            defaults_for: None,
            running: false,
            stage: String::new(),
            progress: (0, 0),
            done: Vec::new(),
            results: None,
            error: None,
            picker: FolderPicker::default(),
        }
    }

    /// True while an evaluation runs.
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// The results shown, if any.
    pub fn results(&self) -> Option<&EvalResults> {
        self.results.as_ref().map(|(_, r)| r.as_ref())
    }

    /// The last error, if any.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// The request the form describes.
    pub fn request(&self) -> Result<EvalRequest, String> {
        let (Some(train), Some(test)) =
            (typed_folder(&self.train_dir), typed_folder(&self.test_dir))
        else {
            return Err("choose the training and the test data".into());
        };
        if self.minor.is_empty() {
            return Err("choose the minor class".into());
        }
        let Some(out) = typed_folder(&self.out_dir) else {
            return Err("choose a report folder".into());
        };
        let mut config = EvalConfig::preset(self.preset);
        config.candidates = self.candidates;
        config.same_effect = self.same_effect;
        config.paired_negatives = self.paired_negatives;
        config.paired_negatives_max = (self.paired_max > 0).then_some(self.paired_max);
        config.classifier.max_pool = self.max_pool;
        Ok(EvalRequest {
            train,
            test,
            train_groups: parse_groups(&self.train_groups),
            test_groups: parse_groups(&self.test_groups),
            source_groups: parse_groups(&self.source_groups),
            minor: self.minor.clone(),
            k: self.k,
            synthetic: (self.synthetic > 0).then_some(self.synthetic),
            seeds: self.seeds,
            seed: 0,
            config,
            max_minutes: (self.max_minutes > 0.0).then_some(self.max_minutes),
            dtgan_run: typed_folder(&self.dtgan_run),
            out,
            device: DeviceChoice::Auto,
        })
    }

    /// News from the running evaluation.
    pub fn on_event(&mut self, ev: EvalEvent) {
        match ev {
            EvalEvent::Stage(s) => {
                self.stage = s;
                self.progress = (0, 0);
            }
            EvalEvent::Progress { done, total } => self.progress = (done, total),
            EvalEvent::CaseDone(r) => self.done.push(r),
        }
    }

    /// An evaluation ended (or a report was read).
    pub fn on_ended(&mut self, out: PathBuf, result: Result<Box<EvalResults>, String>) {
        self.running = false;
        self.stage.clear();
        match result {
            Ok(r) => {
                self.error = None;
                self.results = Some((out, r));
            }
            Err(e) => self.error = Some(e),
        }
    }

    fn take_defaults(&mut self, cx: &PaneContext) {
        let Some(p) = cx.project else { return };
        if self.defaults_for.as_ref() == Some(&p.root) {
            return;
        }
        self.defaults_for = Some(p.root.clone());
        let root = p.root.display().to_string();
        self.train_dir = root.clone();
        self.test_dir = root;
        self.out_dir = p.root.join("evaluations").display().to_string();
    }

    fn folder_row(
        ui: &mut egui::Ui,
        picker: &mut FolderPicker<Pick>,
        label: &str,
        value: &mut String,
        pick: Pick,
        hint: &str,
    ) {
        let l = ui.label(label);
        ui.horizontal(|ui| {
            ui.add(
                egui::TextEdit::singleline(value)
                    .desired_width(260.0)
                    .hint_text(hint),
            )
            .labelled_by(l.id);
            if ui.button("…").on_hover_text("Choose a folder").clicked() {
                picker.ask(pick, label);
            }
        });
        ui.end_row();
    }

    /// A labelled one-line text field of the form's grid.
    fn text_row(ui: &mut egui::Ui, label: &str, value: &mut String, hint: &str) {
        let l = ui.label(label);
        ui.add(
            egui::TextEdit::singleline(value)
                .desired_width(260.0)
                .hint_text(hint),
        )
        .labelled_by(l.id);
        ui.end_row();
    }

    fn form(&mut self, ui: &mut egui::Ui, cx: &mut PaneContext) {
        let classes = super::project_classes(cx);
        let enabled = !self.running;
        ui.add_enabled_ui(enabled, |ui| {
            egui::Grid::new("evaluation-form")
                .num_columns(2)
                .spacing([12.0, 6.0])
                .show(ui, |ui| {
                    Self::folder_row(
                        ui,
                        &mut self.picker,
                        "Training data",
                        &mut self.train_dir,
                        Pick::Train,
                        "project or import-layout folder",
                    );
                    Self::folder_row(
                        ui,
                        &mut self.picker,
                        "Test data",
                        &mut self.test_dir,
                        Pick::Test,
                        "images no model has seen",
                    );
                    Self::text_row(
                        ui,
                        "Test groups",
                        &mut self.test_groups,
                        "when the test data is the training folder; empty: hold out ~30 %",
                    );
                    Self::text_row(
                        ui,
                        "Training groups",
                        &mut self.train_groups,
                        "the classifier's; empty: all but the source and test groups",
                    );
                    Self::text_row(
                        ui,
                        "Source groups",
                        &mut self.source_groups,
                        "where the rare class is plentiful; empty: few-shot",
                    );
                    ui.label("Minor class");
                    if classes.is_empty() {
                        ui.add(egui::TextEdit::singleline(&mut self.minor).desired_width(160.0));
                    } else {
                        super::class_picker(ui, &mut self.minor, &classes);
                    }
                    ui.end_row();
                    let l = ui.label("K real images");
                    ui.add(egui::DragValue::new(&mut self.k).range(1..=10_000))
                        .labelled_by(l.id);
                    ui.end_row();
                    let l = ui.label("Synthetic images");
                    ui.horizontal(|ui| {
                        ui.add(egui::DragValue::new(&mut self.synthetic).range(0..=1_000_000))
                            .labelled_by(l.id);
                        ui.weak(if self.synthetic == 0 {
                            format!("(0 = 40 × K = {})", 40 * self.k)
                        } else {
                            String::new()
                        });
                    });
                    ui.end_row();
                    let l = ui.label("Seeds");
                    ui.add(egui::DragValue::new(&mut self.seeds).range(1..=100))
                        .labelled_by(l.id);
                    ui.end_row();
                    let l = ui.label("Preset");
                    egui::ComboBox::from_id_salt("evaluation-preset")
                        .selected_text(self.preset.name())
                        .show_ui(ui, |ui| {
                            for p in Preset::ALL {
                                ui.selectable_value(&mut self.preset, p, p.name());
                            }
                        })
                        .response
                        .labelled_by(l.id);
                    ui.end_row();
                    Self::folder_row(
                        ui,
                        &mut self.picker,
                        "DTGAN run",
                        &mut self.dtgan_run,
                        Pick::Dtgan,
                        "optional: a run trained elsewhere (a GPU server); empty: train one",
                    );
                    let l = ui.label("DTGAN minutes");
                    ui.add_enabled(
                        typed_folder(&self.dtgan_run).is_none(),
                        egui::DragValue::new(&mut self.max_minutes)
                            .range(0.0..=10_000.0)
                            .suffix(" min"),
                    )
                    .labelled_by(l.id);
                    ui.end_row();
                    let l = ui.label("Candidates per defect");
                    ui.add(egui::DragValue::new(&mut self.candidates).range(1..=256))
                        .labelled_by(l.id)
                        .on_hover_text(
                            "Places drawn per synthetic defect where the real defects have \
                             twins; the best-matching are painted: more candidates, closer \
                             matches, less varied places",
                        );
                    ui.end_row();
                    ui.label("");
                    ui.checkbox(&mut self.same_effect, "Same effect as the real defect")
                        .on_hover_text(
                            "On a two-level pattern (printed circuits), skip a synthetic defect \
                             that joins or cuts the pattern otherwise than the real one it copies",
                        );
                    ui.end_row();
                    ui.label("");
                    ui.horizontal(|ui| {
                        ui.checkbox(&mut self.paired_negatives, "Paired negatives")
                            .on_hover_text(
                                "Train the synthetic cases (c, d) also on the defect-free patch \
                                 under each synthetic defect, labelled good",
                            );
                        let l = ui.label("at most");
                        ui.add_enabled(
                            self.paired_negatives,
                            egui::DragValue::new(&mut self.paired_max).range(0..=1_000_000),
                        )
                        .labelled_by(l.id)
                        .on_hover_text(
                            "Fewer pairs where the good class has few patches: many pairs can \
                             outweigh it and cost the minor class recall",
                        );
                        ui.weak(if self.paired_max == 0 {
                            "(0 = one per synthetic defect)"
                        } else {
                            ""
                        });
                    });
                    ui.end_row();
                    ui.label("");
                    ui.checkbox(&mut self.max_pool, "Max pooling (small defects)")
                        .on_hover_text(
                            "Pool the classifier's last features by their maximum as well as \
                             their mean, so a defect of a few pixels in its patch (a blowhole in \
                             a tile) is not averaged away",
                        );
                    ui.end_row();
                    Self::folder_row(
                        ui,
                        &mut self.picker,
                        "Report folder",
                        &mut self.out_dir,
                        Pick::Out,
                        "results.json, report.md, plot.png",
                    );
                });
        });
        ui.horizontal(|ui| {
            if self.running {
                if ui.button("Cancel").clicked()
                    && cx.commands.send(Command::CancelEvaluation).is_err()
                {
                    cx.status
                        .error("The worker is busy or gone; try again in a moment.");
                }
            } else if ui.button("Run").clicked() {
                match self.request() {
                    Ok(req) => {
                        if cx
                            .commands
                            .send(Command::StartEvaluation(Box::new(req)))
                            .is_ok()
                        {
                            self.running = true;
                            self.done.clear();
                            self.error = None;
                            self.stage = "starting".into();
                        } else {
                            cx.status
                                .error("The worker is busy or gone; try again in a moment.");
                        }
                    }
                    Err(e) => self.error = Some(e),
                }
            }
            if ui
                .add_enabled(!self.running, egui::Button::new("Load report…"))
                .clicked()
            {
                self.picker.ask(Pick::Report, "Report folder");
            }
            if let Some((out, _)) = &self.results
                && ui.button("Open report folder").clicked()
                && let Err(e) = open_folder(out)
            {
                cx.status
                    .error(format!("cannot open {}: {e}", out.display()));
            }
        });
    }

    fn poll_picker(&mut self, cx: &mut PaneContext) {
        if let Some((pick, dir)) = self.picker.poll() {
            let s = dir.display().to_string();
            match pick {
                Pick::Train => self.train_dir = s,
                Pick::Test => self.test_dir = s,
                Pick::Out => self.out_dir = s,
                Pick::Dtgan => self.dtgan_run = s,
                Pick::Report => {
                    if cx.commands.send(Command::LoadEvaluation(dir)).is_err() {
                        cx.status
                            .error("The worker is busy or gone; try again in a moment.");
                    }
                }
            }
        }
    }

    fn progress_ui(&self, ui: &mut egui::Ui) {
        if !self.running {
            return;
        }
        ui.separator();
        let (done, total) = self.progress;
        let fraction = if total == 0 {
            0.0
        } else {
            done as f32 / total as f32
        };
        ui.label(&self.stage);
        ui.add(egui::ProgressBar::new(fraction).text(format!("{done}/{total}")));
        if !self.done.is_empty() {
            egui::Grid::new("evaluation-live")
                .striped(true)
                .show(ui, |ui| {
                    ui.strong("case");
                    ui.strong("seed");
                    ui.strong("recall");
                    ui.strong("precision");
                    ui.end_row();
                    for r in self.done.iter().rev().take(10) {
                        ui.label(&r.case);
                        ui.label((r.seed + 1).to_string());
                        ui.label(format!("{:.3}", r.recall));
                        ui.label(r.precision.map_or("n/a".into(), |p| format!("{p:.3}")));
                        if r.did_not_learn() {
                            ui.colored_label(ui.visuals().warn_fg_color, "did not learn")
                                .on_hover_text(format!(
                                    "This classifier's training diverged: its last epoch's \
                                     loss ({:.2}) stayed near guessing by class frequency \
                                     ({:.2}). Its scores count in the means; the report names it.",
                                    r.train_loss.unwrap_or(f64::NAN),
                                    r.guessing_loss.unwrap_or(f64::NAN)
                                ));
                        }
                        ui.end_row();
                    }
                });
        }
    }

    fn results_ui(&self, ui: &mut egui::Ui) {
        let Some((out, r)) = &self.results else {
            return;
        };
        ui.separator();
        ui.heading(format!(
            "Minor class \"{}\" ({} seeds, {})",
            r.minor, r.seeds, r.data.mode
        ));
        ui.weak(out.display().to_string());
        egui::Grid::new("evaluation-results")
            .striped(true)
            .spacing([14.0, 4.0])
            .show(ui, |ui| {
                for h in [
                    "case",
                    "training set",
                    "minor images",
                    "recall",
                    "precision",
                    "accuracy",
                ] {
                    ui.strong(h);
                }
                ui.end_row();
                for c in &r.cases {
                    ui.label(&c.case);
                    ui.label(&c.name);
                    ui.label(c.minor_train.to_string());
                    ui.label(c.recall.to_string());
                    ui.label(c.precision.to_string());
                    ui.label(c.accuracy.to_string());
                    ui.end_row();
                }
            });
        let q = &r.realism;
        ui.label(format!(
            "C2ST accuracy {} (0.5 = indistinguishable) · KID synthetic {} · augmented {} · other defect classes {}",
            q.c2st_accuracy, q.kid_synthetic, q.kid_augmented, q.kid_other_classes
        ));
        let recall = egui::Color32::from_rgb(46, 104, 178);
        let precision = egui::Color32::from_rgb(230, 135, 40);
        Plot::new("evaluation-chart")
            .legend(Legend::default())
            .height(240.0)
            .include_y(0.0)
            .include_y(1.0)
            .allow_drag(false)
            .allow_zoom(false)
            .allow_scroll(false)
            .x_axis_formatter(|mark, _| {
                let i = mark.value.round();
                if (mark.value - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < CASES.len() {
                    format!("({})", CASES[i as usize].0)
                } else {
                    String::new()
                }
            })
            .show(ui, |p| {
                for (name, colour, offset, get) in [
                    (
                        "recall",
                        recall,
                        -0.18,
                        (|c: &crate::eval::experiment::CaseResult| c.recall) as fn(&_) -> _,
                    ),
                    (
                        "precision",
                        precision,
                        0.18,
                        |c: &crate::eval::experiment::CaseResult| c.precision,
                    ),
                ] {
                    let bars: Vec<Bar> = r
                        .cases
                        .iter()
                        .enumerate()
                        .filter(|(_, c)| !get(c).mean.is_nan())
                        .map(|(i, c)| {
                            Bar::new(i as f64 + offset, get(c).mean)
                                .width(0.34)
                                .fill(colour)
                        })
                        .collect();
                    p.bar_chart(BarChart::new(name, bars).color(colour));
                    for (i, c) in r.cases.iter().enumerate() {
                        let s = get(c);
                        if s.mean.is_nan() {
                            continue;
                        }
                        let x = i as f64 + offset;
                        p.line(
                            Line::new(
                                format!("{name} ± sd"),
                                PlotPoints::from(vec![[x, s.mean - s.sd], [x, s.mean + s.sd]]),
                            )
                            .color(egui::Color32::DARK_GRAY),
                        );
                    }
                }
            });
    }

    /// Draws the pane.
    pub fn ui(&mut self, ui: &mut egui::Ui, cx: &mut PaneContext) {
        self.take_defaults(cx);
        self.poll_picker(cx);
        if self.picker.is_open() {
            ui.ctx()
                .request_repaint_after(std::time::Duration::from_millis(100));
        }
        egui::ScrollArea::vertical().show(ui, |ui| {
            ui.label("Does synthetic data make a classifier find the rare class? Five training sets — none, K real, synthetic, K real + synthetic, K real + classical augmentation — each trained and tested with several seeds.");
            self.form(ui, cx);
            if let Some(e) = &self.error {
                ui.colored_label(ui.visuals().error_fg_color, e);
            }
            self.progress_ui(ui);
            self.results_ui(ui);
        });
    }
}
