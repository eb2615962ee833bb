//! Exemplar fill: a hole copied from the place elsewhere in the same image whose surroundings
//! look most like the hole's. Printed circuits repeat themselves (a straight trace goes on
//! above and below a box on it, pads come in rows), so where the pattern around a hole occurs
//! again, copying it beats any guess. Where it does not, the match is poor and says so.

use image::{GrayImage, RgbImage};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::rect::Rect;

/// Pixels of known surroundings matched around a hole's box, by default.
pub const DEFAULT_RING: u32 = 12;

/// Pixels of known surroundings matched around a hole's box when other images are searched
/// too ([`Reference`]). Chosen on 40 pairs of the inpainting run's training boards of DeepPCB,
/// every part copied from the group's other templates: 4 / 6 / 8 / 12 px missed 4.53 / 4.67 /
/// 4.74 / 5.12 % of the hole pixels on real pairs and 3.44 / 3.13 / 3.24 / 3.60 % in the
/// self-test. Among many images of one design, near places agree on a wide ring by chance less
/// often than in one image, and a narrow one keeps more places whole inside a reference.
pub const REFERENCE_RING: u32 = 6;

/// Side of the blocks the coarse search compares.
const COARSE: u32 = 4;

/// Coarse displacements refined at full resolution.
const REFINED: usize = 16;

/// Where a hole's pixels are copied from, and how well its surroundings matched there.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Match {
    /// The hole's box grown by the ring (clipped to the image): what was matched.
    pub grown: Rect,
    /// How the grown box is flipped and turned to lie on its source ([`orient`]).
    pub turn: u8,
    /// The source's top-left corner (the source is the grown box's size, turned).
    pub from: (u32, u32),
    /// The image the source lies in: `None` the hole's own, `Some(i)` the `i`th [`Reference`].
    pub source: Option<usize>,
    /// Mean absolute grey difference between the known surroundings of the hole and those of
    /// the source, as a fraction of full scale (0: identical).
    pub mismatch: f64,
}

/// The eight flips and quarter turns of a `w` x `h` frame: where its pixel `(x, y)` lands
/// under `turn` (bit 2: transpose first; bit 0: then mirror across; bit 1: then upside
/// down), and the frame's size after it.
pub fn orient(turn: u8, (x, y): (u32, u32), (w, h): (u32, u32)) -> ((u32, u32), (u32, u32)) {
    let ((x, y), (w, h)) = if turn & 4 != 0 {
        ((y, x), (h, w))
    } else {
        ((x, y), (w, h))
    };
    let x = if turn & 1 != 0 { w - 1 - x } else { x };
    let y = if turn & 2 != 0 { h - 1 - y } else { y };
    ((x, y), (w, h))
}

/// Which flips and quarter turns a source may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Turns {
    /// The pattern as it is.
    None,
    /// All eight.
    All,
}

impl Turns {
    fn list(self) -> &'static [u8] {
        match self {
            Turns::None => &[0],
            Turns::All => &[0, 1, 2, 3, 4, 5, 6, 7],
        }
    }
}

/// Counts of hole pixels in every rectangle, in constant time (a summed-area table).
struct HoleCounts {
    w: usize,
    sums: Vec<u32>,
}

impl HoleCounts {
    fn new(hole: &GrayImage) -> Self {
        let (w, h) = (hole.width() as usize, hole.height() as usize);
        let mut sums = vec![0u32; (w + 1) * (h + 1)];
        for y in 0..h {
            let mut row = 0u32;
            for x in 0..w {
                row += u32::from(hole.get_pixel(x as u32, y as u32)[0] != 0);
                sums[(y + 1) * (w + 1) + x + 1] = sums[y * (w + 1) + x + 1] + row;
            }
        }
        Self { w, sums }
    }

    fn count(&self, r: Rect) -> u32 {
        let s = |x: u32, y: u32| self.sums[y as usize * (self.w + 1) + x as usize];
        s(r.right(), r.bottom()) + s(r.x, r.y) - s(r.x, r.bottom()) - s(r.right(), r.y)
    }
}

/// Means of `COARSE`-pixel blocks of a `w` x `h` frame whose pixels are `Some` when known,
/// anchored at its top-left (partial blocks dropped); `None` for a block with an unknown pixel.
fn block_means(px: &[Option<u8>], w: u32, h: u32) -> (Vec<Option<f32>>, usize, usize) {
    let (cw, ch) = ((w / COARSE) as usize, (h / COARSE) as usize);
    let mut out = vec![None; cw * ch];
    for cy in 0..ch {
        for cx in 0..cw {
            let mut s = 0u32;
            let mut all = true;
            for y in 0..COARSE as usize {
                for x in 0..COARSE as usize {
                    let i = (cy * COARSE as usize + y) * w as usize + cx * COARSE as usize + x;
                    match px[i] {
                        Some(v) => s += u32::from(v),
                        None => all = false,
                    }
                }
            }
            out[cy * cw + cx] = all.then(|| s as f32 / (COARSE * COARSE) as f32);
        }
    }
    (out, cw, ch)
}

/// The known pixels of the grown box `t`, flipped and turned by `turn`: the frame's size, and
/// its pixels (`None` in the hole).
fn template(img: &GrayImage, hole: &GrayImage, t: Rect, turn: u8) -> ((u32, u32), Vec<Option<u8>>) {
    let (_, (tw, th)) = orient(turn, (0, 0), (t.w, t.h));
    let mut px = vec![None; (tw * th) as usize];
    for y in 0..t.h {
        for x in 0..t.w {
            let (ix, iy) = (t.x + x, t.y + y);
            if hole.get_pixel(ix, iy)[0] == 0 {
                let ((ox, oy), _) = orient(turn, (x, y), (t.w, t.h));
                px[(oy * tw + ox) as usize] = Some(img.get_pixel(ix, iy)[0]);
            }
        }
    }
    ((tw, th), px)
}

/// The pixels of a frame that are `Some`, as `(x, y, value)`.
fn listed(px: &[Option<u8>], tw: u32, th: u32) -> Vec<(u32, u32, i32)> {
    (0..th)
        .flat_map(|y| (0..tw).map(move |x| (x, y)))
        .filter_map(|(x, y)| px[(y * tw + x) as usize].map(|v| (x, y, i32::from(v))))
        .collect()
}

/// The whole blocks of a frame, as `(x, y, mean)` in blocks.
fn listed_blocks(px: &[Option<u8>], tw: u32, th: u32) -> Vec<(usize, usize, f32)> {
    let (blocks, bw, bh) = block_means(px, tw, th);
    (0..bh)
        .flat_map(|y| (0..bw).map(move |x| (x, y)))
        .filter_map(|(x, y)| blocks[y * bw + x].map(|v| (x, y, v)))
        .collect()
}

/// The best source for the hole pixels inside `part` (a box of `hole`, the non-zero pixels) in
/// `img`: the place, flip and quarter turn (of `turns`) at which the known pixels of `part`
/// grown by `ring` (clipped to the image) differ least from the image, among the places where
/// that whole grown box is free of hole pixels. The search compares block means at every
/// block-aligned place, then refines the best few to the pixel. `None` when the grown box has
/// no known pixel or no such place exists.
pub fn best_match(
    img: &GrayImage,
    hole: &GrayImage,
    part: Rect,
    ring: u32,
    turns: Turns,
) -> Option<Match> {
    if hole.dimensions() != img.dimensions() {
        return None;
    }
    let own = Field::new(img.clone(), Some(hole));
    best_match_in(img, hole, &own, &[], part, ring, turns)
}

/// [`best_match`] in the image's own [`Field`] and in `references`: the best of them, the
/// image's own place first among equal ones.
fn best_match_in(
    img: &GrayImage,
    hole: &GrayImage,
    own: &Field,
    references: &[&Reference],
    part: Rect,
    ring: u32,
    turns: Turns,
) -> Option<Match> {
    if part.is_empty() {
        return None;
    }
    let (w, h) = img.dimensions();
    let grown = part.grown_clipped(ring, w, h);
    let frames = frames(img, hole, grown, turns)?;
    let fields: Vec<(Option<usize>, &Field)> = std::iter::once((None, own))
        .chain(
            references
                .iter()
                .enumerate()
                .map(|(i, r)| (Some(i), &r.field)),
        )
        .collect();
    let found: Vec<Option<Found>> = fields.par_iter().map(|(_, f)| f.search(&frames)).collect();
    let mut best: Option<(Option<usize>, Found)> = None;
    for ((source, _), found) in fields.iter().zip(found) {
        if let Some(found) = found
            && best.is_none_or(|(_, b)| found.beats(&b))
        {
            best = Some((*source, found));
        }
    }
    best.map(|(source, found)| Match {
        grown,
        turn: found.turn,
        from: found.at,
        source,
        mismatch: found.mismatch(),
    })
}

/// A defect-free image of the same product whose pixels holes may be copied from, besides
/// their own image's ([`copy_repeats`]): a board whose pattern also occurs, whole, where the
/// defect image has a defect.
pub struct Reference {
    /// What to call it (its file or id).
    pub name: String,
    image: RgbImage,
    field: Field,
}

impl Reference {
    /// `image`, every pixel of which may be copied.
    pub fn new(name: impl Into<String>, image: RgbImage) -> Self {
        let grey = image::DynamicImage::ImageRgb8(image.clone()).to_luma8();
        Self {
            name: name.into(),
            image,
            field: Field::new(grey, None),
        }
    }
}

/// Copies into `out` the pixels of `part` that `hole` marks, from `m`'s source in `from` (the
/// image itself, or the reference that `m.source` names).
pub fn copy_part(out: &mut RgbImage, from: &RgbImage, hole: &GrayImage, part: Rect, m: &Match) {
    let t = m.grown;
    for y in part.y..part.bottom() {
        for x in part.x..part.right() {
            if hole.get_pixel(x, y)[0] != 0 {
                let ((ox, oy), _) = orient(m.turn, (x - t.x, y - t.y), (t.w, t.h));
                out.put_pixel(x, y, *from.get_pixel(m.from.0 + ox, m.from.1 + oy));
            }
        }
    }
}

/// How [`copy_repeats`] copies: the studio's *Copy repeats*, `inpaint apply --exemplar`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CopyRepeats {
    /// Copy a part only where its surroundings mismatch by at most this ([`Match::mismatch`]).
    pub max_mismatch: f64,
    /// Which flips and quarter turns a source may take.
    pub turns: Turns,
    /// Also copy from other defect-free images of the same product ([`Reference`]), not only
    /// from the image itself.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub references: bool,
}

/// The largest mismatch at which the studio copies a part by default. Chosen on 40 pairs of
/// the inpainting run's training boards of DeepPCB, with and without turns: 0.02-0.03 left
/// too many boxes to the network, 0.07-0.08 copied wrong ones (the unseen boards' figures
/// are in the README).
pub const DEFAULT_MAX_MISMATCH: f64 = 0.05;

/// The most other images of a product that a fill searches ([`Reference`]): the search's time
/// grows with their number.
pub const MAX_REFERENCES: usize = 64;

/// What [`copy_repeats`] did.
#[derive(Debug, Clone)]
pub struct Copied {
    /// The image with the copied parts filled.
    pub image: RgbImage,
    /// The hole pixels still to fill (binarised).
    pub hole: GrayImage,
    /// Parts of the hole copied.
    pub copied: usize,
    /// Of those, parts copied from a [`Reference`].
    pub from_references: usize,
    /// Parts of the hole (8-connected), copied or not.
    pub parts: usize,
}

/// Each part of `hole` (8-connected) whose [`best_match`] (grey) in `image` or, with
/// `how.references`, in one of `references` mismatches by at most `how.max_mismatch` is copied
/// from there; the rest stays a hole. The ring is [`DEFAULT_RING`] in the image alone,
/// [`REFERENCE_RING`] with references. Every match is sought before any copy, so no
/// part is copied from another's copy.
pub fn copy_repeats(
    image: &RgbImage,
    hole: &GrayImage,
    how: CopyRepeats,
    references: &[&Reference],
) -> Copied {
    let hole = super::io::binarize(hole.clone());
    let grey = image::DynamicImage::ImageRgb8(image.clone()).to_luma8();
    let parts: Vec<Rect> = super::boxes::connected_components(&hole)
        .into_iter()
        .map(|c| c.bbox)
        .collect();
    let references = if how.references { references } else { &[] };
    let ring = if references.is_empty() {
        DEFAULT_RING
    } else {
        REFERENCE_RING
    };
    let own = Field::new(grey.clone(), Some(&hole));
    let matches: Vec<(Rect, Match)> = parts
        .iter()
        .filter_map(|&p| {
            best_match_in(&grey, &hole, &own, references, p, ring, how.turns).map(|m| (p, m))
        })
        .filter(|(_, m)| m.mismatch <= how.max_mismatch)
        .collect();
    let mut out = image.clone();
    let mut rest = hole.clone();
    for (p, m) in &matches {
        let from = match m.source {
            Some(i) => &references[i].image,
            None => image,
        };
        copy_part(&mut out, from, &hole, *p, m);
        for y in p.y..p.bottom() {
            for x in p.x..p.right() {
                rest.put_pixel(x, y, image::Luma([0]));
            }
        }
    }
    Copied {
        image: out,
        hole: rest,
        copied: matches.len(),
        from_references: matches.iter().filter(|(_, m)| m.source.is_some()).count(),
        parts: parts.len(),
    }
}

/// One flip or quarter turn of a hole's grown box, as searched for: its size, its known pixels
/// as `(x, y, value)` and its whole known blocks as `(x, y, mean)` in blocks.
struct Frame {
    turn: u8,
    size: (u32, u32),
    known: Vec<(u32, u32, i32)>,
    blocks: Vec<(usize, usize, f32)>,
}

/// The frames of the grown box `t` of `img` (its known pixels: `hole` zero) under each turn
/// of `turns`; `None` when it has no known pixel.
fn frames(img: &GrayImage, hole: &GrayImage, t: Rect, turns: Turns) -> Option<Vec<Frame>> {
    let mut out = Vec::new();
    for &turn in turns.list() {
        let ((tw, th), px) = template(img, hole, t, turn);
        let known = listed(&px, tw, th);
        if known.is_empty() {
            return None;
        }
        out.push(Frame {
            turn,
            size: (tw, th),
            blocks: listed_blocks(&px, tw, th),
            known,
        });
    }
    Some(out)
}

/// The best place found in a [`Field`]: summed absolute difference over the frame's known
/// pixels, their number, the turn and the top-left corner.
#[derive(Debug, Clone, Copy)]
struct Found {
    diff: u64,
    known: usize,
    turn: u8,
    at: (u32, u32),
}

impl Found {
    /// Whether this matches strictly better than `other` (mean differences compared exactly).
    fn beats(&self, other: &Found) -> bool {
        u128::from(self.diff) * (other.known as u128) < u128::from(other.diff) * self.known as u128
    }

    fn mismatch(&self) -> f64 {
        self.diff as f64 / (self.known as f64 * 255.0)
    }
}

/// A grey image searched for sources: its pixels, the places it must not copy from (its hole
/// pixels, counted per rectangle) and the means of its known blocks. Built once per image.
struct Field {
    img: GrayImage,
    counts: Option<HoleCounts>,
    /// Block means, NaN for a block with an unknown pixel.
    blocks: Vec<f32>,
    cw: usize,
    ch: usize,
}

impl Field {
    /// `img`, with the pixels that `hole` marks (same size) never copied from; `None`: every
    /// pixel may be.
    fn new(img: GrayImage, hole: Option<&GrayImage>) -> Self {
        let (w, h) = img.dimensions();
        let px: Vec<Option<u8>> = match hole {
            Some(hole) => img
                .as_raw()
                .iter()
                .zip(hole.as_raw())
                .map(|(&v, &m)| (m == 0).then_some(v))
                .collect(),
            None => img.as_raw().iter().map(|&v| Some(v)).collect(),
        };
        let (blocks, cw, ch) = block_means(&px, w, h);
        let blocks = blocks.into_iter().map(|b| b.unwrap_or(f32::NAN)).collect();
        Self {
            counts: hole.map(HoleCounts::new),
            img,
            blocks,
            cw,
            ch,
        }
    }

    /// The place, among those where a whole frame lies free of hole pixels, whose pixels
    /// differ least from a frame's known ones: block means compared at every block-aligned
    /// place, then the best few refined to the pixel. The first of equal ones, in a fixed
    /// order, wins.
    fn search(&self, frames: &[Frame]) -> Option<Found> {
        let (w, h) = self.img.dimensions();
        let (cw, ch) = (self.cw, self.ch);
        let step = COARSE as usize;
        // (mean block difference, frame, x, y) of the best block-aligned places.
        let mut coarse: Vec<(f32, usize, u32, u32)> = Vec::new();
        for (f, frame) in frames.iter().enumerate() {
            let (tw, th) = frame.size;
            if tw > w || th > h {
                continue;
            }
            if frame.blocks.is_empty() {
                // Too small a frame for a whole known block: every block-aligned place is a
                // candidate.
                for y in (0..=h - th).step_by(step) {
                    for x in (0..=w - tw).step_by(step) {
                        coarse.push((0.0, f, x, y));
                    }
                }
                continue;
            }
            // The frame's blocks as offsets into this field's block rows.
            let flat: Vec<(usize, f32)> = frame
                .blocks
                .iter()
                .map(|&(x, y, v)| (y * cw + x, v))
                .collect();
            for cy in 0..=ch.saturating_sub(th as usize / step) {
                for cx in 0..=cw.saturating_sub(tw as usize / step) {
                    let at = &self.blocks[cy * cw + cx..];
                    let d: f32 = flat
                        .iter()
                        .map(|&(o, v)| match at[o] {
                            // An unknown block (NaN) differs by full scale.
                            s if s.is_nan() => 255.0,
                            s => (s - v).abs(),
                        })
                        .sum();
                    let (x, y) = ((cx * step) as u32, (cy * step) as u32);
                    coarse.push((d / frame.blocks.len() as f32, f, x, y));
                }
            }
        }
        coarse.sort_by(|a, b| a.0.total_cmp(&b.0));
        coarse.truncate(REFINED);

        // Fine: every place within a block of each coarse candidate.
        let r = COARSE as i64 - 1;
        let mut best: Option<Found> = None;
        for &(_, f, cx, cy) in &coarse {
            let frame = &frames[f];
            let (tw, th) = frame.size;
            for y in i64::from(cy) - r..=i64::from(cy) + r {
                for x in i64::from(cx) - r..=i64::from(cx) + r {
                    if x < 0
                        || y < 0
                        || x + i64::from(tw) > i64::from(w)
                        || y + i64::from(th) > i64::from(h)
                    {
                        continue;
                    }
                    let (x, y) = (x as u32, y as u32);
                    if let Some(counts) = &self.counts
                        && counts.count(Rect::new(x, y, tw, th)) != 0
                    {
                        continue;
                    }
                    let diff: u64 = frame
                        .known
                        .iter()
                        .map(|&(kx, ky, v)| {
                            let s = self.img.get_pixel(x + kx, y + ky)[0];
                            u64::from((i32::from(s) - v).unsigned_abs())
                        })
                        .sum();
                    let found = Found {
                        diff,
                        known: frame.known.len(),
                        turn: frame.turn,
                        at: (x, y),
                    };
                    if best.is_none_or(|b| found.beats(&b)) {
                        best = Some(found);
                    }
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Luma;

    /// A pattern that repeats every 40 px across and 56 px down, with no other symmetry.
    fn tiled(w: u32, h: u32) -> GrayImage {
        GrayImage::from_fn(w, h, |x, y| {
            let (u, v) = (x % 40, y % 56);
            let on = (5..14).contains(&u)
                || (v > 30 && u + v > 50)
                || (u as i64 - 25).pow(2) + (v as i64 - 12).pow(2) < 30;
            Luma([if on { 20 } else { 235 }])
        })
    }

    fn hole_at(w: u32, h: u32, r: Rect) -> GrayImage {
        GrayImage::from_fn(w, h, |x, y| Luma([if r.contains(x, y) { 255 } else { 0 }]))
    }

    #[test]
    fn a_repeating_pattern_is_filled_exactly_from_a_repeat() {
        let img = tiled(320, 280);
        let part = Rect::new(123, 101, 23, 30);
        let hole = hole_at(320, 280, part);
        let mut damaged = img.clone();
        for y in part.y..part.bottom() {
            for x in part.x..part.right() {
                damaged.put_pixel(x, y, Luma([128]));
            }
        }
        let m = best_match(&damaged, &hole, part, DEFAULT_RING, Turns::None).expect("a match");
        assert_eq!(m.mismatch, 0.0);
        let (dx, dy) = (
            i64::from(m.from.0) - i64::from(m.grown.x),
            i64::from(m.from.1) - i64::from(m.grown.y),
        );
        assert_eq!((dx.rem_euclid(40), dy.rem_euclid(56)), (0, 0), "{m:?}");
        let mut out = image::DynamicImage::ImageLuma8(damaged).to_rgb8();
        let from = out.clone();
        copy_part(&mut out, &from, &hole, part, &m);
        let filled = image::DynamicImage::ImageRgb8(out).to_luma8();
        assert_eq!(filled, img);
    }

    #[test]
    fn the_search_finds_a_repeat_at_any_displacement_and_never_copies_from_a_hole() {
        // Smooth noise (a coarse random grid, interpolated), with the hole's surroundings
        // planted again at a place off the coarse blocks' grid: only the pixel-level
        // refinement finds it exactly.
        let (w, h) = (96u32, 80u32);
        let mut state = 12345u64;
        let grid: Vec<f64> = (0..25 * 21)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 56) as f64
            })
            .collect();
        let mut img = GrayImage::from_fn(w, h, |x, y| {
            let (gx, gy) = (x as f64 / 4.0, y as f64 / 4.0);
            let (x0, y0) = (gx.floor() as usize, gy.floor() as usize);
            let (fx, fy) = (gx - x0 as f64, gy - y0 as f64);
            let g = |x: usize, y: usize| grid[y * 25 + x];
            let top = g(x0, y0) * (1.0 - fx) + g(x0 + 1, y0) * fx;
            let bottom = g(x0, y0 + 1) * (1.0 - fx) + g(x0 + 1, y0 + 1) * fx;
            Luma([(top * (1.0 - fy) + bottom * fy).round() as u8])
        });
        let part = Rect::new(20, 30, 9, 7);
        let ring = 5;
        let t = part.grown_clipped(ring, w, h);
        let (dx, dy) = (42i64, -18i64);
        for y in t.y..t.bottom() {
            for x in t.x..t.right() {
                let v = *img.get_pixel(x, y);
                img.put_pixel((x as i64 + dx) as u32, (y as i64 + dy) as u32, v);
            }
        }
        // The planted copy differs in one pixel of the surroundings, by 60 grey levels.
        let corner = ((t.x as i64 + dx) as u32, (t.y as i64 + dy) as u32);
        let v = img.get_pixel(corner.0, corner.1)[0];
        img.put_pixel(corner.0, corner.1, Luma([v.wrapping_add(60)]));
        let off = f64::from(v.wrapping_add(60).abs_diff(v)) / 255.0;
        // A second copy, perfect, but over a pixel of another hole: never a source.
        let mut hole = hole_at(w, h, part);
        let (ox, oy) = (-13i64, 31i64);
        for y in t.y..t.bottom() {
            for x in t.x..t.right() {
                let v = *img.get_pixel(x, y);
                img.put_pixel((x as i64 + ox) as u32, (y as i64 + oy) as u32, v);
            }
        }
        // In its last corner, where the coarse blocks do not reach: only the pixel-level check
        // sees it.
        hole.put_pixel(
            (t.right() as i64 - 1 + ox) as u32,
            (t.bottom() as i64 - 1 + oy) as u32,
            Luma([255]),
        );
        let m = best_match(&img, &hole, part, ring, Turns::None).expect("a match");
        let known = (t.w * t.h - part.w * part.h) as f64;
        assert_eq!((m.grown, m.turn, m.from), (t, 0, corner));
        assert!((m.mismatch - off / known).abs() < 1e-12, "{m:?}");
    }

    #[test]
    fn each_flip_and_turn_maps_the_frame_onto_itself_once() {
        let (w, h) = (5u32, 3u32);
        let mut seen = std::collections::BTreeSet::new();
        for turn in 0..8u8 {
            let mut image = Vec::new();
            for y in 0..h {
                for x in 0..w {
                    let (p, size) = orient(turn, (x, y), (w, h));
                    assert_eq!(size, if turn & 4 != 0 { (h, w) } else { (w, h) });
                    assert!(p.0 < size.0 && p.1 < size.1);
                    image.push(p);
                }
            }
            let distinct: std::collections::BTreeSet<_> = image.iter().collect();
            assert_eq!(
                distinct.len(),
                (w * h) as usize,
                "turn {turn} is not one-to-one"
            );
            assert!(seen.insert(image), "turn {turn} repeats another");
        }
    }

    #[test]
    fn a_pattern_seen_only_turned_is_found_and_copied_turned() {
        // Noise, with the grown box planted elsewhere turned a quarter (transposed, then
        // mirrored): found only when turns are allowed, and then copied back exactly.
        let (w, h) = (90u32, 90u32);
        let mut state = 99u64;
        let truth = GrayImage::from_fn(w, h, |_, _| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            Luma([(state >> 56) as u8])
        });
        let mut img = truth.clone();
        let part = Rect::new(14, 16, 10, 6);
        let t = part.grown_clipped(DEFAULT_RING, w, h);
        let turn = 5u8;
        for y in 0..t.h {
            for x in 0..t.w {
                let ((ox, oy), _) = orient(turn, (x, y), (t.w, t.h));
                let v = *truth.get_pixel(t.x + x, t.y + y);
                img.put_pixel(50 + ox, 41 + oy, v);
            }
        }
        let want = img.clone();
        let hole = hole_at(w, h, part);
        for y in part.y..part.bottom() {
            for x in part.x..part.right() {
                img.put_pixel(x, y, Luma([0]));
            }
        }
        let plain = best_match(&img, &hole, part, DEFAULT_RING, Turns::None).expect("a match");
        assert!(plain.mismatch > 0.1, "{plain:?}");
        let m = best_match(&img, &hole, part, DEFAULT_RING, Turns::All).expect("a match");
        assert_eq!((m.turn, m.from, m.mismatch), (turn, (50, 41), 0.0));
        let rgb = image::DynamicImage::ImageLuma8(img).to_rgb8();
        let all = CopyRepeats {
            max_mismatch: 0.01,
            turns: Turns::All,
            references: false,
        };
        let copied = copy_repeats(&rgb, &hole, all, &[]);
        assert_eq!((copied.copied, copied.parts), (1, 1));
        assert_eq!(copied.hole.as_raw().iter().filter(|&&v| v != 0).count(), 0);
        assert_eq!(
            image::DynamicImage::ImageRgb8(copied.image).to_luma8(),
            want
        );
        // Above the limit, nothing is copied.
        let none = copy_repeats(
            &rgb,
            &hole,
            CopyRepeats {
                turns: Turns::None,
                ..all
            },
            &[],
        );
        assert_eq!((none.copied, none.parts), (0, 1));
        assert_eq!(none.hole, hole);
    }

    /// `w` x `h` of uniform noise from `seed`.
    fn noise(w: u32, h: u32, seed: u64) -> GrayImage {
        let mut state = seed;
        GrayImage::from_fn(w, h, |_, _| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            Luma([(state >> 56) as u8])
        })
    }

    /// `frame` of `from` written into `into` with its top-left at `at`.
    fn plant(into: &mut GrayImage, from: &GrayImage, frame: Rect, at: (u32, u32)) {
        for y in 0..frame.h {
            for x in 0..frame.w {
                into.put_pixel(
                    at.0 + x,
                    at.1 + y,
                    *from.get_pixel(frame.x + x, frame.y + y),
                );
            }
        }
    }

    #[test]
    fn a_pattern_found_only_in_another_image_is_copied_from_the_best_one() {
        let (w, h) = (120u32, 70u32);
        let truth = noise(w, h, 7);
        let part = Rect::new(30, 25, 11, 9);
        let t = part.grown_clipped(DEFAULT_RING, w, h);
        let hole = hole_at(w, h, part);
        let mut damaged = truth.clone();
        for y in part.y..part.bottom() {
            for x in part.x..part.right() {
                damaged.put_pixel(x, y, Luma([0]));
            }
        }
        let rgb = |g: &GrayImage| image::DynamicImage::ImageLuma8(g.clone()).to_rgb8();
        // Two other images hold the grown box: the first with one surrounding pixel off, the
        // second exactly (and of another size).
        let mut near = noise(90, 90, 8);
        plant(&mut near, &truth, t, (3, 40));
        let v = near.get_pixel(3, 40)[0];
        near.put_pixel(3, 40, Luma([v.wrapping_add(90)]));
        let mut exact = noise(100, 64, 9);
        plant(&mut exact, &truth, t, (61, 17));
        let refs = [
            Reference::new("near", rgb(&near)),
            Reference::new("exact", rgb(&exact)),
        ];
        let refs: Vec<&Reference> = refs.iter().collect();
        let how = CopyRepeats {
            max_mismatch: 0.01,
            turns: Turns::None,
            references: true,
        };
        let c = copy_repeats(&rgb(&damaged), &hole, how, &refs);
        assert_eq!((c.copied, c.from_references, c.parts), (1, 1, 1));
        assert_eq!(image::DynamicImage::ImageRgb8(c.image).to_luma8(), truth);
        let search = |img: &GrayImage| {
            let own = Field::new(img.clone(), Some(&hole));
            best_match_in(img, &hole, &own, &refs, part, DEFAULT_RING, Turns::None)
                .expect("a match")
        };
        let m = search(&damaged);
        assert_eq!((m.source, m.from, m.mismatch), (Some(1), (61, 17), 0.0));
        // Without references the noise has no repeat: nothing is copied.
        let alone = copy_repeats(
            &rgb(&damaged),
            &hole,
            CopyRepeats {
                references: false,
                ..how
            },
            &refs,
        );
        assert_eq!((alone.copied, alone.from_references), (0, 0));
        assert_eq!(alone.hole, hole);
        // An exact repeat in the image itself wins a tie with the references.
        let mut repeated = damaged.clone();
        plant(&mut repeated, &truth, t, (84, 30));
        let m = search(&repeated);
        assert_eq!((m.source, m.from, m.mismatch), (None, (84, 30), 0.0));
    }

    #[test]
    fn no_match_without_known_surroundings_or_room() {
        let img = tiled(60, 60);
        let all = hole_at(60, 60, Rect::new(0, 0, 60, 60));
        assert_eq!(
            best_match(&img, &all, Rect::new(10, 10, 5, 5), 4, Turns::All),
            None
        );
        // The grown box fills most of the image: nowhere else to copy from.
        let part = Rect::new(10, 10, 30, 30);
        assert_eq!(
            best_match(&img, &hole_at(60, 60, part), part, 8, Turns::All),
            None
        );
    }
}
