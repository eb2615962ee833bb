//! Shared image canvas with zoom and pan.
//!
//! [`ViewTransform`] is the pure mapping between image pixels and screen points (unit-tested
//! without a UI); [`ImageCanvas`] owns one and feeds it from the mouse: the wheel zooms towards
//! the cursor, a middle-button drag or Space + primary drag pans. Panes draw on top of it through
//! the painter and the transform they get back.

use egui::{Event, MouseWheelUnit, Pos2, Rect, Response, Sense, Vec2};

/// Smallest zoom (screen points per image pixel).
pub const MIN_ZOOM: f32 = 0.02;
/// Largest zoom (screen points per image pixel).
pub const MAX_ZOOM: f32 = 64.0;
/// Zoom factor of one wheel notch.
const NOTCH_FACTOR: f32 = 1.2;

/// Maps image pixel coordinates to screen points and back.
///
/// Image coordinates are continuous: pixel `(x, y)` covers `[x, x + 1) x [y, y + 1)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ViewTransform {
    /// Screen position of the image's top-left corner.
    pub origin: Pos2,
    /// Screen points per image pixel.
    pub zoom: f32,
}

impl Default for ViewTransform {
    fn default() -> Self {
        Self {
            origin: Pos2::ZERO,
            zoom: 1.0,
        }
    }
}

impl ViewTransform {
    /// The view that shows a whole `image_size` image centred in `viewport`, as large as fits.
    pub fn fit(viewport: Rect, image_size: Vec2) -> Self {
        if image_size.x <= 0.0 || image_size.y <= 0.0 || viewport.width() <= 0.0 {
            return Self {
                origin: viewport.min,
                zoom: 1.0,
            };
        }
        let zoom = (viewport.width() / image_size.x)
            .min(viewport.height() / image_size.y)
            .clamp(MIN_ZOOM, MAX_ZOOM);
        let origin = viewport.center() - image_size * zoom * 0.5;
        Self { origin, zoom }
    }

    /// Screen position of an image point.
    pub fn image_to_screen(&self, p: Pos2) -> Pos2 {
        self.origin + p.to_vec2() * self.zoom
    }

    /// Image point under a screen position.
    pub fn screen_to_image(&self, s: Pos2) -> Pos2 {
        ((s - self.origin) / self.zoom).to_pos2()
    }

    /// Screen rectangle covered by the image rectangle `r` (image coordinates).
    pub fn image_rect_to_screen(&self, r: Rect) -> Rect {
        Rect::from_min_max(self.image_to_screen(r.min), self.image_to_screen(r.max))
    }

    /// Multiplies the zoom by `factor` (clamped) keeping the image point under `anchor` fixed.
    pub fn zoom_about(&mut self, anchor: Pos2, factor: f32) {
        if !factor.is_finite() || factor <= 0.0 {
            return;
        }
        let fixed = self.screen_to_image(anchor);
        self.zoom = (self.zoom * factor).clamp(MIN_ZOOM, MAX_ZOOM);
        self.origin = anchor - fixed.to_vec2() * self.zoom;
    }

    /// Moves the image by `delta` screen points.
    pub fn pan(&mut self, delta: Vec2) {
        self.origin += delta;
    }
}

/// What [`ImageCanvas::show`] reports for this frame.
pub struct CanvasResponse {
    /// The canvas widget's response (hover, clicks).
    pub response: Response,
    /// A painter clipped to the canvas.
    pub painter: egui::Painter,
    /// The view after this frame's zoom and pan.
    pub view: ViewTransform,
    /// True while the user pans (the primary button must not edit then).
    pub panning: bool,
}

/// The zoom and pan of one image, shared between canvases that show it (the mask painter and
/// the Inpaint QA pane): the offset is relative to the canvas's corner, and the version tells a
/// canvas whether another one changed it since it last looked.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SharedView {
    /// The image's id (for a twin: its defect image's id).
    pub image: String,
    /// Screen points per image pixel.
    pub zoom: f32,
    /// The image's top-left corner relative to the canvas's.
    pub offset: Vec2,
    /// Bumped on every change.
    pub version: u64,
}

/// A zoomable, pannable area that shows one image; keeps its view between frames.
#[derive(Clone, Debug, Default)]
pub struct ImageCanvas {
    view: ViewTransform,
    needs_fit: bool,
    last_rect: Option<Rect>,
    image_size: Vec2,
    panning: bool,
    /// A shared view to take on at the next `show`.
    adopt: Option<(f32, Vec2)>,
    /// The shared view's version this canvas last took or made.
    seen: u64,
}

impl ImageCanvas {
    /// A canvas that fits the next image it shows.
    pub fn new() -> Self {
        Self {
            needs_fit: true,
            ..Self::default()
        }
    }

    /// Fits the image to the canvas on the next frame.
    pub fn reset_view(&mut self) {
        self.needs_fit = true;
    }

    /// The current view.
    pub fn view(&self) -> ViewTransform {
        self.view
    }

    /// [`Self::show`] for `image`, keeping `shared` in step: a view another canvas set for the
    /// same image is taken on, and this canvas's own changes are published.
    pub fn show_shared(
        &mut self,
        ui: &mut egui::Ui,
        image_size: Vec2,
        label: &str,
        image: &str,
        shared: &mut Option<SharedView>,
    ) -> CanvasResponse {
        if let Some(s) = shared.as_ref()
            && s.image == image
            && s.version != self.seen
        {
            self.adopt = Some((s.zoom, s.offset));
            self.seen = s.version;
        }
        let r = self.show(ui, image_size, label);
        let offset = self.view.origin - self.last_rect.map_or(Pos2::ZERO, |r| r.min);
        let same = shared
            .as_ref()
            .is_some_and(|s| s.image == image && s.zoom == self.view.zoom && s.offset == offset);
        if !same {
            let version = shared.as_ref().map_or(0, |s| s.version) + 1;
            *shared = Some(SharedView {
                image: image.to_owned(),
                zoom: self.view.zoom,
                offset,
                version,
            });
            self.seen = version;
        }
        r
    }

    /// Allocates all remaining space, applies wheel zoom and panning, and returns the view.
    ///
    /// `label` is the widget's accessible name.
    pub fn show(&mut self, ui: &mut egui::Ui, image_size: Vec2, label: &str) -> CanvasResponse {
        let size = ui.available_size().max(Vec2::splat(64.0));
        let (rect, response) = ui.allocate_exact_size(size, Sense::click_and_drag());
        let name = label.to_owned();
        response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Image, true, &name));

        if let Some((zoom, offset)) = self.adopt.take() {
            self.view = ViewTransform {
                origin: rect.min + offset,
                zoom,
            };
            self.needs_fit = false;
        } else if self.needs_fit || self.image_size != image_size || self.last_rect.is_none() {
            self.view = ViewTransform::fit(rect, image_size);
            self.needs_fit = false;
        } else if let Some(last) = self.last_rect {
            // The pane moved or was resized: keep the image where it was relative to it.
            self.view.pan(rect.min - last.min);
        }
        self.image_size = image_size;
        self.last_rect = Some(rect);

        if response.hovered()
            && let Some(anchor) = response.hover_pos()
        {
            let notches: f32 = ui.ctx().input(|i| {
                i.events
                    .iter()
                    .filter_map(|e| match e {
                        Event::MouseWheel { unit, delta, .. } => Some(match unit {
                            MouseWheelUnit::Point => delta.y / 50.0,
                            MouseWheelUnit::Line => delta.y,
                            MouseWheelUnit::Page => delta.y * 10.0,
                        }),
                        _ => None,
                    })
                    .sum()
            });
            if notches != 0.0 {
                self.view.zoom_about(anchor, NOTCH_FACTOR.powf(notches));
            }
        }

        let (space, start_pan, any_down, delta) = ui.ctx().input(|i| {
            let space = i.key_down(egui::Key::Space);
            let p = &i.pointer;
            let start =
                p.button_pressed(egui::PointerButton::Middle) || (space && p.primary_pressed());
            (space, start, p.primary_down() || p.middle_down(), p.delta())
        });
        if start_pan && response.hovered() {
            self.panning = true;
        } else if !any_down {
            self.panning = false;
        }
        if self.panning {
            self.view.pan(delta);
        }

        let painter = ui.painter_at(rect);
        CanvasResponse {
            response,
            painter,
            view: self.view,
            panning: self.panning || space,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn viewport() -> Rect {
        Rect::from_min_size(Pos2::new(10.0, 20.0), Vec2::new(400.0, 300.0))
    }

    #[test]
    fn round_trip_is_identity() {
        let mut v = ViewTransform::fit(viewport(), Vec2::new(123.0, 77.0));
        v.zoom_about(Pos2::new(100.0, 90.0), 3.7);
        v.pan(Vec2::new(-13.0, 5.5));
        for p in [
            Pos2::new(0.0, 0.0),
            Pos2::new(12.25, 70.5),
            Pos2::new(123.0, 77.0),
        ] {
            let back = v.screen_to_image(v.image_to_screen(p));
            assert!((back - p).length() < 1e-3, "{p:?} -> {back:?}");
        }
    }

    #[test]
    fn fit_centres_and_fills_one_side() {
        let vp = viewport();
        let v = ViewTransform::fit(vp, Vec2::new(200.0, 50.0));
        assert!((v.zoom - 2.0).abs() < 1e-6);
        let r = v.image_rect_to_screen(Rect::from_min_size(Pos2::ZERO, Vec2::new(200.0, 50.0)));
        assert!((r.center() - vp.center()).length() < 1e-3);
        assert!((r.width() - vp.width()).abs() < 1e-3);
        assert!(r.height() < vp.height());
    }

    #[test]
    fn zoom_keeps_point_under_cursor() {
        let mut v = ViewTransform::fit(viewport(), Vec2::new(64.0, 64.0));
        let cursor = Pos2::new(123.0, 201.0);
        let under = v.screen_to_image(cursor);
        let before = v.zoom;
        v.zoom_about(cursor, 2.5);
        assert!((v.zoom - before * 2.5).abs() < 1e-4);
        assert!((v.image_to_screen(under) - cursor).length() < 1e-3);
        v.zoom_about(cursor, 0.1);
        assert!((v.image_to_screen(under) - cursor).length() < 1e-3);
    }

    #[test]
    fn zoom_is_clamped() {
        let mut v = ViewTransform::default();
        v.zoom_about(Pos2::new(5.0, 5.0), 1e9);
        assert_eq!(v.zoom, MAX_ZOOM);
        v.zoom_about(Pos2::new(5.0, 5.0), 1e-12);
        assert_eq!(v.zoom, MIN_ZOOM);
    }
}
