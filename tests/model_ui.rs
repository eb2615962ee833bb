//! The training monitor and the generation canvas, driven through egui_kittest: the commands
//! their buttons send, and how worker events change what they show.

use std::path::PathBuf;
use std::sync::Arc;

use crossbeam_channel::Receiver;
use dtgan_studio::demo::{DemoConfig, make_demo};
use dtgan_studio::dtgan::run::{StepMetrics, TrainEvent};
use dtgan_studio::project::Project;
use dtgan_studio::protocol::{Command, TrainingControl};
use dtgan_studio::ui::generation::GenerationPane;
use dtgan_studio::ui::training::{RunState, TrainingPane};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;

mod common;
use common::panes::{DrawPane, PaneState, pane_harness};

fn demo_project(dir: &std::path::Path) -> Arc<Project> {
    let cfg = DemoConfig::small(1, 1, 1);
    Arc::new(make_demo(&dir.join("p"), &cfg, &|_, _| {}).expect("demo"))
}

fn harness<P: 'static>(
    pane: P,
    project: Arc<Project>,
    ui: DrawPane<P>,
) -> (Harness<'static, PaneState<P>>, Receiver<Command>) {
    pane_harness(pane, Some(project), egui::vec2(1400.0, 900.0), ui)
}

fn metrics(step: u64, l1: f64) -> StepMetrics {
    StepMetrics {
        step,
        loss_g: 1.0,
        loss_d: -0.1,
        l_gan: 0.1,
        l1_inside: l1,
        l1_outside: 0.01,
        wasserstein: 0.2,
        it_per_s: 2.0,
        elapsed_s: step as f64 / 2.0,
        val_l1_inside: None,
        val_box_error: None,
    }
}

#[test]
fn start_sends_the_training_command_and_step_events_update_the_plot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = demo_project(dir.path());
    let (mut h, rx) = harness(TrainingPane::new(), project.clone(), TrainingPane::ui);
    h.run();
    h.get_by_label("Start").click();
    h.run();
    let req = match rx.try_recv().expect("a command") {
        Command::StartTraining(req) => req,
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(req.project, project.root);
    assert_eq!(req.class, "dark_spot", "first class in order");
    assert!(req.run.starts_with(project.root.join("runs")));
    assert_eq!(h.state().pane.state(), RunState::Starting);

    h.state_mut().pane.on_event(TrainEvent::Started {
        run: req.run.clone(),
        step: 0,
        steps: 100,
        pairs: 2,
        val_pairs: 1,
    });
    for (i, l1) in [0.5, 0.4, 0.3].into_iter().enumerate() {
        h.state_mut()
            .pane
            .on_event(TrainEvent::Metrics(metrics(10 * (i as u64 + 1), l1)));
    }
    h.run();
    let curve = h.state().pane.series("L1 inside");
    assert_eq!(curve.len(), 3);
    assert_eq!(curve.last().map(|p| p[0]), Some(30.0));
    assert!(curve[2][1] < curve[0][1], "smoothed curve falls: {curve:?}");
    assert!(h.query_by_label_contains("step 30 / 100").is_some());
    assert!(h.query_by_label_contains("ETA").is_some());

    h.get_by_label("Pause").click();
    h.run();
    assert!(matches!(
        rx.try_recv(),
        Ok(Command::ControlTraining(TrainingControl::Pause))
    ));
    h.state_mut().pane.on_event(TrainEvent::Paused { step: 30 });
    h.run();
    h.get_by_label("Resume").click();
    h.run();
    assert!(matches!(
        rx.try_recv(),
        Ok(Command::ControlTraining(TrainingControl::Resume))
    ));
}

/// The inpainting network, with "learn from defect images too": the request asks for the
/// chosen group's defect images (here every group's) as context.
#[test]
fn inpainting_start_can_ask_for_the_defect_images_as_context() {
    type H = Harness<'static, PaneState<TrainingPane>>;
    let dir = tempfile::tempdir().expect("tempdir");
    let project = demo_project(dir.path());
    let (mut h, rx) = harness(TrainingPane::new(), project.clone(), TrainingPane::ui);
    let click = |h: &mut H, label: &str| {
        h.get_by_label(label).click();
        h.run();
    };
    // A fresh pane, the inpainting network, the given boxes ticked, Start: the request sent.
    let start = |h: &mut H, ticks: &[&str]| {
        h.state_mut().pane = TrainingPane::new();
        h.run();
        click(h, "network");
        click(h, "inpainting (twins)");
        for t in ticks {
            click(h, t);
        }
        click(h, "Start");
        match rx.try_recv().expect("a command") {
            Command::StartInpaintTraining(req) => req,
            other => panic!("unexpected {other:?}"),
        }
    };
    let plain = start(&mut h, &[]);
    assert_eq!(plain.context, None, "off by default");
    let req = start(&mut h, &["learn from defect images too"]);
    assert_eq!(req.groups, Vec::<String>::new(), "all groups");
    assert_eq!(req.context, Some(Vec::new()), "every group's defect images");
}

#[test]
fn generation_canvas_generates_live_and_saves_into_the_project() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = demo_project(dir.path());
    let (mut h, rx) = harness(GenerationPane::new(), project.clone(), GenerationPane::ui);
    let image = Arc::new(image::RgbImage::from_pixel(
        64,
        64,
        image::Rgb([100, 110, 120]),
    ));
    h.state_mut().pane.set_source("good-1".into(), image);
    h.state_mut()
        .pane
        .set_run(PathBuf::from("run/best.safetensors"));
    h.run();
    h.get_by_label("Random mask").click();
    h.run();
    assert!(h.state().pane.mask().pixels().any(|p| p[0] == 255));
    let ticket = match rx.try_recv().expect("live generation request") {
        Command::Generate { ticket, mask, .. } => {
            assert!(
                &mask == h.state().pane.mask(),
                "the request carries the mask"
            );
            ticket
        }
        other => panic!("unexpected {other:?}"),
    };
    let result = image::RgbImage::from_pixel(64, 64, image::Rgb([10, 10, 10]));
    h.state_mut()
        .pane
        .on_generated(ticket, result.clone(), 12.0, "abc".into());
    h.run();
    assert!(h.state().pane.result() == Some(&result), "result shown");
    h.get_by_label("Save to project").click();
    h.run();
    match rx.try_recv().expect("save command") {
        Command::SaveSynthetic(s) => {
            assert_eq!(s.class, "dark_spot");
            assert!(s.image == result, "the result is what gets saved");
            assert_eq!(s.provenance.source, "good-1");
            assert_eq!(s.provenance.mask_source, "random");
            assert_eq!(s.provenance.checkpoint, "abc");
        }
        other => panic!("unexpected {other:?}"),
    }
}
