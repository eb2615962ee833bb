//! End-to-end tests of the painter pane driven through egui_kittest: pointer strokes, shortcuts,
//! buttons, and the commands the pane sends to the worker.

use std::sync::Arc;

use crossbeam_channel::Receiver;
use dtgan_studio::project::Project;
use dtgan_studio::project::manifest::Manifest;
use dtgan_studio::protocol::Command;
use dtgan_studio::ui::Selection;
use dtgan_studio::ui::painter::PainterPane;
use egui::{Event, Key, Modifiers, PointerButton, Pos2};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use image::{GrayImage, Luma, RgbImage};

mod common;
use common::panes::{PaneState, pane_harness_with};

const W: u32 = 64;
const H: u32 = 48;

type State = PaneState<PainterPane>;

fn picture() -> Arc<RgbImage> {
    Arc::new(RgbImage::from_fn(W, H, |x, y| {
        image::Rgb([(x * 4) as u8, (y * 5) as u8, 90])
    }))
}

/// A harness showing image "a" (of "a", "b", "c") with `mask`, and the worker's end of the channel.
fn setup_with(mask: GrayImage, capacity: usize) -> (Harness<'static, State>, Receiver<Command>) {
    setup_full(mask, capacity, None)
}

fn setup_full(
    mask: GrayImage,
    capacity: usize,
    project: Option<Arc<Project>>,
) -> (Harness<'static, State>, Receiver<Command>) {
    let mut pane = PainterPane::new();
    pane.set_image("a".into(), picture(), mask, GrayImage::new(W, H));
    let selection = Selection {
        current: Some("a".into()),
        order: vec!["a".into(), "b".into(), "c".into()],
        ..Default::default()
    };
    pane_harness_with(
        pane,
        project,
        selection,
        egui::vec2(1200.0, 900.0),
        capacity,
        PainterPane::ui,
    )
}

fn setup() -> (Harness<'static, State>, Receiver<Command>) {
    setup_with(GrayImage::new(W, H), 64)
}

fn screen(h: &Harness<'_, State>, x: f32, y: f32) -> Pos2 {
    h.state().pane.view().image_to_screen(Pos2::new(x, y))
}

/// Drags the primary button from one image point to another in a single jump.
fn drag(h: &mut Harness<'_, State>, from: (f32, f32), to: (f32, f32)) {
    let a = screen(h, from.0, from.1);
    let b = screen(h, to.0, to.1);
    h.event(Event::PointerMoved(a));
    h.event(Event::PointerButton {
        pos: a,
        button: PointerButton::Primary,
        pressed: true,
        modifiers: Modifiers::NONE,
    });
    h.event(Event::PointerMoved(b));
    h.event(Event::PointerButton {
        pos: b,
        button: PointerButton::Primary,
        pressed: false,
        modifiers: Modifiers::NONE,
    });
    h.run();
}

fn mask(h: &Harness<'_, State>) -> GrayImage {
    h.state().pane.mask().expect("an image is loaded").clone()
}

fn drain(rx: &Receiver<Command>) -> Vec<Command> {
    rx.try_iter().collect()
}

fn last_save(cmds: &[Command]) -> Option<(&str, &GrayImage, &GrayImage)> {
    cmds.iter().rev().find_map(|c| match c {
        Command::SaveMasks { id, mask, box_mask } => Some((id.as_str(), mask, box_mask)),
        _ => None,
    })
}

/// Distance from pixel centre `(x, y)` to the segment `a -> b`.
fn dist_to_segment(x: u32, y: u32, a: (f32, f32), b: (f32, f32)) -> f32 {
    let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let t = (((px - a.0) * dx + (py - a.1) * dy) / (dx * dx + dy * dy)).clamp(0.0, 1.0);
    ((px - a.0 - t * dx).powi(2) + (py - a.1 - t * dy).powi(2)).sqrt()
}

#[test]
fn brush_drag_paints_the_stroke_only_and_undo_restores() {
    let (mut h, _rx) = setup();
    let size = h.state().pane.settings().size;
    let (a, b) = ((8.5, 24.5), (55.5, 24.5));
    drag(&mut h, a, b);
    let m = mask(&h);
    let r = size as f32 / 2.0;
    for (x, y, p) in m.enumerate_pixels() {
        assert!(
            p[0] == 0 || p[0] == 255,
            "non-binary value {} at {x},{y}",
            p[0]
        );
        let d = dist_to_segment(x, y, a, b);
        if d <= r - 1.0 {
            assert_eq!(p[0], 255, "gap in the stroke at {x},{y}");
        }
        if d > r + 1.0 {
            assert_eq!(p[0], 0, "paint outside the stroke at {x},{y}");
        }
    }
    assert_eq!(m.get_pixel(2, 2)[0], 0);
    assert_eq!(m.get_pixel(60, 45)[0], 0);
    assert!(h.state().pane.is_dirty());

    h.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    h.run();
    assert!(mask(&h).iter().all(|&p| p == 0), "undo left paint behind");

    h.key_press_modifiers(Modifiers::COMMAND, Key::Y);
    h.run();
    assert_eq!(mask(&h), m, "redo did not re-apply the stroke");
}

#[test]
fn close_bracket_grows_and_open_bracket_shrinks_the_brush() {
    let (mut h, _rx) = setup();
    let before = h.state().pane.settings().size;
    h.key_press(Key::CloseBracket);
    h.run();
    let grown = h.state().pane.settings().size;
    assert!(grown > before, "{grown} !> {before}");
    h.key_press(Key::OpenBracket);
    h.key_press(Key::OpenBracket);
    h.run();
    assert!(h.state().pane.settings().size < grown);
}

fn blob() -> GrayImage {
    let mut m = GrayImage::new(W, H);
    for y in 10..15 {
        for x in 20..30 {
            m.put_pixel(x, y, Luma([255]));
        }
    }
    m
}

#[test]
fn box_from_mask_uses_the_project_margin() {
    let mut manifest = Manifest::new("t");
    manifest.box_margin = 3;
    let project = Arc::new(Project {
        root: std::env::temp_dir().join("painter-margin-test"),
        manifest,
    });
    let (mut h, _rx) = setup_full(blob(), 64, Some(project));
    h.get_by_label("Box from mask").click();
    h.run();
    let boxes = h.state().pane.box_mask().expect("loaded").clone();
    for (x, y, p) in boxes.enumerate_pixels() {
        let inside = (17..33).contains(&x) && (7..18).contains(&y);
        assert_eq!(p[0] == 255, inside, "box pixel {x},{y} = {}", p[0]);
    }
}

#[test]
fn box_from_mask_gives_the_grown_rectangle() {
    let (mut h, _rx) = setup_with(blob(), 64);
    h.get_by_label("Box from mask").click();
    h.run();
    // Default margin 8 around x 20..=29, y 10..=14.
    let boxes = h.state().pane.box_mask().expect("loaded").clone();
    for (x, y, p) in boxes.enumerate_pixels() {
        let inside = (12..38).contains(&x) && (2..23).contains(&y);
        assert_eq!(p[0] == 255, inside, "box pixel {x},{y} = {}", p[0]);
    }
    h.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    h.run();
    assert!(
        h.state()
            .pane
            .box_mask()
            .expect("loaded")
            .iter()
            .all(|&p| p == 0)
    );
}

fn check_saved_png(mask: &GrayImage) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("masks/a.png");
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    dtgan_studio::imaging::io::save_mask(&path, mask).expect("save mask");
    let back = image::open(&path).expect("reopen").to_luma8();
    assert_eq!(&back, mask);
    assert!(back.iter().all(|&p| p == 0 || p == 255));
}

#[test]
fn save_button_and_ctrl_s_send_the_painted_binary_mask() {
    let (mut h, rx) = setup();
    drag(&mut h, (10.0, 10.0), (30.0, 30.0));
    drain(&rx);
    h.get_by_label("Save").click();
    h.run();
    let cmds = drain(&rx);
    let (id, sent, boxes) = last_save(&cmds).expect("Save sent SaveMasks");
    assert_eq!(id, "a");
    assert_eq!(sent, &mask(&h));
    assert!(sent.contains(&255));
    assert!(sent.iter().all(|&p| p == 0 || p == 255));
    assert_eq!(boxes.dimensions(), (W, H));
    check_saved_png(sent);
    assert!(!h.state().pane.is_dirty());

    drag(&mut h, (40.0, 40.0), (50.0, 20.0));
    assert!(h.state().pane.is_dirty());
    h.key_press_modifiers(Modifiers::COMMAND, Key::S);
    h.run();
    let cmds = drain(&rx);
    let (_, sent, _) = last_save(&cmds).expect("Ctrl+S sent SaveMasks");
    assert_eq!(sent, &mask(&h));
    h.state_mut().pane.on_masks_saved("a");
    assert!(!h.state().pane.is_dirty());
}

#[test]
fn n_saves_and_selects_the_next_image() {
    let (mut h, rx) = setup();
    drag(&mut h, (5.0, 5.0), (20.0, 6.0));
    let painted = mask(&h);
    h.key_press(Key::N);
    h.run();
    assert_eq!(h.state().selection.current.as_deref(), Some("b"));
    let cmds = drain(&rx);
    let save_at = cmds
        .iter()
        .position(
            |c| matches!(c, Command::SaveMasks { id, mask, .. } if id == "a" && *mask == painted),
        )
        .expect("the painted mask of a was saved");
    let load_at = cmds
        .iter()
        .position(|c| matches!(c, Command::LoadImage { id } if id == "b"))
        .expect("b was requested");
    assert!(save_at < load_at, "saved after switching");
    assert_eq!(
        cmds.iter()
            .filter(|c| matches!(c, Command::LoadImage { .. }))
            .count(),
        1,
        "LoadImage must be sent once"
    );
    h.get_by_label("Loading…");

    // A late answer for the old image is ignored; the requested one is shown.
    h.state_mut().pane.set_image(
        "a".into(),
        picture(),
        GrayImage::new(W, H),
        GrayImage::new(W, H),
    );
    assert_eq!(h.state().pane.current_id(), None);
    h.state_mut().pane.set_image(
        "b".into(),
        picture(),
        GrayImage::new(W, H),
        GrayImage::new(W, H),
    );
    h.run();
    assert_eq!(h.state().pane.current_id(), Some("b"));
    assert!(
        drain(&rx)
            .iter()
            .all(|c| !matches!(c, Command::LoadImage { .. }))
    );
}

#[test]
fn full_channel_keeps_the_mask_dirty_and_retries() {
    let (mut h, rx) = setup_with(GrayImage::new(W, H), 1);
    drag(&mut h, (10.0, 10.0), (20.0, 10.0));
    // Fill the channel so the save cannot go out.
    h.state()
        .commands
        .send(Command::Shutdown)
        .expect("room for one");
    h.get_by_label("Save").click();
    h.run();
    assert!(h.state().pane.is_dirty(), "work must not be marked saved");
    assert!(h.state().status.is_error);
    assert!(matches!(rx.try_recv(), Ok(Command::Shutdown)));
    h.run_steps(2);
    let cmds = drain(&rx);
    let (_, sent, _) = last_save(&cmds).expect("the save was retried");
    assert_eq!(sent, &mask(&h));
    assert!(!h.state().pane.is_dirty());
}

#[test]
fn autosave_after_idle() {
    let (mut h, rx) = setup();
    drag(&mut h, (30.0, 30.0), (40.0, 35.0));
    drain(&rx);
    // Steps are 0.25 s of simulated time; 2 s of idling triggers the autosave.
    h.run_steps(12);
    let cmds = drain(&rx);
    assert_eq!(last_save(&cmds).expect("autosaved").1, &mask(&h));
    assert!(!h.state().pane.is_dirty());
}

#[test]
fn wheel_zooms_towards_the_cursor_and_escape_fits() {
    let (mut h, _rx) = setup();
    let fitted = h.state().pane.view();
    let cursor = screen(&h, 16.0, 12.0);
    h.event(Event::PointerMoved(cursor));
    h.event(Event::MouseWheel {
        unit: egui::MouseWheelUnit::Line,
        delta: egui::vec2(0.0, 2.0),
        phase: egui::TouchPhase::Move,
        source: egui::MouseWheelSource::Wheel,
        modifiers: Modifiers::NONE,
    });
    h.run();
    let zoomed = h.state().pane.view();
    assert!(zoomed.zoom > fitted.zoom * 1.2);
    let under = zoomed.screen_to_image(cursor);
    assert!((under - Pos2::new(16.0, 12.0)).length() < 0.01, "{under:?}");
    h.key_press(Key::Escape);
    h.run();
    assert!((h.state().pane.view().zoom - fitted.zoom).abs() < 1e-4);
}

#[test]
fn box_tool_on_box_layer_and_help_toggle() {
    let (mut h, _rx) = setup();
    h.key_press(Key::B);
    h.key_press(Key::Num4);
    h.run();
    drag(&mut h, (10.0, 8.0), (20.0, 16.0));
    let boxes = h.state().pane.box_mask().expect("loaded").clone();
    for (x, y, p) in boxes.enumerate_pixels() {
        let inside = (10..20).contains(&x) && (8..16).contains(&y);
        assert_eq!(p[0] == 255, inside, "box pixel {x},{y}");
    }
    assert!(
        mask(&h).iter().all(|&p| p == 0),
        "the pixel mask was not the active layer"
    );

    assert!(h.query_by_label("Keyboard shortcuts").is_none());
    h.key_press(Key::H);
    h.run();
    assert!(h.query_by_label("Keyboard shortcuts").is_some());
}

fn click(h: &mut Harness<'_, State>, x: f32, y: f32) {
    let p = screen(h, x, y);
    h.event(Event::PointerMoved(p));
    for pressed in [true, false] {
        h.event(Event::PointerButton {
            pos: p,
            button: PointerButton::Primary,
            pressed,
            modifiers: Modifiers::NONE,
        });
    }
    h.run();
}

#[test]
fn polygon_closes_with_enter_and_escape_cancels() {
    let (mut h, _rx) = setup();
    h.key_press(Key::Num3);
    h.run();
    // Escape drops an unfinished polygon: Enter afterwards fills nothing.
    click(&mut h, 40.0, 30.0);
    click(&mut h, 50.0, 30.0);
    click(&mut h, 50.0, 40.0);
    h.key_press(Key::Escape);
    h.key_press(Key::Enter);
    h.run();
    assert!(mask(&h).iter().all(|&p| p == 0));

    for (x, y) in [(10.0, 10.0), (30.0, 10.0), (30.0, 20.0), (10.0, 20.0)] {
        click(&mut h, x, y);
    }
    assert!(mask(&h).iter().all(|&p| p == 0), "filled before closing");
    h.key_press(Key::Enter);
    h.run();
    for (x, y, p) in mask(&h).enumerate_pixels() {
        let inside = (10..30).contains(&x) && (10..20).contains(&y);
        assert_eq!(p[0] == 255, inside, "polygon pixel {x},{y}");
    }
}

#[test]
fn middle_drag_pans_without_painting() {
    let (mut h, _rx) = setup();
    let before = h.state().pane.view();
    let a = screen(&h, 30.0, 20.0);
    let b = a + egui::vec2(50.0, -30.0);
    h.event(Event::PointerMoved(a));
    h.event(Event::PointerButton {
        pos: a,
        button: PointerButton::Middle,
        pressed: true,
        modifiers: Modifiers::NONE,
    });
    h.event(Event::PointerMoved(b));
    h.event(Event::PointerButton {
        pos: b,
        button: PointerButton::Middle,
        pressed: false,
        modifiers: Modifiers::NONE,
    });
    h.run();
    let after = h.state().pane.view();
    assert!((after.origin - before.origin - egui::vec2(50.0, -30.0)).length() < 1e-3);
    assert_eq!(after.zoom, before.zoom);
    assert!(mask(&h).iter().all(|&p| p == 0), "panning painted");
}

#[test]
fn a_failed_load_is_shown_and_not_retried_in_a_loop() {
    let (mut h, rx) = setup();
    h.state_mut().selection.current = Some("b".into());
    h.run_steps(2);
    let loads = drain(&rx)
        .into_iter()
        .filter(|c| matches!(c, Command::LoadImage { id } if id == "b"))
        .count();
    assert_eq!(loads, 1);
    h.state_mut()
        .pane
        .on_load_failed("b.png: not a readable image".into());
    h.run_steps(3);
    assert!(
        h.query_by_label_contains("Cannot open b").is_some(),
        "the error is shown"
    );
    assert!(
        drain(&rx).is_empty(),
        "no new request while the selection stays on the broken image"
    );
    h.state_mut().selection.current = Some("c".into());
    h.run_steps(2);
    assert!(
        drain(&rx)
            .iter()
            .any(|c| matches!(c, Command::LoadImage { id } if id == "c"))
    );
}
