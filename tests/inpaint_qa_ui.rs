//! egui_kittest tests of the Inpaint QA pane: the seam-sorted list, selection and loading,
//! keyboard review, "accept all below threshold", the viewer's toggles and the Make twins form.

use std::sync::Arc;

use crossbeam_channel::Receiver;
use dtgan_studio::imaging::exemplar::{self, CopyRepeats, Turns};
use dtgan_studio::imaging::rect::Rect;
use dtgan_studio::inpaint::apply::{ApplyRequest, RIM_RING};
use dtgan_studio::project::{ImageEntry, InpaintInfo, Project, RelPath, Role, TwinStatus};
use dtgan_studio::protocol::Command;
use dtgan_studio::ui::inpaint_qa::InpaintQaPane;
use egui::{Event, Key, Modifiers, PointerButton, Pos2};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;

mod common;
use common::panes::{PaneState, pane_harness};
use image::{GrayImage, Luma, Rgb, RgbImage};

const W: u32 = 32;
const H: u32 = 24;

type State = PaneState<InpaintQaPane>;

/// (twin id, defect id, seam, status): the outlier threshold of these seams is about 1.54, so
/// only `t-bad` is flagged.
const TWINS: [(&str, &str, f64, TwinStatus); 5] = [
    ("t-a", "d-a", 1.2, TwinStatus::PendingReview),
    ("t-c", "d-c", 1.0, TwinStatus::Accepted),
    ("t-bad", "d-bad", 9.0, TwinStatus::PendingReview),
    ("t-d", "d-d", 0.9, TwinStatus::Rejected),
    ("t-b", "d-b", 1.1, TwinStatus::PendingReview),
];

/// A project with one defect image and one inpainted twin per row of [`TWINS`].
fn project(dir: &std::path::Path) -> Project {
    let mut p = Project::open_or_create(dir).expect("create project");
    let add = |id: &str, role: Role| -> ImageEntry {
        let rel = RelPath::new(format!("images/{id}.png")).expect("path");
        let abs = p.ensure_parent(&rel).expect("folder");
        RgbImage::from_pixel(W, H, Rgb([90, 90, 90]))
            .save(&abs)
            .expect("png");
        let mut e = ImageEntry::new(id, rel, role, "g");
        e.width = W;
        e.height = H;
        e
    };
    let mut entries = Vec::new();
    for (twin, defect, seam, status) in TWINS {
        let mut d = add(defect, Role::Defect);
        d.class = Some(if seam > 1.05 { "spot" } else { "line" }.into());
        d.twin = Some(twin.into());
        let mut t = add(twin, Role::Template);
        t.twin_of = Some(defect.into());
        t.twin_status = Some(status);
        t.inpaint = Some(InpaintInfo {
            checkpoint: "0".repeat(64),
            seam,
            ..Default::default()
        });
        entries.push(d);
        entries.push(t);
    }
    p.manifest.images.extend(entries);
    p.save().expect("save");
    p
}

fn harness(dir: &std::path::Path) -> (Harness<'static, State>, Receiver<Command>) {
    let (mut h, rx) = pane_harness(
        InpaintQaPane::new(),
        Some(Arc::new(project(dir))),
        egui::vec2(1200.0, 800.0),
        InpaintQaPane::ui,
    );
    h.run_steps(2);
    (h, rx)
}

fn listed(h: &Harness<'_, State>) -> Vec<String> {
    h.state()
        .pane
        .listed()
        .iter()
        .map(|r| r.id.clone())
        .collect()
}

fn drain(rx: &Receiver<Command>) -> Vec<Command> {
    rx.try_iter().collect()
}

/// The twin-making requests among `cmds`.
fn applies(cmds: &[Command]) -> Vec<&ApplyRequest> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::ApplyInpaint(r) => Some(&**r),
            _ => None,
        })
        .collect()
}

/// Clicks *Make twins* and returns the requests it sent.
fn make_twins(h: &mut Harness<'static, State>, rx: &Receiver<Command>) -> Vec<ApplyRequest> {
    h.get_by_label("Make twins").click();
    h.run_steps(3);
    applies(&drain(rx)).into_iter().cloned().collect()
}

fn loads(cmds: &[Command]) -> Vec<&str> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::LoadTwin { id } => Some(id.as_str()),
            _ => None,
        })
        .collect()
}

fn reviews(cmds: &[Command]) -> Vec<(Vec<String>, TwinStatus)> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::SetTwinStatus { ids, status } => Some((ids.clone(), *status)),
            _ => None,
        })
        .collect()
}

/// Clicks the row of defect image `defect`.
fn click_row(h: &mut Harness<'_, State>, defect: &str) {
    h.get_by_label(defect).click();
    h.run_steps(3);
}

/// The before image is dark, the twin brighter inside the box (x 8..20, y 6..16).
fn load(h: &mut Harness<'_, State>, id: &str) {
    let defect = Arc::new(RgbImage::from_pixel(W, H, Rgb([40, 40, 40])));
    let mut twin = (*defect).clone();
    let mut mask = GrayImage::new(W, H);
    for y in 6..16 {
        for x in 8..20 {
            twin.put_pixel(x, y, Rgb([200, 180, 160]));
            mask.put_pixel(x, y, Luma([255]));
        }
    }
    h.state_mut()
        .pane
        .on_twin_loaded(id.into(), defect, Arc::new(twin), mask);
    h.run_steps(3);
}

fn textures(h: &Harness<'_, State>) -> usize {
    h.ctx.tex_manager().read().num_allocated()
}

#[test]
fn list_is_sorted_worst_seam_first_flags_outliers_and_counts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut h, _rx) = harness(dir.path());
    assert_eq!(listed(&h), ["t-bad", "t-a", "t-b", "t-c", "t-d"]);
    let tops: Vec<f32> = ["d-bad", "d-a", "d-b", "d-c", "d-d"]
        .iter()
        .map(|d| h.get_by_label(d).rect().top())
        .collect();
    assert!(
        tops.windows(2).all(|w| w[0] < w[1]),
        "rows drawn worst first: {tops:?}"
    );
    assert_eq!(
        h.query_all_by_label("!").count(),
        1,
        "only the outlier is flagged"
    );
    assert!(
        h.query_by_label("3 pending, 1 accepted, 1 rejected")
            .is_some()
    );

    h.get_by_label("Best first").click();
    h.run_steps(2);
    assert_eq!(listed(&h), ["t-d", "t-c", "t-b", "t-a", "t-bad"]);
}

#[test]
fn status_filter_lists_only_pending_twins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut h, _rx) = harness(dir.path());
    h.get_by_label("Status").click();
    h.run_steps(2);
    h.get_by_label("Pending").click();
    h.run_steps(3);
    assert_eq!(listed(&h), ["t-bad", "t-a", "t-b"]);
    assert!(h.query_by_label("d-c").is_none(), "accepted twin hidden");
}

#[test]
fn selecting_a_twin_sends_load_twin_once_per_selection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut h, rx) = harness(dir.path());
    assert!(drain(&rx).is_empty(), "nothing requested before a click");
    click_row(&mut h, "d-a");
    assert_eq!(h.state().pane.selected(), Some("t-a"));
    h.run_steps(5);
    assert_eq!(loads(&drain(&rx)), ["t-a"]);
    h.run_steps(5);
    assert!(drain(&rx).is_empty(), "not sent again while waiting");
    load(&mut h, "t-a");
    h.run_steps(3);
    assert!(drain(&rx).is_empty(), "not sent again once loaded");
    click_row(&mut h, "d-b");
    assert_eq!(loads(&drain(&rx)), ["t-b"]);
}

#[test]
fn a_accepts_r_rejects_and_the_selection_moves_to_the_next_pending_twin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut h, rx) = harness(dir.path());
    click_row(&mut h, "d-bad");
    drain(&rx);

    h.key_press(Key::A);
    h.run_steps(3);
    let cmds = drain(&rx);
    assert_eq!(
        reviews(&cmds),
        [(vec!["t-bad".to_string()], TwinStatus::Accepted)]
    );
    assert_eq!(h.state().pane.selected(), Some("t-a"), "next pending twin");
    assert_eq!(loads(&cmds), ["t-a"], "the next twin is requested");

    h.key_press(Key::R);
    h.run_steps(3);
    let cmds = drain(&rx);
    assert_eq!(
        reviews(&cmds),
        [(vec!["t-a".to_string()], TwinStatus::Rejected)]
    );
    assert_eq!(
        h.state().pane.selected(),
        Some("t-b"),
        "accepted t-c is skipped"
    );
}

#[test]
fn keys_typed_into_the_run_field_review_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut h, rx) = harness(dir.path());
    click_row(&mut h, "d-a");
    h.get_by_label("Inpainting run").click();
    h.run_steps(2);
    h.key_press(Key::A);
    h.key_press(Key::R);
    h.run_steps(3);
    assert!(reviews(&drain(&rx)).is_empty());
    assert_eq!(h.state().pane.selected(), Some("t-a"));
}

#[test]
fn accept_all_below_the_outlier_threshold_accepts_the_pending_twins_below_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut h, rx) = harness(dir.path());
    assert!(h.query_by_label("2 pending below").is_some());
    h.get_by_label("Accept all below threshold").click();
    h.run_steps(3);
    let mut r = reviews(&drain(&rx));
    assert_eq!(r.len(), 1, "one command for all: {r:?}");
    let (mut ids, status) = r.remove(0);
    ids.sort();
    assert_eq!(ids, ["t-a", "t-b"], "not the outlier, not reviewed ones");
    assert_eq!(status, TwinStatus::Accepted);
}

#[test]
fn accept_all_below_a_threshold_typed_in() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut h, rx) = harness(dir.path());
    h.get_by_label("Seam threshold").set_value_accesskit(1.15);
    h.run_steps(3);
    assert!(h.query_by_label("1 pending below").is_some());
    h.get_by_label("Accept all below threshold").click();
    h.run_steps(3);
    assert_eq!(
        reviews(&drain(&rx)),
        [(vec!["t-b".to_string()], TwinStatus::Accepted)]
    );
}

#[test]
fn loaded_twin_shows_boxes_toggles_and_before_while_tab_is_held() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut h, _rx) = harness(dir.path());
    click_row(&mut h, "d-a");
    load(&mut h, "t-a");
    assert_eq!(h.state().pane.loaded_id(), Some("t-a"));
    assert!(h.query_by_label("Twin canvas").is_some());
    assert_eq!(h.state().pane.box_outlines(), [Rect::new(8, 6, 12, 10)]);

    let uploaded = textures(&h);
    h.run_steps(5);
    assert_eq!(textures(&h), uploaded, "no upload per frame");

    assert!(!h.state().pane.heat_map_shown());
    h.get_by_label("Heat map").click();
    h.run_steps(3);
    assert!(h.state().pane.heat_map_shown());
    assert_eq!(textures(&h), uploaded + 1, "heat map uploaded once");
    h.run_steps(3);
    assert_eq!(textures(&h), uploaded + 1);

    assert!(h.state().pane.box_outline_shown());
    h.get_by_label("Box outline").click();
    h.run_steps(3);
    assert!(!h.state().pane.box_outline_shown());

    assert!(!h.state().pane.showing_before());
    h.key_down(Key::Tab);
    h.run_steps(3);
    assert!(h.state().pane.showing_before(), "held Tab shows before");
    h.key_up(Key::Tab);
    h.run_steps(2);
    assert!(!h.state().pane.showing_before(), "released Tab shows after");
    assert!(
        !h.ctx.text_edit_focused(),
        "Tab did not move the keyboard into the run folder field"
    );
}

#[test]
fn dragging_on_the_canvas_moves_the_split() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut h, _rx) = harness(dir.path());
    click_row(&mut h, "d-a");
    load(&mut h, "t-a");
    let view = h.state().pane.view();
    let at = |x: f32| view.image_to_screen(Pos2::new(x, H as f32 / 2.0));
    let (from, to) = (at(W as f32 * 0.5), at(W as f32 * 0.25));
    h.event(Event::PointerMoved(from));
    h.event(Event::PointerButton {
        pos: from,
        button: PointerButton::Primary,
        pressed: true,
        modifiers: Modifiers::NONE,
    });
    h.run();
    h.event(Event::PointerMoved(to));
    h.run();
    h.event(Event::PointerButton {
        pos: to,
        button: PointerButton::Primary,
        pressed: false,
        modifiers: Modifiers::NONE,
    });
    h.run();
    let split = h.state().pane.split();
    assert!((split - 0.25).abs() < 0.02, "split {split}");
}

#[test]
fn stale_twins_are_ignored_and_load_failures_shown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut h, _rx) = harness(dir.path());
    click_row(&mut h, "d-a");
    load(&mut h, "t-b");
    assert_eq!(h.state().pane.loaded_id(), None, "t-b was not asked for");
    h.state_mut()
        .pane
        .on_load_failed("images/t-a.png: no such file".into());
    h.run_steps(2);
    assert!(
        h.query_by_label_contains("no such file").is_some(),
        "the error is shown"
    );
}

#[test]
fn make_twins_needs_a_run_folder_then_sends_apply_inpaint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut h, rx) = harness(dir.path());
    h.get_by_label("Make twins").click();
    h.run_steps(2);
    assert!(drain(&rx).is_empty(), "disabled without a run folder");

    h.get_by_label("Inpainting run").click();
    h.run_steps(1);
    h.get_by_label("Inpainting run")
        .type_text("/runs/inpaint-1");
    h.run_steps(2);
    h.get_by_label("Class").click();
    h.run_steps(2);
    h.get_by_label("spot").click();
    h.run_steps(2);
    h.get_by_label("Rim inwards").click();
    h.run_steps(2);
    h.get_by_label("Make twins").click();
    h.run_steps(3);
    let cmds = drain(&rx);
    let req = *applies(&cmds).first().expect("ApplyInpaint sent");
    assert_eq!(req.run, std::path::PathBuf::from("/runs/inpaint-1"));
    assert_eq!(req.project, h.state().project().root);
    assert_eq!(req.class.as_deref(), Some("spot"));
    assert!(!req.redo_accepted);
    assert_eq!((req.ensemble, req.peel), (false, RIM_RING));
    assert_eq!(req.exemplar, None, "Copy repeats is off until ticked");

    // While twins are made, the form offers Cancel instead; the end brings Make twins back.
    assert!(h.query_by_label("Make twins").is_none());
    h.get_by_label("Cancel").click();
    h.run_steps(2);
    assert!(
        drain(&rx)
            .iter()
            .any(|c| matches!(c, Command::CancelInpaint)),
        "CancelInpaint sent"
    );
    h.state_mut().pane.on_making_ended();
    h.run_steps(2);
    assert!(h.query_by_label("Make twins").is_some());
    assert!(h.query_by_label("Cancel").is_none());

    // Unticked, the fill is in one pass again; Copy repeats ticked asks for the studio's
    // default limit, without turns.
    h.get_by_label("Rim inwards").click();
    h.get_by_label("Copy repeats").click();
    h.run_steps(2);
    let sent: Vec<_> = make_twins(&mut h, &rx)
        .iter()
        .map(|r| (r.peel, r.exemplar))
        .collect();
    assert_eq!(
        sent,
        vec![(
            0,
            Some(CopyRepeats {
                max_mismatch: exemplar::DEFAULT_MAX_MISMATCH,
                turns: Turns::None,
                references: false,
            })
        )]
    );

    // With copying on, the group's good images may be sources too.
    h.state_mut().pane.on_making_ended();
    h.run_steps(2);
    h.get_by_label("…and from good images").click();
    h.run_steps(2);
    let sent: Vec<_> = make_twins(&mut h, &rx)
        .iter()
        .map(|r| r.exemplar.map(|x| x.references))
        .collect();
    assert_eq!(sent, vec![Some(true)]);
}

#[test]
fn a_new_project_from_the_worker_refreshes_statuses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut h, _rx) = harness(dir.path());
    assert!(
        h.query_by_label("3 pending, 1 accepted, 1 rejected")
            .is_some()
    );
    // What the worker does after `SetTwinStatus`: save and send the new project.
    let mut saved = (**h.state().project()).clone();
    for e in &mut saved.manifest.images {
        if e.id == "t-bad" {
            e.twin_status = Some(TwinStatus::Rejected);
        }
    }
    h.state_mut().project = Some(Arc::new(saved));
    h.run_steps(2);
    assert!(
        h.query_by_label("2 pending, 1 accepted, 2 rejected")
            .is_some()
    );
    let bad = h
        .state()
        .pane
        .listed()
        .iter()
        .find(|r| r.id == "t-bad")
        .map(|r| r.status);
    assert_eq!(bad, Some(TwinStatus::Rejected));
}

/// Two canvases showing the same image share zoom and pan through `SharedView`; a view of
/// another image is left alone.
#[test]
fn canvases_of_one_image_share_zoom_and_pan() {
    use dtgan_studio::ui::canvas::{ImageCanvas, SharedView};
    struct S {
        a: ImageCanvas,
        b: ImageCanvas,
        shared: Option<SharedView>,
        which: u8,
    }
    let mut h = Harness::builder()
        .with_size(egui::vec2(400.0, 300.0))
        .build_ui_state(
            |ui, s: &mut S| {
                let size = egui::vec2(100.0, 80.0);
                let canvas = if s.which == 0 { &mut s.a } else { &mut s.b };
                canvas.show_shared(ui, size, "canvas", "img", &mut s.shared);
            },
            S {
                a: ImageCanvas::new(),
                b: ImageCanvas::new(),
                shared: None,
                which: 0,
            },
        );
    h.run();
    let first = h
        .state()
        .shared
        .clone()
        .expect("canvas a published its view");
    assert_eq!(first.image, "img");
    // Someone (the other pane) zooms in and pans.
    let mut changed = first.clone();
    changed.zoom = first.zoom * 3.0;
    changed.offset += egui::vec2(-40.0, -25.0);
    changed.version += 1;
    h.state_mut().shared = Some(changed.clone());
    h.state_mut().which = 1;
    h.run();
    let b = h.state().b.view();
    assert!(
        (b.zoom - changed.zoom).abs() < 1e-6,
        "b took the zoom: {}",
        b.zoom
    );
    assert_eq!(
        h.state().shared.as_ref().map(|s| s.version),
        Some(changed.version)
    );
    // Back on a: it takes the change too.
    h.state_mut().which = 0;
    h.run();
    assert!((h.state().a.view().zoom - changed.zoom).abs() < 1e-6);
    // A view of another image is not taken.
    let mut other = changed.clone();
    other.image = "other".into();
    other.zoom = 0.5;
    other.version += 1;
    h.state_mut().shared = Some(other);
    h.run();
    assert!((h.state().a.view().zoom - changed.zoom).abs() < 1e-6);
    assert_eq!(
        h.state().shared.as_ref().map(|s| s.image.as_str()),
        Some("img")
    );
}
