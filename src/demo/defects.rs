//! Defects drawn into clean images, each with its exact pixel mask.
//!
//! The mask is defined by the result, not by the intent: a pixel is 255 in the mask exactly when
//! some channel of the defect image differs from the clean image by at least
//! [`CHANGE_THRESHOLD`]. Smaller changes (the faint tail of a soft edge) are undone, and specks
//! smaller than [`MIN_SPECK`] pixels are undone too, so outside the mask the defect image is
//! byte-identical to its clean twin and every region of the mask is a visible defect.

use image::{GrayImage, Luma, RgbImage};
use rand::Rng;

use super::panel::{Buf, mix, normal};
use crate::imaging::boxes::connected_components;

/// Smallest per-channel change, in grey levels, that counts as a defect pixel.
pub const CHANGE_THRESHOLD: u8 = 3;
/// Connected changes smaller than this many pixels are undone.
pub const MIN_SPECK: u64 = 6;

/// The defect classes of the demo project.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DefectClass {
    /// Dead emitters under a dark stain ringed by a coloured interference halo.
    DarkSpot,
    /// A bright or dark line along a column or row of sub-pixels, partial length.
    Line,
    /// A foreign particle: an irregular, shaded blob with its shadow.
    Particle,
    /// A low-contrast blotch of uneven brightness.
    Mura,
}

impl DefectClass {
    /// Every class, in manifest order.
    pub const ALL: [DefectClass; 4] = [
        DefectClass::DarkSpot,
        DefectClass::Line,
        DefectClass::Particle,
        DefectClass::Mura,
    ];

    /// The class name used in the manifest.
    pub fn name(self) -> &'static str {
        match self {
            DefectClass::DarkSpot => "dark_spot",
            DefectClass::Line => "line",
            DefectClass::Particle => "particle",
            DefectClass::Mura => "mura",
        }
    }
}

/// Draws one defect of `class` at a random place, size and shape into a copy of `clean`.
///
/// Returns the defect image and its exact 0/255 mask (see the module documentation). The mask
/// is non-empty unless `clean` is too small or too saturated for any visible change.
pub fn draw_defect<R: Rng + ?Sized>(
    class: DefectClass,
    clean: &RgbImage,
    rng: &mut R,
) -> (RgbImage, GrayImage) {
    let (w, h) = (clean.width() as usize, clean.height() as usize);
    let mut last = (clean.clone(), GrayImage::new(clean.width(), clean.height()));
    if w < 8 || h < 8 {
        return last;
    }
    // A defect drawn over saturated pixels may change nothing; a fresh draw nearly always does.
    for _ in 0..8 {
        let mut buf: Buf = clean.pixels().map(|p| p.0.map(f32::from)).collect();
        match class {
            DefectClass::DarkSpot => dark_spot(&mut buf, w, h, rng),
            DefectClass::Line => line(&mut buf, w, h, rng),
            DefectClass::Particle => particle(&mut buf, w, h, rng),
            DefectClass::Mura => mura(&mut buf, w, h, rng),
        }
        let mut out = RgbImage::new(clean.width(), clean.height());
        for (p, v) in out.pixels_mut().zip(&buf) {
            p.0 = v.map(|c| c.clamp(0.0, 255.0).round() as u8);
        }
        let mask = settle(clean, &mut out);
        let empty = mask.as_raw().iter().all(|&v| v == 0);
        last = (out, mask);
        if !empty {
            break;
        }
    }
    last
}

/// Undoes changes below the threshold and specks, and returns the mask of what remains changed.
fn settle(clean: &RgbImage, out: &mut RgbImage) -> GrayImage {
    let mut mask = GrayImage::new(clean.width(), clean.height());
    for ((o, c), m) in out.pixels_mut().zip(clean.pixels()).zip(mask.pixels_mut()) {
        let diff = (0..3).map(|k| o.0[k].abs_diff(c.0[k])).max().unwrap_or(0);
        if diff >= CHANGE_THRESHOLD {
            m.0[0] = 255;
        } else {
            *o = *c;
        }
    }
    for comp in connected_components(&mask) {
        if comp.area >= MIN_SPECK {
            continue;
        }
        let b = comp.bbox;
        for y in b.y..b.bottom() {
            for x in b.x..b.right() {
                // Only this speck's pixels: others in its box belong to larger components, which
                // cannot touch it (they would be one component).
                if mask.get_pixel(x, y).0[0] == 255 && speck_contains(&mask, x, y, comp.area) {
                    mask.put_pixel(x, y, Luma([0]));
                    out.put_pixel(x, y, *clean.get_pixel(x, y));
                }
            }
        }
    }
    mask
}

/// True when the 8-connected component holding (x, y) has at most `area` pixels.
fn speck_contains(mask: &GrayImage, x: u32, y: u32, area: u64) -> bool {
    let mut stack = vec![(x, y)];
    let mut seen = vec![(x, y)];
    while let Some((cx, cy)) = stack.pop() {
        for ny in cy.saturating_sub(1)..=(cy + 1).min(mask.height() - 1) {
            for nx in cx.saturating_sub(1)..=(cx + 1).min(mask.width() - 1) {
                if mask.get_pixel(nx, ny).0[0] == 255 && !seen.contains(&(nx, ny)) {
                    if seen.len() as u64 >= area {
                        return false;
                    }
                    seen.push((nx, ny));
                    stack.push((nx, ny));
                }
            }
        }
    }
    true
}

fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    let t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// Adds sensor-like noise where the defect replaced the clean pixel (weight `a`), so the defect
/// has the same grain as its surroundings.
fn grain<R: Rng + ?Sized>(c: [f32; 3], a: f32, rng: &mut R) -> [f32; 3] {
    if a <= 0.0 {
        return c;
    }
    let n = normal(rng) * 2.0 * a;
    c.map(|v| v + n)
}

/// A random centre at least `margin` pixels from every edge (or the middle on tiny images).
fn centre<R: Rng + ?Sized>(w: usize, h: usize, margin: f32, rng: &mut R) -> (f32, f32) {
    let pick = |n: usize, rng: &mut R| {
        let n = n as f32;
        if n > 2.0 * margin + 1.0 {
            rng.random_range(margin..n - margin)
        } else {
            n / 2.0
        }
    };
    (pick(w, rng), pick(h, rng))
}

fn dark_spot<R: Rng + ?Sized>(buf: &mut Buf, w: usize, h: usize, rng: &mut R) {
    let scale = w.min(h) as f32 / 256.0;
    let r0 = rng.random_range(4.0..15.0) * scale.max(0.25);
    let ring = rng.random_range(2.0..4.5) * scale.max(0.5);
    let (cx, cy) = centre(w, h, r0 + ring + 2.0, rng);
    let (ax, ay) = (rng.random_range(0.85..1.15), rng.random_range(0.85..1.15));
    let halo = [
        [214.0, 156.0, 64.0],
        [112.0, 196.0, 214.0],
        [196.0, 118.0, 196.0],
        [226.0, 206.0, 120.0],
    ][rng.random_range(0..4)];
    let strength = rng.random_range(0.55..0.85);
    let core = [rng.random_range(3.0..9.0), 4.0, rng.random_range(4.0..8.0)];
    for y in 0..h {
        for x in 0..w {
            let (dx, dy) = ((x as f32 + 0.5 - cx) / ax, (y as f32 + 0.5 - cy) / ay);
            let rho = (dx * dx + dy * dy).sqrt();
            if rho > r0 + ring + 2.0 {
                continue;
            }
            let a_core = 0.93 * smoothstep(r0 + 0.8, r0 - 0.8, rho);
            let mid = r0 + ring * 0.45;
            let a_ring = strength * (1.0 - ((rho - mid) / (ring * 0.75)).powi(2)).max(0.0);
            let i = y * w + x;
            let c = mix(mix(buf[i], core, a_core), halo, a_ring);
            buf[i] = grain(c, a_core.max(a_ring), rng);
        }
    }
}

fn line<R: Rng + ?Sized>(buf: &mut Buf, w: usize, h: usize, rng: &mut R) {
    let vertical = rng.random_bool(0.6);
    let (along, across) = if vertical { (h, w) } else { (w, h) };
    let lum = |i: usize| buf[i][0] + buf[i][1] + buf[i][2];
    // Snap to the brightest column (row) nearby: that is a line of sub-pixels.
    let profile: Vec<f32> = (0..across)
        .map(|c| {
            (0..along)
                .map(|a| lum(if vertical { a * w + c } else { c * w + a }))
                .sum::<f32>()
        })
        .collect();
    let guess = rng.random_range(across / 8..across - across / 8);
    let lo = guess.saturating_sub(8);
    let hi = (guess + 8).min(across - 1);
    let pos = (lo..=hi)
        .max_by(|&a, &b| profile[a].total_cmp(&profile[b]))
        .unwrap_or(guess) as f32
        + 0.5;
    let len = rng.random_range(0.25..0.7) * along as f32;
    let start = rng.random_range(0.0..(along as f32 - len).max(1.0));
    let sigma = rng.random_range(1.1..2.0);
    let bright = rng.random_bool(0.55);
    let amp = rng.random_range(90.0..160.0);
    let dark = [4.0, 4.0, 6.0];
    for a in 0..along {
        let t = a as f32 + 0.5;
        let taper =
            smoothstep(start, start + 3.0, t) * smoothstep(start + len, start + len - 3.0, t);
        if taper <= 0.0 {
            continue;
        }
        for c in 0..across {
            let d = c as f32 + 0.5 - pos;
            if d.abs() > 4.0 * sigma + 2.0 {
                continue;
            }
            let p = taper * (-(d * d) / (2.0 * sigma * sigma)).exp();
            let i = if vertical { a * w + c } else { c * w + a };
            let v = buf[i];
            buf[i] = if bright {
                // The line's own emitters saturate towards white; the wire between them glows.
                let peak = v[0].max(v[1]).max(v[2]).max(1.0);
                v.map(|ch| ch + p * amp * (0.45 + 0.55 * ch / peak))
            } else {
                grain(mix(v, dark, 0.9 * p), p, rng)
            };
        }
    }
}

/// Radius of an irregular closed shape at angle `theta`: a circle wobbled by a few harmonics.
struct Wobble {
    terms: Vec<(f32, f32, f32)>,
}

impl Wobble {
    fn random<R: Rng + ?Sized>(rng: &mut R, roughness: f32) -> Self {
        let terms = (2..7)
            .map(|k| {
                let kf = k as f32;
                (
                    kf,
                    rng.random_range(0.0..roughness) / kf.sqrt(),
                    rng.random_range(0.0..std::f32::consts::TAU),
                )
            })
            .collect();
        Self { terms }
    }

    fn radius(&self, theta: f32) -> f32 {
        1.0 + self
            .terms
            .iter()
            .map(|(k, a, ph)| a * (k * theta + ph).cos())
            .sum::<f32>()
    }
}

/// A random irregular blob (the particle shape) as a 0/255 mask of `w` x `h`, for tools that need
/// plausible defect shapes without an image.
pub fn random_blob_mask<R: Rng + ?Sized>(w: u32, h: u32, rng: &mut R) -> GrayImage {
    let size = w.min(h) as f32;
    let r = rng.random_range(0.03..0.08) * size;
    let (cx, cy) = centre(w as usize, h as usize, r * 1.6, rng);
    let shape = Wobble::random(rng, 0.3);
    GrayImage::from_fn(w, h, |x, y| {
        let (dx, dy) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
        let inside = (dx * dx + dy * dy).sqrt() <= r * shape.radius(dy.atan2(dx));
        Luma([if inside { 255 } else { 0 }])
    })
}

fn particle<R: Rng + ?Sized>(buf: &mut Buf, w: usize, h: usize, rng: &mut R) {
    let scale = (w.min(h) as f32 / 256.0).max(0.3);
    let r = rng.random_range(5.0..15.0) * scale;
    let (cx, cy) = centre(w, h, r * 1.6 + 4.0, rng);
    let shape = Wobble::random(rng, 0.32);
    let tone = rng.random_range(0.0..1.0f32);
    let body = mix([118.0, 104.0, 86.0], [150.0, 150.0, 146.0], tone);
    let light = (-0.55f32, -0.65f32);
    let shadow_off = (2.0 * scale.max(0.6), 2.0 * scale.max(0.6));
    let reach = r * 1.6 + 4.0;
    let (x0, x1) = (
        (cx - reach).max(0.0) as usize,
        ((cx + reach) as usize).min(w),
    );
    let (y0, y1) = (
        (cy - reach).max(0.0) as usize,
        ((cy + reach) as usize).min(h),
    );
    for y in y0..y1 {
        for x in x0..x1 {
            let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
            let edge = |ox: f32, oy: f32| {
                let (dx, dy) = (px - cx - ox, py - cy - oy);
                let rho = (dx * dx + dy * dy).sqrt();
                let rr = r * shape.radius(dy.atan2(dx));
                (rho / rr, rr - rho, dx, dy)
            };
            let (_, sd_shadow, _, _) = edge(shadow_off.0, shadow_off.1);
            let (n, sd, dx, dy) = edge(0.0, 0.0);
            let i = y * w + x;
            let mut c = mix(buf[i], [0.0; 3], 0.55 * (sd_shadow + 0.5).clamp(0.0, 1.0));
            let cov = (sd + 0.5).clamp(0.0, 1.0);
            if cov > 0.0 {
                // A dome lit from the upper left: Lambert shading plus a small highlight.
                let z = (1.0 - n.min(1.0).powi(2)).sqrt();
                let len = (dx * dx + dy * dy).sqrt().max(1e-3);
                let (nx, ny) = (dx / len * n.min(1.0), dy / len * n.min(1.0));
                let lambert = (-(nx * light.0 + ny * light.1) + z * 0.55).max(0.0);
                let shade = 0.25 + 0.75 * lambert.min(1.2);
                let spec = 60.0 * lambert.powi(8).min(1.0);
                let col = body.map(|b| b * shade + spec);
                c = mix(c, col, cov);
            }
            buf[i] = grain(c, cov.max(0.3 * (sd_shadow + 0.5).clamp(0.0, 1.0)), rng);
        }
    }
}

fn mura<R: Rng + ?Sized>(buf: &mut Buf, w: usize, h: usize, rng: &mut R) {
    let scale = w.min(h) as f32 / 256.0;
    let spread = rng.random_range(14.0..32.0) * scale.max(0.2);
    let (cx, cy) = centre(w, h, spread * 1.5, rng);
    let blobs: Vec<(f32, f32, f32, f32, f32)> = (0..rng.random_range(2..5))
        .map(|_| {
            (
                cx + rng.random_range(-0.6..0.6) * spread,
                cy + rng.random_range(-0.6..0.6) * spread,
                rng.random_range(0.4..0.9) * spread,
                rng.random_range(0.4..0.9) * spread,
                rng.random_range(0.6..1.0),
            )
        })
        .collect();
    let sign = if rng.random_bool(0.6) { 1.0 } else { -1.0 };
    let amp = rng.random_range(12.0..24.0f32);
    let contrast = rng.random_range(0.12..0.25f32);
    let tint = [
        1.0,
        rng.random_range(0.8..1.0),
        rng.random_range(0.55..0.95),
    ];
    let field = |x: f32, y: f32| {
        blobs
            .iter()
            .map(|(bx, by, sx, sy, a)| {
                a * (-((x - bx) / sx).powi(2) / 2.0 - ((y - by) / sy).powi(2) / 2.0).exp()
            })
            .sum::<f32>()
    };
    let cut = 0.35;
    // Inside the blotch the offset starts just above the threshold, so the rim is a faint but real
    // step, and the mask is the blotch itself rather than a noisy fringe.
    let floor = f32::from(CHANGE_THRESHOLD) + 1.0;
    for y in 0..h {
        for x in 0..w {
            let s = field(x as f32 + 0.5, y as f32 + 0.5).min(1.0);
            if s < cut {
                continue;
            }
            let t = (s - cut) / (1.0 - cut);
            let off = sign * (floor + (amp - floor) * t);
            let i = y * w + x;
            // Additive haze on the substrate, a gain change on the emitters; both vanish at the
            // rim except the threshold step.
            let gain = 1.0 + sign * contrast * t;
            buf[i] = [0, 1, 2].map(|k| buf[i][k] * gain + off * tint[k]);
        }
    }
}
