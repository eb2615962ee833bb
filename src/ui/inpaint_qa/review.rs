//! The pane's pure parts: status names and counts, the next twin to review, the heat map.

use std::collections::HashSet;

use egui::{Color32, ColorImage};
use image::RgbImage;

use super::TwinRow;
use crate::project::TwinStatus;

pub(super) fn status_name(status: TwinStatus) -> &'static str {
    match status {
        TwinStatus::PendingReview => "pending",
        TwinStatus::Accepted => "accepted",
        TwinStatus::Rejected => "rejected",
    }
}

/// "12 pending, 3 accepted, 1 rejected".
pub fn status_counts(rows: &[TwinRow]) -> String {
    let count = |s: TwinStatus| rows.iter().filter(|r| r.status == s).count();
    format!(
        "{} pending, {} accepted, {} rejected",
        count(TwinStatus::PendingReview),
        count(TwinStatus::Accepted),
        count(TwinStatus::Rejected)
    )
}

/// The first pending twin after `current` in `listing` (wrapping round), skipping `current` and
/// the `skip`ped ids (reviewed, the project not yet updated).
pub fn next_pending(listing: &[TwinRow], current: &str, skip: &HashSet<String>) -> Option<String> {
    let start = listing
        .iter()
        .position(|r| r.id == current)
        .map_or(0, |i| i + 1);
    listing[start..]
        .iter()
        .chain(&listing[..start])
        .find(|r| r.status == TwinStatus::PendingReview && r.id != current && !skip.contains(&r.id))
        .map(|r| r.id.clone())
}

/// The "hot" colour ramp: black, red, yellow, white for `t` in 0..=1, transparent at 0.
pub fn heat_colour(t: f32) -> Color32 {
    let t = t.clamp(0.0, 1.0);
    let ch = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    let alpha = if t > 0.0 { ch(0.35 + 0.65 * t) } else { 0 };
    Color32::from_rgba_unmultiplied(ch(3.0 * t), ch(3.0 * t - 1.0), ch(3.0 * t - 2.0), alpha)
}

/// `|after - before|` per pixel (largest channel), scaled so the largest difference is white.
/// `None` when the sizes differ.
pub fn heat_map(before: &RgbImage, after: &RgbImage) -> Option<ColorImage> {
    if before.dimensions() != after.dimensions() {
        return None;
    }
    let diffs: Vec<u8> = before
        .pixels()
        .zip(after.pixels())
        .map(|(b, a)| (0..3).map(|c| b[c].abs_diff(a[c])).max().unwrap_or(0))
        .collect();
    let top = f32::from(diffs.iter().copied().max().unwrap_or(0).max(1));
    let pixels = diffs
        .into_iter()
        .map(|d| heat_colour(f32::from(d) / top))
        .collect();
    let (w, h) = after.dimensions();
    Some(ColorImage::new([w as usize, h as usize], pixels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::inpaint_qa::StatusFilter;

    fn row(id: &str, seam: f64, status: TwinStatus) -> TwinRow {
        TwinRow {
            id: id.into(),
            defect: format!("d-{id}"),
            seam,
            status,
            how: String::new(),
        }
    }

    #[test]
    fn a_twin_says_how_it_was_filled() {
        use crate::imaging::exemplar::{CopyRepeats, Turns};
        use crate::project::InpaintInfo;
        use crate::ui::inpaint_qa::fill_description;
        let mut info = InpaintInfo {
            checkpoint: "0".repeat(64),
            seam: 1.0,
            ..Default::default()
        };
        assert_eq!(fill_description(&info), "network fill");
        info.peel = 4;
        info.exemplar = Some(CopyRepeats {
            max_mismatch: 0.05,
            turns: Turns::None,
            references: false,
        });
        info.copied = 2;
        assert_eq!(
            fill_description(&info),
            "network fill; rim inwards in 4 px rings; 2 boxes copied from repeats"
        );
        info.ensemble = true;
        info.copied = 1;
        info.exemplar = info.exemplar.map(|x| CopyRepeats {
            turns: Turns::All,
            ..x
        });
        assert_eq!(
            fill_description(&info),
            "network fill, mean of 8 flips and turns; rim inwards in 4 px rings; 1 box copied from a repeat; flips and turns allowed"
        );
        info.exemplar = info.exemplar.map(|x| CopyRepeats {
            references: true,
            ..x
        });
        info.copied = 3;
        info.referenced = 2;
        assert_eq!(
            fill_description(&info),
            "network fill, mean of 8 flips and turns; rim inwards in 4 px rings; 3 boxes copied from repeats; flips and turns allowed; 2 of them from other images of the group"
        );
    }

    #[test]
    fn next_pending_skips_reviewed_and_wraps() {
        use TwinStatus::*;
        let l = [
            row("a", 5.0, PendingReview),
            row("b", 4.0, Accepted),
            row("c", 3.0, PendingReview),
            row("d", 2.0, PendingReview),
        ];
        let none = HashSet::new();
        assert_eq!(next_pending(&l, "a", &none).as_deref(), Some("c"));
        let skip: HashSet<String> = ["c".to_string()].into();
        assert_eq!(next_pending(&l, "a", &skip).as_deref(), Some("d"));
        assert_eq!(next_pending(&l, "d", &none).as_deref(), Some("a"));
        let all: HashSet<String> = ["a", "c"].map(String::from).into();
        assert_eq!(next_pending(&l, "d", &all), None);
    }

    #[test]
    fn heat_map_is_transparent_where_equal_and_white_at_the_largest_difference() {
        let before = RgbImage::from_pixel(4, 2, image::Rgb([10, 10, 10]));
        let mut after = before.clone();
        after.put_pixel(1, 0, image::Rgb([10, 110, 10]));
        after.put_pixel(2, 1, image::Rgb([60, 10, 10]));
        let heat = heat_map(&before, &after).expect("same size");
        assert_eq!(heat.size, [4, 2]);
        assert_eq!(heat.pixels[0].a(), 0);
        assert_eq!(heat.pixels[1], Color32::WHITE);
        let half = heat.pixels[4 + 2];
        assert!(half.a() > 0 && half.r() > half.b(), "{half:?}");
        assert!(heat_map(&before, &RgbImage::new(3, 2)).is_none());
    }

    #[test]
    fn counts_and_filters() {
        use TwinStatus::*;
        let rows = [
            row("a", 1.0, PendingReview),
            row("b", 1.0, PendingReview),
            row("c", 1.0, Rejected),
        ];
        assert_eq!(status_counts(&rows), "2 pending, 0 accepted, 1 rejected");
        assert!(StatusFilter::Pending.admits(PendingReview));
        assert!(!StatusFilter::Accepted.admits(Rejected));
        assert!(StatusFilter::All.admits(Rejected));
    }
}
