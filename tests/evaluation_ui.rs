//! egui_kittest tests of the Evaluation pane: the form's defaults, Run and Cancel, live progress,
//! and the result table and chart of a finished evaluation.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crossbeam_channel::Receiver;
use dtgan_studio::dtgan::Preset;
use dtgan_studio::eval::experiment::{
    CASES, CaseResult, DataInfo, EvalConfig, EvalEvent, EvalRequest, EvalResults, Realism,
    SeedResult, Timing,
};
use dtgan_studio::eval::metrics::{Confusion, MeanSd};
use dtgan_studio::project::{ImageEntry, Project, RelPath, Role};
use dtgan_studio::protocol::Command;
use dtgan_studio::ui::evaluation::EvaluationPane;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;

mod common;
use common::panes::{PaneState, pane_harness};

type State = PaneState<EvaluationPane>;

fn project(dir: &std::path::Path) -> Project {
    let mut p = Project::open_or_create(dir).expect("create project");
    for (id, class) in [("d1", "scratch"), ("d2", "dent")] {
        let mut e = ImageEntry::new(
            id,
            RelPath::new(format!("images/{id}.png")).expect("path"),
            Role::Defect,
            "g",
        );
        e.class = Some(class.into());
        p.manifest.images.push(e);
    }
    p.save().expect("save");
    p
}

fn harness(dir: &std::path::Path) -> (Harness<'static, State>, Receiver<Command>) {
    let (mut h, rx) = pane_harness(
        EvaluationPane::new(),
        Some(Arc::new(project(dir))),
        egui::vec2(1000.0, 1400.0),
        EvaluationPane::ui,
    );
    h.run_steps(2);
    (h, rx)
}

/// The request of the `StartEvaluation` the pane sent.
fn started(rx: &Receiver<Command>) -> Box<EvalRequest> {
    rx.try_iter()
        .find_map(|c| match c {
            Command::StartEvaluation(r) => Some(r),
            _ => None,
        })
        .expect("StartEvaluation sent")
}

fn stat(mean: f64, sd: f64) -> MeanSd {
    MeanSd { mean, sd, n: 2 }
}

/// Results with recall rising from case a to d.
fn results() -> EvalResults {
    let cases = CASES
        .iter()
        .enumerate()
        .map(|(i, (letter, name))| CaseResult {
            case: letter.to_string(),
            name: name.to_string(),
            minor_train: i * 10,
            negatives: 0,
            recall: stat(0.1 * i as f64, 0.05),
            precision: if i == 0 {
                MeanSd::of(&[])
            } else {
                stat(0.9, 0.02)
            },
            accuracy: stat(0.7, 0.01),
            per_seed: vec![SeedResult {
                case: letter.to_string(),
                seed: 0,
                recall: 0.1 * i as f64,
                precision: None,
                accuracy: 0.7,
                confusion: Confusion::new(3),
                train_loss: None,
                guessing_loss: None,
            }],
        })
        .collect();
    EvalResults {
        minor: "scratch".into(),
        classes: vec!["good".into(), "dent".into(), "scratch".into()],
        k: 10,
        synthetic: 400,
        seeds: 2,
        seed: 0,
        config: EvalConfig::preset(Preset::Tiny),
        data: DataInfo {
            train: PathBuf::from("train"),
            test: PathBuf::from("test"),
            target_groups: vec!["g".into()],
            source_groups: Vec::new(),
            test_groups: Vec::new(),
            mode: "few-shot".into(),
            twins: "44 real defect-free templates".into(),
            train_counts: BTreeMap::new(),
            test_counts: BTreeMap::new(),
            dtgan_pairs: 10,
            synthesis: Default::default(),
        },
        dtgan_run: PathBuf::from("dtgan"),
        dtgan_steps: 4,
        cases,
        realism: Realism {
            c2st_accuracy: stat(0.61, 0.03),
            c2st_patches: 40,
            kid_synthetic: stat(0.01, 0.001),
            kid_augmented: stat(0.02, 0.001),
            kid_other_classes: stat(0.05, 0.001),
        },
        timing: Timing::default(),
    }
}

#[test]
fn run_sends_the_form_and_cancel_stops_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut h, rx) = harness(dir.path());
    let root = dir.path().display().to_string();
    assert_eq!(h.state().pane.train_dir, root);
    assert_eq!(h.state().pane.test_dir, root);
    h.state_mut().pane.k = 7;
    h.state_mut().pane.source_groups = "a, b".into();
    h.run_steps(2);
    h.get_by_label("Run").click();
    h.run_steps(3);
    let req = started(&rx);
    // The project's first class (sorted) is the default minor class.
    assert_eq!(req.minor, "dent");
    assert_eq!(req.k, 7);
    assert_eq!(req.synthetic, None, "0 means 40 x K");
    assert_eq!(req.seeds, 5);
    assert_eq!(req.source_groups, ["a", "b"]);
    assert_eq!(req.out, dir.path().join("evaluations"));
    assert_eq!(
        req.dtgan_run, None,
        "no run given: the evaluation trains one"
    );
    assert!(h.state().pane.is_running());

    // Live progress shows the stage and the finished seeds.
    h.state_mut()
        .pane
        .on_event(EvalEvent::Stage("case b (K real), seed 1/5".into()));
    h.state_mut().pane.on_event(EvalEvent::CaseDone(SeedResult {
        case: "b".into(),
        seed: 0,
        recall: 0.125,
        precision: Some(0.5),
        accuracy: 0.6,
        confusion: Confusion::new(3),
        train_loss: None,
        guessing_loss: None,
    }));
    h.run_steps(2);
    h.get_by_label("case b (K real), seed 1/5");
    h.get_by_label("0.125");
    assert!(
        h.query_by_label("did not learn").is_none(),
        "no loss recorded: nothing to say"
    );
    // A diverged training is named where it happens.
    h.state_mut().pane.on_event(EvalEvent::CaseDone(SeedResult {
        case: "c".into(),
        seed: 0,
        recall: 0.0,
        precision: None,
        accuracy: 0.2,
        confusion: Confusion::new(3),
        train_loss: Some(1.7),
        guessing_loss: Some(1.8),
    }));
    h.run_steps(2);
    h.get_by_label("did not learn");

    h.get_by_label("Cancel").click();
    h.run_steps(2);
    assert!(
        rx.try_iter()
            .any(|c| matches!(c, Command::CancelEvaluation))
    );
}

#[test]
fn results_show_the_table_the_realism_scores_and_the_chart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut h, _rx) = harness(dir.path());
    h.state_mut()
        .pane
        .on_ended(dir.path().join("report"), Ok(Box::new(results())));
    h.run_steps(3);
    assert!(!h.state().pane.is_running());
    h.get_by_label("K real + synthetic");
    h.get_by_label("0.300 ± 0.050");
    // Case (a) never predicts the class: no precision.
    h.get_by_label("n/a");
    h.get_by_label_contains("C2ST accuracy 0.610 ± 0.030");
    h.get_by_label("Open report folder");
    // A failure is shown, and the last results stay.
    h.state_mut().pane.on_ended(
        dir.path().join("report"),
        Err("the test data has no crack patch".into()),
    );
    h.run_steps(2);
    h.get_by_label("the test data has no crack patch");
    assert!(h.state().pane.results().is_some());
}

#[test]
fn run_without_a_report_folder_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut h, rx) = harness(dir.path());
    h.state_mut().pane.out_dir.clear();
    h.get_by_label("Run").click();
    h.run_steps(2);
    assert!(
        !rx.try_iter()
            .any(|c| matches!(c, Command::StartEvaluation(_)))
    );
    assert_eq!(h.state().pane.error(), Some("choose a report folder"));
    h.get_by_label("choose a report folder");
}

#[test]
fn a_dtgan_trained_elsewhere_is_used_instead_of_training_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut h, rx) = harness(dir.path());
    h.get_by_label("DTGAN run").click();
    h.run_steps(1);
    h.get_by_label("DTGAN run").type_text("/server/runs/open");
    h.run_steps(2);
    h.get_by_label("Run").click();
    h.run_steps(3);
    let req = started(&rx);
    assert_eq!(req.dtgan_run, Some(PathBuf::from("/server/runs/open")));
}

#[test]
fn the_classifier_groups_and_the_placement_settings_reach_the_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut h, rx) = harness(dir.path());
    // The defaults are the command line's.
    let defaults = EvalConfig::preset(Preset::Cpu);
    assert_eq!(h.state().pane.candidates, defaults.candidates);
    assert!(h.state().pane.same_effect && h.state().pane.paired_negatives);
    h.get_by_label("Training groups").click();
    h.run_steps(1);
    h.get_by_label("Training groups")
        .type_text("group20085, group92000");
    h.state_mut().pane.candidates = 24;
    h.run_steps(2);
    h.get_by_label("Same effect as the real defect").click();
    h.get_by_label("Paired negatives").click();
    h.run_steps(2);
    h.get_by_label("Run").click();
    h.run_steps(3);
    let req = started(&rx);
    assert_eq!(req.train_groups, ["group20085", "group92000"]);
    assert_eq!(req.config.candidates, 24);
    assert!(!req.config.same_effect, "the box was unticked");
    assert!(!req.config.paired_negatives, "the box was unticked");
}

#[test]
fn the_number_of_paired_negatives_reaches_the_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut h, rx) = harness(dir.path());
    assert_eq!(
        h.state().pane.paired_max,
        0,
        "default: one per synthetic defect"
    );
    h.get_by_label("Run").click();
    h.run_steps(3);
    assert_eq!(started(&rx).config.paired_negatives_max, None);
    let (mut h, rx) = harness(dir.path());
    h.state_mut().pane.paired_max = 100;
    h.run_steps(2);
    h.get_by_label("Run").click();
    h.run_steps(3);
    assert_eq!(started(&rx).config.paired_negatives_max, Some(100));
}

#[test]
fn ticking_max_pooling_reaches_the_classifier_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut h, rx) = harness(dir.path());
    assert!(!h.state().pane.max_pool, "default: the mean alone");
    h.get_by_label("Run").click();
    h.run_steps(3);
    assert!(!started(&rx).config.classifier.max_pool);
    let (mut h, rx) = harness(dir.path());
    h.get_by_label("Max pooling (small defects)").click();
    h.run_steps(2);
    h.get_by_label("Run").click();
    h.run_steps(3);
    assert!(
        started(&rx).config.classifier.max_pool,
        "the box was ticked"
    );
}
