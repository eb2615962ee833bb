//! The studio window: menu bar, docked panes (egui_tiles), status bar, and the event pump.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use egui_tiles::{Tile, TileId, Tiles, Tree};

use super::automation::{Automation, Step};
use super::browser::BrowserPane;
use super::evaluation::EvaluationPane;
use super::generation::GenerationPane;
use super::inpaint_qa::InpaintQaPane;
use super::painter::PainterPane;
use super::picker::FolderPicker;
use super::training::TrainingPane;
use super::{CommandSender, PaneContext, Selection, StatusLine};
use crate::project::Project;
use crate::protocol::{Command, Event, JobKind};
use crate::settings::Settings;
use crate::worker::WorkerHandle;

/// Keys under which eframe storage keeps the layout and the panes' settings.
const TREE_KEY: &str = "dtgan-studio.tiles";
const BROWSER_KEY: &str = "dtgan-studio.browser";
/// Time per frame spent draining worker events.
const EVENT_BUDGET: Duration = Duration::from_millis(4);

/// The kinds of pane that can be docked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PaneKind {
    /// The dataset browser.
    Browser,
    /// The mask / box-mask painter.
    Painter,
    /// The training monitor.
    Training,
    /// The generation canvas.
    Generation,
    /// Seam QA of inpainted twins.
    InpaintQa,
    /// The minority-class recall experiment.
    Evaluation,
}

impl PaneKind {
    fn title(self) -> &'static str {
        match self {
            PaneKind::Browser => "Dataset",
            PaneKind::Painter => "Mask painter",
            PaneKind::Training => "Training",
            PaneKind::Generation => "Generation",
            PaneKind::InpaintQa => "Inpaint QA",
            PaneKind::Evaluation => "Evaluation",
        }
    }
}

/// What the studio should open first.
#[derive(Clone, Debug)]
pub enum StartWith {
    /// Open this project.
    Project(PathBuf),
    /// Open the last project, or make and open the demo project on first start.
    LastOrDemo,
    /// Open nothing (tests).
    Nothing,
}

/// What a folder chosen in a menu's dialog is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MenuPick {
    OpenProject,
    MakeDemo,
}

/// Progress of the job in flight.
#[derive(Clone, Debug)]
struct Progress {
    job: JobKind,
    done: usize,
    total: usize,
}

/// The application state.
pub struct StudioApp {
    worker: WorkerHandle,
    commands: CommandSender,
    tree: Tree<PaneKind>,
    browser: BrowserPane,
    painter: PainterPane,
    training: TrainingPane,
    generation: GenerationPane,
    inpaint_qa: InpaintQaPane,
    evaluation: EvaluationPane,
    project: Option<Arc<Project>>,
    selection: Selection,
    status: StatusLine,
    progress: Option<Progress>,
    show_about: bool,
    picker: FolderPicker<MenuPick>,
    automation: Option<Automation>,
    started: Instant,
    frame_start: Instant,
}

impl StudioApp {
    /// Starts the worker and restores the layout from `storage`.
    pub fn new(
        ctx: &egui::Context,
        storage: Option<&dyn eframe::Storage>,
        start: StartWith,
        settings: Option<Settings>,
    ) -> std::io::Result<Self> {
        let repaint = ctx.clone();
        let worker = WorkerHandle::spawn(
            Arc::new(move || repaint.request_repaint()),
            settings.clone(),
        )?;
        let commands = CommandSender::new(worker.commands.clone());
        let tree = storage
            .and_then(|s| eframe::get_value::<Tree<PaneKind>>(s, TREE_KEY))
            .filter(tree_is_complete)
            .unwrap_or_else(default_tree);
        let browser = storage
            .and_then(|s| eframe::get_value(s, BROWSER_KEY))
            .unwrap_or_default();
        let mut app = Self {
            worker,
            commands,
            tree,
            browser,
            painter: PainterPane::default(),
            training: TrainingPane::new(),
            generation: GenerationPane::new(),
            inpaint_qa: InpaintQaPane::new(),
            evaluation: EvaluationPane::new(),
            project: None,
            selection: Selection::default(),
            status: StatusLine::default(),
            progress: None,
            show_about: false,
            picker: FolderPicker::default(),
            automation: Automation::from_env(),
            started: Instant::now(),
            frame_start: Instant::now(),
        };
        app.start(start, settings.as_ref());
        Ok(app)
    }

    fn start(&mut self, start: StartWith, settings: Option<&Settings>) {
        let cmd = match start {
            StartWith::Project(dir) => Some(Command::OpenProject(dir)),
            StartWith::LastOrDemo => match settings {
                Some(s) => Some(match s.last_project() {
                    Some(last) => Command::OpenProject(last),
                    None if s.demo_dir().join(crate::project::MANIFEST_FILE).is_file() => {
                        Command::OpenProject(s.demo_dir())
                    }
                    None => {
                        self.status.info(format!(
                            "Making the demo project in {}…",
                            s.demo_dir().display()
                        ));
                        Command::MakeDemo {
                            out: s.demo_dir(),
                            seed: 0,
                        }
                    }
                }),
                None => {
                    self.status
                        .error("No data folder on this system; open a project with File ▸ Open.");
                    None
                }
            },
            StartWith::Nothing => None,
        };
        if let Some(cmd) = cmd {
            self.send(cmd);
        }
        if let Some(run) = std::env::var_os(super::automation::OPEN_RUN_ENV) {
            self.send(Command::LoadRun(PathBuf::from(run)));
            self.tree
                .make_active(|_, tile| matches!(tile, Tile::Pane(PaneKind::Training)));
        }
    }

    fn send(&mut self, cmd: Command) {
        if self.commands.send(cmd).is_err() {
            self.status
                .error("The worker is busy or gone; try again in a moment.");
        }
    }

    /// The open project (for tests and the title).
    pub fn project(&self) -> Option<&Arc<Project>> {
        self.project.as_ref()
    }

    /// The status line text.
    pub fn status(&self) -> &StatusLine {
        &self.status
    }

    /// Drains worker events within the per-frame budget.
    fn pump_events(&mut self) {
        let start = Instant::now();
        while start.elapsed() < EVENT_BUDGET {
            let Ok(event) = self.worker.events.try_recv() else {
                break;
            };
            self.on_event(event);
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::ProjectOpened(project) => {
                let same_root = self
                    .project
                    .as_ref()
                    .is_some_and(|p| p.root == project.root);
                if !same_root {
                    self.browser.reset_thumbnails();
                    self.selection = Selection::default();
                    self.status.info(format!(
                        "Opened {} ({} images)",
                        project.root.display(),
                        project.manifest.images.len()
                    ));
                }
                self.project = Some(project);
            }
            Event::ImageLoaded {
                id,
                image,
                mask,
                box_mask,
            } => {
                if self.generation.wants(&id) {
                    self.generation.set_source(id, image);
                } else {
                    self.painter.set_image(id, image, mask, box_mask);
                }
            }
            Event::TwinLoaded {
                id,
                defect,
                twin,
                box_mask,
            } => self.inpaint_qa.on_twin_loaded(id, defect, twin, box_mask),
            Event::Training(ev) => self.training.on_event(ev),
            Event::TrainingEnded(result) => {
                match &result {
                    Ok(o) => self
                        .status
                        .info(format!("training ended at step {}", o.step)),
                    Err(e) => self.status.error(format!("training failed: {e}")),
                }
                self.training.on_ended(&result);
            }
            Event::RunLoaded {
                run,
                metrics,
                samples,
                kind,
            } => self.training.on_run_loaded(run, metrics, samples, kind),
            Event::Evaluation(ev) => self.evaluation.on_event(ev),
            Event::EvaluationEnded { out, result } => {
                match &result {
                    Ok(r) => self.status.info(format!(
                        "evaluation of {}: report in {}",
                        r.minor,
                        out.display()
                    )),
                    Err(e) => self.status.error(format!("evaluation failed: {e}")),
                }
                self.evaluation.on_ended(out, result);
            }
            Event::Generated {
                ticket,
                image,
                millis,
                checkpoint_sha256,
            } => self
                .generation
                .on_generated(ticket, image, millis, checkpoint_sha256),
            Event::MasksSaved { id } => {
                self.painter.on_masks_saved(&id);
                self.status.info(format!("Saved masks of {id}"));
            }
            Event::Progressed { job, done, total } => {
                self.progress = Some(Progress { job, done, total });
            }
            Event::ProgressDropped(_) => {}
            Event::JobFinished { job, message } => {
                if self.progress.as_ref().is_some_and(|p| p.job == job) {
                    self.progress = None;
                }
                if job == JobKind::Inpaint {
                    self.inpaint_qa.on_making_ended();
                }
                self.status.info(message);
            }
            Event::JobFailed { job, message } => {
                if self.progress.as_ref().is_some_and(|p| p.job == job) {
                    self.progress = None;
                }
                if job == JobKind::LoadImage {
                    self.painter.on_load_failed(message.clone());
                }
                if job == JobKind::LoadTwin {
                    self.inpaint_qa.on_load_failed(message.clone());
                }
                if job == JobKind::Inpaint {
                    self.inpaint_qa.on_making_ended();
                }
                self.status.error(format!("{job:?} failed: {message}"));
            }
        }
    }

    fn menu_bar(&mut self, ui: &mut egui::Ui) {
        egui::MenuBar::new().ui(ui, |ui| {
            ui.menu_button("File", |ui| {
                if ui.button("Open project…").clicked() {
                    self.picker.ask(MenuPick::OpenProject, "Project folder");
                }
                if ui.button("Import images…").clicked() {
                    self.browser.open_import(None);
                }
                if ui.button("Make demo project…").clicked() {
                    self.picker
                        .ask(MenuPick::MakeDemo, "Empty folder for the demo project");
                }
                ui.separator();
                let margin = self
                    .project
                    .as_ref()
                    .map_or(crate::project::manifest::DEFAULT_BOX_MARGIN, |p| {
                        p.manifest.box_margin
                    });
                if ui
                    .add_enabled(
                        self.project.is_some(),
                        egui::Button::new("Derive box masks from pixel masks"),
                    )
                    .clicked()
                {
                    self.send(Command::DeriveBoxes { margin });
                }
            });
            ui.menu_button("View", |ui| {
                if ui.button("Reset layout").clicked() {
                    self.tree = default_tree();
                }
            });
            ui.menu_button("Help", |ui| {
                if ui.button("About DTGAN Studio").clicked() {
                    self.show_about = true;
                }
            });
            if let Some(p) = &self.project {
                ui.separator();
                ui.strong(&p.manifest.name);
                ui.weak(p.root.display().to_string());
            }
        });
    }

    fn status_bar(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            if let Some(p) = &self.progress {
                let fraction = if p.total == 0 {
                    0.0
                } else {
                    p.done as f32 / p.total as f32
                };
                ui.add(
                    egui::ProgressBar::new(fraction)
                        .desired_width(180.0)
                        .text(format!("{:?} {}/{}", p.job, p.done, p.total)),
                );
            }
            let color = if self.status.is_error {
                ui.visuals().error_fg_color
            } else {
                ui.visuals().text_color()
            };
            ui.colored_label(color, &self.status.text);
        });
    }

    /// The first defect image with a pixel mask (what an unattended screenshot shows).
    fn first_masked_defect(&self) -> Option<String> {
        let p = self.project.as_ref()?;
        let e = p
            .manifest
            .images
            .iter()
            .find(|e| e.role == crate::project::Role::Defect && e.mask.is_some())?;
        Some(e.id.clone())
    }

    fn handle_dropped_folders(&mut self, ctx: &egui::Context) {
        let dropped: Vec<PathBuf> = ctx.input(|i| {
            i.raw
                .dropped_files
                .iter()
                .map(|f| f.path().to_path_buf())
                .collect()
        });
        if let Some(dir) = dropped.into_iter().find(|p| p.is_dir()) {
            if dir.join(crate::project::MANIFEST_FILE).is_file() {
                self.send(Command::OpenProject(dir));
            } else {
                self.browser.open_import(Some(dir));
            }
        }
    }
}

impl eframe::App for StudioApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        self.frame_start = Instant::now();
        self.pump_events();
        self.handle_dropped_folders(ctx);
        match self.picker.poll() {
            Some((MenuPick::OpenProject, dir)) => self.send(Command::OpenProject(dir)),
            Some((MenuPick::MakeDemo, dir)) => self.send(Command::MakeDemo { out: dir, seed: 0 }),
            None => {}
        }
        if self.picker.is_open() {
            ctx.request_repaint_after(Duration::from_millis(100));
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        egui::Panel::top("menu").show(ui, |ui| self.menu_bar(ui));
        egui::Panel::bottom("status").show(ui, |ui| self.status_bar(ui));
        if self.show_about {
            egui::Window::new("About DTGAN Studio").open(&mut self.show_about).show(ui.ctx(), |ui| {
                ui.label("DTGAN Studio turns a handful of real defect images into many realistic synthetic ones (Defect Transfer GAN).");
                ui.label(format!("Version {}", env!("CARGO_PKG_VERSION")));
            });
        }
        if let Some(a) = &self.automation {
            self.browser.auto_scroll = a.scroll_speed();
            if self.selection.current.is_none() {
                self.selection.current = self.first_masked_defect();
            }
        }
        if let Some(run) = self.training.take_generation_choice() {
            self.generation.set_run(run);
        }
        let Self {
            tree,
            browser,
            painter,
            training,
            generation,
            inpaint_qa,
            evaluation,
            project,
            selection,
            status,
            commands,
            ..
        } = self;
        let mut cx = PaneContext {
            project: project.as_ref(),
            selection,
            commands,
            status,
        };
        let mut behavior = Behavior {
            browser,
            painter,
            training,
            generation,
            inpaint_qa,
            evaluation,
            cx: &mut cx,
        };
        egui::CentralPanel::default().show(ui, |ui| tree.ui(&mut behavior, ui));
        if let Some(a) = &mut self.automation {
            let ready = self.project.is_some() && self.browser.thumbnails_ready() > 0;
            let cpu = self.frame_start.elapsed();
            if let Step::Close = a.after_frame(ui.ctx(), ready, self.started, cpu) {
                ui.ctx().send_viewport_cmd(egui::ViewportCommand::Close);
            }
            if let (Some(class), Some(project)) = (a.take_training_class(), &self.project) {
                let req = crate::dtgan::train::TrainRequest {
                    project: project.root.clone(),
                    class,
                    run: project.root.join("runs").join("bench-train"),
                    config: crate::dtgan::TrainConfig::preset(crate::dtgan::Preset::Cpu),
                    resume: false,
                    max_minutes: None,
                    device: crate::nn::device::DeviceChoice::Cpu,
                };
                let _ = std::fs::remove_dir_all(&req.run);
                if self
                    .commands
                    .send(Command::StartTraining(Box::new(req)))
                    .is_err()
                {
                    eprintln!("error: could not start the benchmark's training");
                }
            }
        }
    }

    fn on_exit(&mut self, _gl: Option<&eframe::glow::Context>) {
        // Unsaved strokes go to the worker, which finishes its queue before it stops.
        let Self {
            painter,
            project,
            selection,
            status,
            commands,
            ..
        } = self;
        let mut cx = PaneContext {
            project: project.as_ref(),
            selection,
            commands,
            status,
        };
        painter.flush(&mut cx);
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, TREE_KEY, &self.tree);
        eframe::set_value(storage, BROWSER_KEY, &self.browser);
    }
}

struct Behavior<'a, 'c> {
    browser: &'a mut BrowserPane,
    painter: &'a mut PainterPane,
    training: &'a mut TrainingPane,
    generation: &'a mut GenerationPane,
    inpaint_qa: &'a mut InpaintQaPane,
    evaluation: &'a mut EvaluationPane,
    cx: &'a mut PaneContext<'c>,
}

impl egui_tiles::Behavior<PaneKind> for Behavior<'_, '_> {
    fn tab_title_for_pane(&mut self, pane: &PaneKind) -> egui::WidgetText {
        pane.title().into()
    }

    fn pane_ui(
        &mut self,
        ui: &mut egui::Ui,
        _tile_id: TileId,
        pane: &mut PaneKind,
    ) -> egui_tiles::UiResponse {
        match pane {
            PaneKind::Browser => self.browser.ui(ui, self.cx),
            PaneKind::Painter => self.painter.ui(ui, self.cx),
            PaneKind::Training => self.training.ui(ui, self.cx),
            PaneKind::Generation => self.generation.ui(ui, self.cx),
            PaneKind::InpaintQa => self.inpaint_qa.ui(ui, self.cx),
            PaneKind::Evaluation => self.evaluation.ui(ui, self.cx),
        }
        egui_tiles::UiResponse::None
    }

    fn simplification_options(&self) -> egui_tiles::SimplificationOptions {
        egui_tiles::SimplificationOptions {
            all_panes_must_have_tabs: true,
            ..Default::default()
        }
    }
}

/// Browser on the left; painter, training and generation as tabs on the right.
pub fn default_tree() -> Tree<PaneKind> {
    let mut tiles = Tiles::default();
    let browser = tiles.insert_pane(PaneKind::Browser);
    let painter = tiles.insert_pane(PaneKind::Painter);
    let training = tiles.insert_pane(PaneKind::Training);
    let generation = tiles.insert_pane(PaneKind::Generation);
    let inpaint_qa = tiles.insert_pane(PaneKind::InpaintQa);
    let evaluation = tiles.insert_pane(PaneKind::Evaluation);
    let browser_tab = tiles.insert_tab_tile(vec![browser]);
    let painter_tab =
        tiles.insert_tab_tile(vec![painter, inpaint_qa, training, generation, evaluation]);
    let root = tiles.insert_horizontal_tile(vec![browser_tab, painter_tab]);
    if let Some(Tile::Container(egui_tiles::Container::Linear(linear))) = tiles.get_mut(root) {
        linear.shares.set_share(browser_tab, 0.42);
        linear.shares.set_share(painter_tab, 0.58);
    }
    Tree::new(egui::Id::unique("studio-tree"), root, tiles)
}

/// A stored layout is used only if it still holds every pane (older versions had fewer).
fn tree_is_complete(tree: &Tree<PaneKind>) -> bool {
    [
        PaneKind::Browser,
        PaneKind::Painter,
        PaneKind::Training,
        PaneKind::Generation,
        PaneKind::InpaintQa,
        PaneKind::Evaluation,
    ]
    .iter()
    .all(|kind| {
        tree.tiles
            .iter()
            .any(|(_, t)| matches!(t, Tile::Pane(p) if p == kind))
    })
}
