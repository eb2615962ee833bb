//! The report's bar chart (the paper's Figure 9 shape): minor-class recall and precision per
//! training set, mean with a ±1 sd error bar, drawn into a PNG with egui's bundled font.

use ab_glyph::{Font, FontRef, PxScale, ScaleFont};
use image::{Rgb, RgbImage};

use super::experiment::EvalResults;

const W: u32 = 960;
const H: u32 = 540;
const RECALL: Rgb<u8> = Rgb([46, 104, 178]);
const PRECISION: Rgb<u8> = Rgb([230, 135, 40]);
const INK: Rgb<u8> = Rgb([30, 30, 30]);
const GRID: Rgb<u8> = Rgb([225, 225, 225]);

fn blend(img: &mut RgbImage, x: i64, y: i64, c: Rgb<u8>, a: f32) {
    if x < 0 || y < 0 || x >= img.width() as i64 || y >= img.height() as i64 {
        return;
    }
    let p = img.get_pixel_mut(x as u32, y as u32);
    for i in 0..3 {
        p[i] = (p[i] as f32 * (1.0 - a) + c[i] as f32 * a).round() as u8;
    }
}

fn rect(img: &mut RgbImage, x0: i64, y0: i64, x1: i64, y1: i64, c: Rgb<u8>) {
    for y in y0.min(y1)..y0.max(y1) {
        for x in x0.min(x1)..x0.max(x1) {
            blend(img, x, y, c, 1.0);
        }
    }
}

/// Text drawn with egui's default font.
pub struct Pen {
    font: FontRef<'static>,
}

impl Pen {
    /// The pen, or `None` if the bundled font cannot be parsed.
    pub fn new() -> Option<Self> {
        FontRef::try_from_slice(epaint_default_fonts::UBUNTU_LIGHT)
            .ok()
            .map(|font| Self { font })
    }

    /// Width of `text` at `px`.
    pub fn width(&self, text: &str, px: f32) -> f32 {
        let f = self.font.as_scaled(PxScale::from(px));
        text.chars().map(|ch| f.h_advance(f.glyph_id(ch))).sum()
    }

    /// Draws `text` with its top-left corner at (`x`, `y`).
    pub fn draw(&self, img: &mut RgbImage, text: &str, x: f32, y: f32, px: f32, c: Rgb<u8>) {
        let scale = PxScale::from(px);
        let f = self.font.as_scaled(scale);
        let mut caret = x;
        let baseline = y + f.ascent();
        for ch in text.chars() {
            let id = f.glyph_id(ch);
            let glyph = id.with_scale_and_position(scale, ab_glyph::point(caret, baseline));
            caret += f.h_advance(id);
            if let Some(outline) = self.font.outline_glyph(glyph) {
                let b = outline.px_bounds();
                outline.draw(|gx, gy, a| {
                    blend(
                        img,
                        b.min.x as i64 + gx as i64,
                        b.min.y as i64 + gy as i64,
                        c,
                        a,
                    );
                });
            }
        }
    }
}

/// The chart of `r` as an image.
pub fn render(r: &EvalResults) -> RgbImage {
    let mut img = RgbImage::from_pixel(W, H, Rgb([255, 255, 255]));
    let pen = Pen::new();
    let (left, right, top, bottom) = (70i64, W as i64 - 20, 60i64, H as i64 - 90);
    let y_of = |v: f64| bottom - ((v.clamp(0.0, 1.0)) * (bottom - top) as f64).round() as i64;
    for i in 0..=5 {
        let v = i as f64 / 5.0;
        let y = y_of(v);
        rect(&mut img, left, y, right, y + 1, GRID);
        if let Some(p) = &pen {
            let t = format!("{v:.1}");
            p.draw(
                &mut img,
                &t,
                left as f32 - 8.0 - p.width(&t, 15.0),
                y as f32 - 9.0,
                15.0,
                INK,
            );
        }
    }
    rect(&mut img, left, top, left + 1, bottom + 1, INK);
    rect(&mut img, left, bottom, right, bottom + 1, INK);
    let n = r.cases.len().max(1) as i64;
    let slot = (right - left) / n;
    let bar = slot / 4;
    for (i, c) in r.cases.iter().enumerate() {
        let x0 = left + i as i64 * slot + slot / 2 - bar;
        for (j, (stat, colour)) in [(c.recall, RECALL), (c.precision, PRECISION)]
            .into_iter()
            .enumerate()
        {
            let x = x0 + j as i64 * bar;
            if stat.mean.is_nan() {
                if let Some(p) = &pen {
                    p.draw(
                        &mut img,
                        "n/a",
                        x as f32 + 2.0,
                        bottom as f32 - 20.0,
                        13.0,
                        INK,
                    );
                }
                continue;
            }
            rect(
                &mut img,
                x + 2,
                y_of(stat.mean),
                x + bar - 2,
                bottom,
                colour,
            );
            // Error bar: mean ± sd.
            let (hi, lo) = (y_of(stat.mean + stat.sd), y_of(stat.mean - stat.sd));
            let mid = x + bar / 2;
            rect(&mut img, mid, hi, mid + 2, lo + 1, INK);
            rect(&mut img, mid - 6, hi, mid + 8, hi + 2, INK);
            rect(&mut img, mid - 6, lo - 1, mid + 8, lo + 1, INK);
        }
        if let Some(p) = &pen {
            let label = format!("({}) {}", c.case, c.name);
            let cx = (left + i as i64 * slot + slot / 2) as f32;
            let px = 14.0;
            let words: Vec<&str> = label.split(' ').collect();
            // Two lines where the label is wider than its slot.
            let full = p.width(&label, px);
            if full < slot as f32 - 6.0 {
                p.draw(
                    &mut img,
                    &label,
                    cx - full / 2.0,
                    bottom as f32 + 8.0,
                    px,
                    INK,
                );
            } else {
                let cut = words.len().div_ceil(2);
                for (k, line) in [words[..cut].join(" "), words[cut..].join(" ")]
                    .iter()
                    .enumerate()
                {
                    let lw = p.width(line, px);
                    p.draw(
                        &mut img,
                        line,
                        cx - lw / 2.0,
                        bottom as f32 + 8.0 + 18.0 * k as f32,
                        px,
                        INK,
                    );
                }
            }
            let count = format!("{} minor", c.minor_train);
            let cw = p.width(&count, 12.0);
            p.draw(
                &mut img,
                &count,
                cx - cw / 2.0,
                bottom as f32 + 48.0,
                12.0,
                Rgb([110, 110, 110]),
            );
        }
    }
    if let Some(p) = &pen {
        let title = format!(
            "Minor class \"{}\": recall and precision on the test set (mean ± sd, {} seeds)",
            r.minor, r.seeds
        );
        p.draw(&mut img, &title, left as f32, 14.0, 18.0, INK);
        let lx = right as f32 - 220.0;
        rect(&mut img, lx as i64, 44, lx as i64 + 14, 56, RECALL);
        p.draw(&mut img, "recall", lx + 20.0, 40.0, 14.0, INK);
        rect(&mut img, lx as i64 + 90, 44, lx as i64 + 104, 56, PRECISION);
        p.draw(&mut img, "precision", lx + 110.0, 40.0, 14.0, INK);
    }
    img
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_font_draws_ink() {
        let pen = Pen::new().expect("font");
        let mut img = RgbImage::from_pixel(120, 40, Rgb([255, 255, 255]));
        pen.draw(&mut img, "recall 0.6", 4.0, 4.0, 18.0, INK);
        let dark = img.pixels().filter(|p| p[0] < 128).count();
        assert!(dark > 30, "{dark} dark pixels");
        assert!(pen.width("recall", 18.0) > pen.width("re", 18.0));
    }
}
