//! egui_kittest tests of the dataset browser: filters change what is listed, clicks select.

use std::sync::Arc;

use crossbeam_channel::Receiver;
use dtgan_studio::imaging::rect::Rect;
use dtgan_studio::project::{ImageEntry, Project, Region, RelPath, Role};
use dtgan_studio::protocol::Command;
use dtgan_studio::ui::browser::BrowserPane;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;

mod common;
use common::panes::{PaneState, pane_harness};

type State = PaneState<BrowserPane>;

/// A project of 3 good images in group `a`, 2 defect images (`spot`, `line`) in group `b`.
fn project(dir: &std::path::Path) -> Project {
    let mut p = Project::open_or_create(dir).expect("create project");
    let mut add = |id: &str, role: Role, group: &str, class: Option<&str>| {
        let rel = RelPath::new(format!("images/{id}.png")).expect("path");
        let abs = p.ensure_parent(&rel).expect("folder");
        image::RgbImage::from_pixel(8, 8, image::Rgb([120, 40, 200]))
            .save(&abs)
            .expect("png");
        let mut e = ImageEntry::new(id, rel, role, group);
        e.width = 8;
        e.height = 8;
        if let Some(c) = class {
            e.class = Some(c.into());
            e.regions.push(Region {
                class: c.into(),
                bbox: Rect::new(1, 1, 2, 2),
            });
        }
        p.manifest.images.push(e);
    };
    for i in 0..3 {
        add(&format!("good-{i}"), Role::Good, "a", None);
    }
    add("defect-spot", Role::Defect, "b", Some("spot"));
    add("defect-line", Role::Defect, "b", Some("line"));
    p.save().expect("save");
    p
}

fn harness(dir: &std::path::Path) -> (Harness<'static, State>, Receiver<Command>) {
    pane_harness(
        BrowserPane::default(),
        Some(Arc::new(project(dir))),
        egui::vec2(1100.0, 700.0),
        BrowserPane::ui,
    )
}

fn listed_ids(h: &Harness<'_, State>) -> Vec<String> {
    let s = h.state();
    s.pane
        .listed()
        .iter()
        .map(|&i| s.project().manifest.images[i].id.clone())
        .collect()
}

#[test]
fn role_filter_changes_the_listing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut h, _rx) = harness(dir.path());
    h.run_steps(2);
    assert_eq!(listed_ids(&h).len(), 5);
    assert!(
        h.query_by_label("defect-spot").is_some(),
        "defect cell shown before filtering"
    );

    h.get_by_label("Role").click();
    h.run_steps(2);
    h.get_by_label("good").click();
    h.run_steps(3);

    assert_eq!(listed_ids(&h), vec!["good-0", "good-1", "good-2"]);
    assert!(
        h.query_by_label("defect-spot").is_none(),
        "defect cell hidden after filtering"
    );
    assert!(h.query_by_label("good-1").is_some());
    assert_eq!(
        h.state().selection.order,
        vec!["good-0", "good-1", "good-2"],
        "N follows the listing"
    );
}

#[test]
fn class_filter_and_search_narrow_the_listing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut h, _rx) = harness(dir.path());
    h.run_steps(2);
    h.get_by_label("Class").click();
    h.run_steps(2);
    h.get_by_label("line (1)").click();
    h.run_steps(3);
    assert_eq!(listed_ids(&h), vec!["defect-line"]);

    h.get_by_label("Clear filters").click();
    h.run_steps(2);
    assert_eq!(listed_ids(&h).len(), 5);
    h.get_by_label("Search").click();
    h.run_steps(1);
    h.get_by_label("Search").type_text("GOOD-2");
    h.run_steps(3);
    assert_eq!(listed_ids(&h), vec!["good-2"], "search is case-insensitive");
}

#[test]
fn clicking_a_cell_selects_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut h, _rx) = harness(dir.path());
    h.run_steps(2);
    h.get_by_label("defect-spot").click();
    h.run_steps(2);
    assert_eq!(h.state().selection.current.as_deref(), Some("defect-spot"));
}
