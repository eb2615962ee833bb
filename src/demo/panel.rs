//! Defect-free OLED panel images as seen under an inspection microscope.
//!
//! Two products with different layouts: an RGB stripe panel (vertical sub-pixel columns, vertical
//! data lines, horizontal gate lines, TFT pads at the crossings) and a diamond PenTile panel (R/B
//! diamonds on a checkerboard, small green ovals between them, diagonal wiring). Every image gets
//! its own pattern phase, illumination, white balance, emitter non-uniformity and sensor noise,
//! so no two images are identical. Shapes are signed-distance fields, which gives 1-px
//! anti-aliasing for free and works at any image size.

use image::RgbImage;
use rand::Rng;

/// The products of the demo project, one manifest group each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PanelKind {
    /// RGB stripe layout with vertical data lines (group `oled-stripe`).
    Stripe,
    /// Diamond PenTile layout with diagonal wiring (group `oled-pentile`).
    Pentile,
}

impl PanelKind {
    /// Every product, in manifest order.
    pub const ALL: [PanelKind; 2] = [PanelKind::Stripe, PanelKind::Pentile];

    /// The manifest group name.
    pub fn group(self) -> &'static str {
        match self {
            PanelKind::Stripe => "oled-stripe",
            PanelKind::Pentile => "oled-pentile",
        }
    }
}

/// A floating-point RGB image, 0..255 per channel, row-major.
pub(crate) type Buf = Vec<[f32; 3]>;

/// Darkest and brightest byte a rendered panel holds; the margins keep defects (which darken or
/// brighten) from clipping, so every pixel they touch really changes.
const FLOOR: f32 = 6.0;
const CEIL: f32 = 235.0;

const SUBSTRATE: [f32; 3] = [19.0, 21.0, 27.0];
const DATA_METAL: [f32; 3] = [80.0, 76.0, 69.0];
const GATE_METAL: [f32; 3] = [60.0, 64.0, 73.0];
const PAD_METAL: [f32; 3] = [112.0, 100.0, 80.0];
const RED: [f32; 3] = [232.0, 48.0, 36.0];
const GREEN: [f32; 3] = [62.0, 226.0, 84.0];
const BLUE: [f32; 3] = [52.0, 92.0, 246.0];

/// Per-image acquisition conditions.
struct Look {
    phase: (f32, f32),
    gain: f32,
    white: [f32; 3],
    vignette: f32,
    centre: (f32, f32),
    emitter_seed: u64,
}

impl Look {
    fn random<R: Rng + ?Sized>(rng: &mut R, pitch: f32) -> Self {
        Self {
            phase: (rng.random_range(0.0..pitch), rng.random_range(0.0..pitch)),
            gain: rng.random_range(0.9..1.08),
            white: [
                rng.random_range(0.96..1.04),
                rng.random_range(0.97..1.03),
                rng.random_range(0.96..1.04),
            ],
            vignette: rng.random_range(0.04..0.14),
            centre: (rng.random_range(0.35..0.65), rng.random_range(0.35..0.65)),
            emitter_seed: rng.random(),
        }
    }
}

/// Renders one defect-free panel image of `size` x `size` pixels.
pub fn render_panel<R: Rng + ?Sized>(kind: PanelKind, size: u32, rng: &mut R) -> RgbImage {
    let pitch = match kind {
        PanelKind::Stripe => 24.0,
        PanelKind::Pentile => 20.0,
    };
    let look = Look::random(rng, pitch);
    let (w, h) = (size as usize, size as usize);
    let mut colour: Buf = vec![SUBSTRATE; w * h];
    let mut light: Buf = vec![[0.0; 3]; w * h];
    for y in 0..h {
        for x in 0..w {
            let gx = x as f32 + 0.5 + look.phase.0;
            let gy = y as f32 + 0.5 + look.phase.1;
            let px = match kind {
                PanelKind::Stripe => stripe_pixel(gx, gy, pitch, look.emitter_seed),
                PanelKind::Pentile => pentile_pixel(gx, gy, pitch, look.emitter_seed),
            };
            let i = y * w + x;
            let mut c = SUBSTRATE;
            for (metal, cov) in px.metal {
                c = mix(c, metal, cov);
            }
            let lit = px.emitter.map(|e| e * px.emitter_cov);
            colour[i] = mix(c, px.emitter, px.emitter_cov);
            light[i] = lit;
        }
    }
    // Sub-pixel glow: light scattered in the encapsulation spreads a coloured halo.
    let glow = gaussian_blur(&light, w, h, 2.2);
    for (c, g) in colour.iter_mut().zip(&glow) {
        for k in 0..3 {
            c[k] += 0.42 * g[k];
        }
    }
    // Optics: the microscope never renders a perfectly sharp edge.
    let colour = gaussian_blur(&colour, w, h, 0.65);
    let mut img = RgbImage::new(size, size);
    for (i, p) in img.pixels_mut().enumerate() {
        let (x, y) = ((i % w) as f32 / w as f32, (i / w) as f32 / h as f32);
        let r2 = (x - look.centre.0).powi(2) + (y - look.centre.1).powi(2);
        let illum = look.gain * (1.0 - look.vignette * r2 * 2.0);
        for ((out, c), white) in p.0.iter_mut().zip(colour[i]).zip(look.white) {
            let v = c * illum * white;
            // Shot noise grows with the signal, read noise does not.
            let sigma = (3.0 + 0.03 * v).sqrt();
            *out = (v + sigma * normal(rng)).clamp(FLOOR, CEIL).round() as u8;
        }
    }
    img
}

/// What lies under one pixel: metal layers (colour, coverage) and the emitter on top.
struct PixelStack {
    metal: [([f32; 3], f32); 3],
    emitter: [f32; 3],
    emitter_cov: f32,
}

/// RGB stripe: a square cell of three vertical rounded bars, data line left of each bar, a gate
/// line and a thinner supply line across each cell, a TFT pad where data meets gate.
fn stripe_pixel(gx: f32, gy: f32, pitch: f32, seed: u64) -> PixelStack {
    let sub = pitch / 3.0;
    let (ci, cj) = ((gx / pitch).floor(), (gy / pitch).floor());
    let (u, v) = (gx - ci * pitch, gy - cj * pitch);
    let k = ((u / sub).floor() as usize).min(2);
    let su = u - (k as f32 + 0.5) * sub;
    let sv = v - 0.42 * pitch;
    // Blue is the least efficient emitter, so real panels make it widest.
    let half_w = [0.24, 0.24, 0.3][k] * sub;
    let sd = rounded_box(su, sv, half_w, 0.3 * pitch, 1.2);
    let variation = emitter_variation(seed, ci as i64 * 3 + k as i64, cj as i64);
    let dome = 0.88 + 0.12 * (1.0 - (su / half_w).powi(2)).max(0.0);
    let emitter = [RED, GREEN, BLUE][k].map(|c| c * variation * dome * 0.86);
    let du = u - k as f32 * sub;
    let data = line_cov(du.min(sub - du), 0.7);
    let gate = line_cov((v - 0.86 * pitch).abs(), 1.1);
    let supply = line_cov((v - 0.95 * pitch).abs(), 0.5);
    let pad = coverage(rounded_box(du - 2.2, v - 0.86 * pitch + 1.0, 1.6, 1.8, 0.5));
    PixelStack {
        metal: [
            (GATE_METAL, gate.max(supply * 0.7)),
            (DATA_METAL, data),
            (PAD_METAL, pad),
        ],
        emitter,
        emitter_cov: coverage(sd),
    }
}

/// Diamond PenTile: red and blue rounded diamonds alternate on a square lattice, green ovals sit
/// at the cell centres with alternating orientation; data and gate lines run diagonally in the
/// gaps, with a pad at every other crossing.
fn pentile_pixel(gx: f32, gy: f32, pitch: f32, seed: u64) -> PixelStack {
    let (a, b) = (gx / pitch, gy / pitch);
    let (li, lj) = (a.round(), b.round());
    let (dx, dy) = ((a - li) * pitch, (b - lj) * pitch);
    let (s, t) = rotate45(dx, dy);
    let big_half = 0.24 * pitch;
    let sd_big = rounded_box(s, t, big_half, big_half, 1.5);
    let (gi, gj) = (a.floor(), b.floor());
    let (ex, ey) = ((a - gi - 0.5) * pitch, (b - gj - 0.5) * pitch);
    let (gs, gt) = rotate45(ex, ey);
    let flip = (gi + gj) as i64 & 1 == 1;
    let (ga, gb) = if flip { (0.17, 0.11) } else { (0.11, 0.17) };
    let sd_green = rounded_box(gs, gt, ga * pitch, gb * pitch, 2.0);
    let (emitter, sd, cell, r) = if sd_big < sd_green {
        let red = (li + lj) as i64 & 1 == 0;
        let colour = if red { RED } else { BLUE };
        let r = (s * s + t * t).sqrt() / (big_half * 1.2);
        (colour, sd_big, (2 * li as i64, lj as i64), r)
    } else {
        let r = ((gs / (ga * pitch)).powi(2) + (gt / (gb * pitch)).powi(2)).sqrt();
        (GREEN, sd_green, (2 * gi as i64 + 1, gj as i64), r)
    };
    let variation = emitter_variation(seed, cell.0, cell.1);
    let dome = 0.86 + 0.14 * (1.0 - r * r).max(0.0);
    let q = (gx - gy) / pitch - 0.5;
    let p = (gx + gy) / pitch - 0.5;
    let dq = (q - q.round()).abs() * pitch / std::f32::consts::SQRT_2;
    let dp = (p - p.round()).abs() * pitch / std::f32::consts::SQRT_2;
    let crossing_shown = (q.round() + p.round()) as i64 & 1 == 0;
    let pad = if crossing_shown {
        coverage(dq.max(dp) - 1.7)
    } else {
        0.0
    };
    PixelStack {
        metal: [
            (GATE_METAL, line_cov(dp, 0.55)),
            (DATA_METAL, line_cov(dq, 0.8)),
            (PAD_METAL, pad),
        ],
        emitter: emitter.map(|c| c * variation * dome * 0.84),
        emitter_cov: coverage(sd),
    }
}

fn rotate45(x: f32, y: f32) -> (f32, f32) {
    let k = std::f32::consts::FRAC_1_SQRT_2;
    ((x + y) * k, (x - y) * k)
}

/// Signed distance to a box of half sizes (hx, hy) with corners rounded by `r`.
fn rounded_box(x: f32, y: f32, hx: f32, hy: f32, r: f32) -> f32 {
    let qx = x.abs() - hx + r;
    let qy = y.abs() - hy + r;
    let outside = (qx.max(0.0).powi(2) + qy.max(0.0).powi(2)).sqrt();
    outside + qx.max(qy).min(0.0) - r
}

/// Fraction of a pixel covered by a shape, from the signed distance at its centre.
fn coverage(sd: f32) -> f32 {
    (0.5 - sd).clamp(0.0, 1.0)
}

/// Coverage of a line of half width `half` at distance `d` from its axis.
fn line_cov(d: f32, half: f32) -> f32 {
    coverage(d - half)
}

/// Brightness factor of one emitter (about +-4 %), a pure function of the image seed and the
/// emitter's lattice position so the pattern does not depend on pixel order.
fn emitter_variation(seed: u64, i: i64, j: i64) -> f32 {
    let h = splitmix(seed ^ splitmix((i as u64) ^ (j as u64).rotate_left(32)));
    0.96 + 0.08 * ((h >> 40) as f32 / (1u64 << 24) as f32)
}

/// SplitMix64 finaliser: a fast, well-mixed 64-bit hash.
pub(crate) fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub(crate) fn mix(a: [f32; 3], b: [f32; 3], t: f32) -> [f32; 3] {
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

/// An approximately standard normal sample: the Irwin-Hall sum of four 16-bit uniforms from one
/// random word, much cheaper than Box-Muller and indistinguishable as sensor noise.
pub(crate) fn normal<R: Rng + ?Sized>(rng: &mut R) -> f32 {
    let word: u64 = rng.random();
    let sum: u32 = (0..4).map(|k| ((word >> (16 * k)) & 0xFFFF) as u32).sum();
    // Four uniforms on [0, 1) have mean 2 and variance 1/3.
    (sum as f32 / 65536.0 - 2.0) * 3f32.sqrt()
}

/// Separable Gaussian blur with edge clamping.
pub(crate) fn gaussian_blur(src: &Buf, w: usize, h: usize, sigma: f32) -> Buf {
    let radius = (2.5 * sigma).ceil() as isize;
    let kernel: Vec<f32> = (-radius..=radius)
        .map(|d| (-(d * d) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let norm: f32 = kernel.iter().sum();
    let pass = |src: &Buf, horizontal: bool| -> Buf {
        let mut out = vec![[0.0; 3]; w * h];
        for y in 0..h {
            for x in 0..w {
                let mut acc = [0.0f32; 3];
                for (ki, kv) in kernel.iter().enumerate() {
                    let d = ki as isize - radius;
                    let (sx, sy) = if horizontal {
                        ((x as isize + d).clamp(0, w as isize - 1) as usize, y)
                    } else {
                        (x, (y as isize + d).clamp(0, h as isize - 1) as usize)
                    };
                    let s = src[sy * w + sx];
                    for k in 0..3 {
                        acc[k] += s[k] * kv;
                    }
                }
                out[y * w + x] = acc.map(|a| a / norm);
            }
        }
        out
    };
    let tmp = pass(src, true);
    pass(&tmp, false)
}
