//! The dataset browser: a virtualised thumbnail grid with filters, counts, search and import.
//!
//! Only the rows on screen are laid out (`ScrollArea::show_rows`), and only their thumbnails are
//! requested, so a project of tens of thousands of images scrolls as smoothly as a small one.

use std::path::PathBuf;
use std::sync::Arc;

use egui::{Color32, Rect, Sense, Vec2};

use super::thumbnails::{Thumb, ThumbnailCache};
use super::{PaneContext, import_dialog::ImportDialog};
use crate::project::Project;
use crate::project::manifest::Role;
use crate::project::stats::{ImageFilter, ProjectStats, StatusFilter};

/// Colour that marks each role in the grid.
pub fn role_color(role: Role) -> Color32 {
    match role {
        Role::Good => Color32::from_rgb(80, 170, 90),
        Role::Defect => Color32::from_rgb(215, 80, 70),
        Role::Template => Color32::from_rgb(90, 140, 215),
    }
}

/// Filtered listing cached until the project or the filter changes.
struct Listing {
    project: Arc<Project>,
    filter: ImageFilter,
    indices: Vec<usize>,
    stats: ProjectStats,
}

/// The dataset browser pane.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct BrowserPane {
    /// Current filter.
    pub filter: ImageFilter,
    /// Displayed thumbnail side in points.
    pub cell_size: f32,
    #[serde(skip)]
    listing: Option<Listing>,
    #[serde(skip)]
    thumbnails: Option<ThumbnailCache>,
    #[serde(skip)]
    import: ImportDialog,
    #[serde(skip)]
    last_selection: Option<String>,
    #[serde(skip)]
    selected_here: bool,
    /// Benchmark only: scroll this many points per frame.
    #[serde(skip)]
    pub auto_scroll: Option<f32>,
    #[serde(skip)]
    scroll_offset: f32,
}

impl Default for BrowserPane {
    fn default() -> Self {
        Self {
            filter: ImageFilter::default(),
            cell_size: 112.0,
            listing: None,
            thumbnails: None,
            import: ImportDialog::default(),
            last_selection: None,
            selected_here: false,
            auto_scroll: None,
            scroll_offset: 0.0,
        }
    }
}

impl BrowserPane {
    /// Indices (into the manifest) of the images listed now, in display order.
    pub fn listed(&self) -> &[usize] {
        self.listing.as_ref().map_or(&[], |l| &l.indices)
    }

    /// Number of thumbnails decoded and ready to draw.
    pub fn thumbnails_ready(&self) -> usize {
        self.thumbnails.as_ref().map_or(0, ThumbnailCache::len)
    }

    /// Opens the import window, with `from` filled in when given (drag and drop).
    pub fn open_import(&mut self, from: Option<PathBuf>) {
        self.import.open(from);
    }

    /// Forgets cached thumbnails (another project was opened).
    pub fn reset_thumbnails(&mut self) {
        if let Some(t) = &mut self.thumbnails {
            t.clear();
        }
    }

    /// Draws the pane.
    pub fn ui(&mut self, ui: &mut egui::Ui, cx: &mut PaneContext<'_>) {
        self.import.ui(ui.ctx(), cx);
        let Some(project) = cx.project.cloned() else {
            ui.centered_and_justified(|ui| {
                ui.label("No project open. Use File ▸ Open or drop a folder here.")
            });
            return;
        };
        self.refresh_listing(&project, cx);
        self.filters_ui(ui);
        ui.separator();
        self.grid_ui(ui, &project, cx);
        if let Some(t) = &mut self.thumbnails {
            t.poll(ui.ctx(), std::time::Duration::from_millis(6));
        }
    }

    fn refresh_listing(&mut self, project: &Arc<Project>, cx: &mut PaneContext<'_>) {
        let stale = self
            .listing
            .as_ref()
            .is_none_or(|l| !Arc::ptr_eq(&l.project, project) || l.filter != self.filter);
        if !stale {
            return;
        }
        let indices = self.filter.apply(&project.manifest);
        cx.selection.order = indices
            .iter()
            .map(|&i| project.manifest.images[i].id.clone())
            .collect();
        let stats = match &self.listing {
            Some(l) if Arc::ptr_eq(&l.project, project) => l.stats.clone(),
            _ => ProjectStats::of(&project.manifest),
        };
        self.listing = Some(Listing {
            project: Arc::clone(project),
            filter: self.filter.clone(),
            indices,
            stats,
        });
    }

    fn filters_ui(&mut self, ui: &mut egui::Ui) {
        let Some(listing) = &self.listing else { return };
        let stats = &listing.stats;
        let shown = listing.indices.len();
        let f = &mut self.filter;
        ui.horizontal_wrapped(|ui| {
            ui.strong(format!("{shown} of {} images", stats.images));
            for role in Role::ALL {
                let n = stats.by_role.get(role.as_str()).copied().unwrap_or(0);
                ui.colored_label(role_color(role), format!("{role} {n}"));
            }
            ui.label(format!(
                "· {} defects · {} masks · {} boxes · {} twins",
                stats.regions, stats.with_mask, stats.with_box, stats.with_twin
            ));
        });
        ui.horizontal_wrapped(|ui| {
            egui::ComboBox::from_label("Role")
                .selected_text(f.role.map_or("all", Role::as_str))
                .show_ui(ui, |ui| {
                    ui.selectable_value(&mut f.role, None, "all");
                    for role in Role::ALL {
                        ui.selectable_value(&mut f.role, Some(role), role.as_str());
                    }
                });
            egui::ComboBox::from_label("Class")
                .selected_text(f.class.as_deref().unwrap_or("all"))
                .show_ui(ui, |ui| {
                    ui.selectable_value(&mut f.class, None, "all");
                    for (class, n) in &stats.by_class {
                        ui.selectable_value(
                            &mut f.class,
                            Some(class.clone()),
                            format!("{class} ({n})"),
                        );
                    }
                });
            egui::ComboBox::from_label("Group")
                .selected_text(f.group.as_deref().unwrap_or("all"))
                .show_ui(ui, |ui| {
                    ui.selectable_value(&mut f.group, None, "all");
                    for (group, n) in &stats.by_group {
                        ui.selectable_value(
                            &mut f.group,
                            Some(group.clone()),
                            format!("{group} ({n})"),
                        );
                    }
                });
            egui::ComboBox::from_label("Status")
                .selected_text(f.status.map_or("any", StatusFilter::label))
                .show_ui(ui, |ui| {
                    ui.selectable_value(&mut f.status, None, "any");
                    for s in StatusFilter::ALL {
                        ui.selectable_value(&mut f.status, Some(s), s.label());
                    }
                });
            ui.add(
                egui::TextEdit::singleline(&mut f.search)
                    .hint_text("Search names")
                    .desired_width(140.0),
            )
            .widget_info(|| egui::WidgetInfo::labeled(egui::Role::TextInput, true, "Search"));
            if ui.button("Clear filters").clicked() {
                *f = ImageFilter::default();
            }
            ui.add(egui::Slider::new(&mut self.cell_size, 64.0..=224.0).text("Size"));
            if ui.button("Import…").clicked() {
                self.import.open(None);
            }
        });
    }

    fn grid_ui(&mut self, ui: &mut egui::Ui, project: &Arc<Project>, cx: &mut PaneContext<'_>) {
        let Some(listing) = &self.listing else { return };
        let thumbs = self
            .thumbnails
            .get_or_insert_with(|| ThumbnailCache::new(2, 1500));
        let spacing = 6.0;
        // As many columns as fit at the chosen size, then widen the cells to fill the row
        // (leaving room for the scroll bar).
        let width = ui.available_width() - ui.spacing().scroll.bar_width - spacing;
        let columns = (((width + spacing) / (self.cell_size + spacing)).floor() as usize).max(1);
        let side = ((width + spacing) / columns as f32 - spacing).max(32.0);
        let cell = Vec2::new(side, side + 18.0);
        let rows = listing.indices.len().div_ceil(columns);
        // Follow a selection made elsewhere (N in the painter) so the current image stays in view.
        let mut scroll = egui::ScrollArea::vertical().auto_shrink([false, false]);
        if self.last_selection != cx.selection.current {
            self.last_selection.clone_from(&cx.selection.current);
            let position = cx.selection.current.as_deref().and_then(|id| {
                listing
                    .indices
                    .iter()
                    .position(|&i| project.manifest.images[i].id == id)
            });
            if let Some(pos) = position.filter(|_| !self.selected_here) {
                let row = (pos / columns) as f32;
                let top = (row * (cell.y + spacing) - ui.available_height() / 2.0).max(0.0);
                scroll = scroll.vertical_scroll_offset(top);
            }
        }
        self.selected_here = false;
        if let Some(speed) = self.auto_scroll {
            let content = rows as f32 * (cell.y + spacing);
            self.scroll_offset += speed;
            if self.scroll_offset > content - ui.available_height() {
                self.scroll_offset = 0.0;
            }
            scroll = scroll.vertical_scroll_offset(self.scroll_offset);
        }
        let mut clicked = None;
        scroll.show_rows(ui, cell.y + spacing, rows, |ui, row_range| {
            for row in row_range {
                ui.horizontal(|ui| {
                    ui.spacing_mut().item_spacing.x = spacing;
                    for col in 0..columns {
                        let Some(&index) = listing.indices.get(row * columns + col) else {
                            break;
                        };
                        let entry = &project.manifest.images[index];
                        let selected = cx.selection.current.as_deref() == Some(entry.id.as_str());
                        let (rect, response) = ui.allocate_exact_size(cell, Sense::click());
                        response.widget_info(|| {
                            egui::WidgetInfo::selected(
                                egui::Role::Button,
                                true,
                                selected,
                                &entry.id,
                            )
                        });
                        if ui.is_rect_visible(rect) {
                            let thumb = thumbs.get(&entry.id, &project.abs(&entry.path));
                            paint_cell(ui, rect, entry, thumb, selected, response.hovered());
                        }
                        if response.clicked() {
                            clicked = Some(entry.id.clone());
                        }
                        response.on_hover_text(hover_text(entry));
                    }
                });
                ui.add_space(spacing);
            }
        });
        if let Some(id) = clicked {
            cx.selection.current = Some(id);
            self.selected_here = true;
        }
    }
}

fn hover_text(entry: &crate::project::ImageEntry) -> String {
    let classes: Vec<&str> = entry.classes().into_iter().collect();
    format!(
        "{}\n{} · {} · {}x{}\nclasses: {}\n{} defects{}{}{}",
        entry.path,
        entry.role,
        entry.group,
        entry.width,
        entry.height,
        if classes.is_empty() {
            "-".to_owned()
        } else {
            classes.join(", ")
        },
        entry.regions.len(),
        if entry.mask.is_some() { " · mask" } else { "" },
        if entry.box_mask.is_some() {
            " · box"
        } else {
            ""
        },
        if entry.twin.is_some() { " · twin" } else { "" },
    )
}

fn paint_cell(
    ui: &egui::Ui,
    rect: Rect,
    entry: &crate::project::ImageEntry,
    thumb: Thumb<'_>,
    selected: bool,
    hovered: bool,
) {
    let painter = ui.painter_at(rect);
    let visuals = ui.visuals();
    let image_rect = Rect::from_min_size(rect.min, Vec2::splat(rect.width()));
    painter.rect_filled(image_rect, 3.0, visuals.extreme_bg_color);
    match thumb {
        Thumb::Ready(tex) => {
            let size = tex.size_vec2();
            let scale = (image_rect.width() / size.x).min(image_rect.height() / size.y);
            let fitted = Rect::from_center_size(image_rect.center(), size * scale);
            painter.image(
                tex.id(),
                fitted,
                Rect::from_min_max(egui::pos2(0.0, 0.0), egui::pos2(1.0, 1.0)),
                Color32::WHITE,
            );
        }
        Thumb::Loading => {
            painter.text(
                image_rect.center(),
                egui::Align2::CENTER_CENTER,
                "…",
                egui::FontId::proportional(18.0),
                visuals.weak_text_color(),
            );
        }
        Thumb::Failed(_) => {
            painter.text(
                image_rect.center(),
                egui::Align2::CENTER_CENTER,
                "unreadable",
                egui::FontId::proportional(12.0),
                visuals.error_fg_color,
            );
        }
    }
    // Role strip and status dots.
    let strip = Rect::from_min_size(
        image_rect.left_bottom() - Vec2::new(0.0, 4.0),
        Vec2::new(image_rect.width(), 4.0),
    );
    painter.rect_filled(strip, 0.0, role_color(entry.role));
    let mut dot = image_rect.right_top() + Vec2::new(-8.0, 8.0);
    for (present, color) in [
        (entry.twin.is_some(), Color32::from_rgb(90, 140, 215)),
        (entry.box_mask.is_some(), Color32::from_rgb(240, 190, 60)),
        (entry.mask.is_some(), Color32::from_rgb(230, 70, 200)),
    ] {
        if present {
            painter.circle_filled(dot, 4.0, color);
            dot.x -= 10.0;
        }
    }
    let name_pos = egui::pos2(rect.left() + 2.0, image_rect.bottom() + 2.0);
    let name = entry.display_name();
    painter.text(
        name_pos,
        egui::Align2::LEFT_TOP,
        name,
        egui::FontId::proportional(11.0),
        visuals.text_color(),
    );
    if selected || hovered {
        let stroke = if selected {
            visuals.selection.stroke
        } else {
            visuals.widgets.hovered.fg_stroke
        };
        painter.rect_stroke(rect.shrink(1.0), 3.0, stroke, egui::StrokeKind::Inside);
    }
}
