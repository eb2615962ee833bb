//! Counts over a project (the `info` command, the browser's header) and the browser's filters.

use std::collections::BTreeMap;

use serde::Serialize;

use super::manifest::{ImageEntry, Manifest, Role};

/// Counts per role, class, group and status, as printed by `info --json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProjectStats {
    /// Number of images.
    pub images: usize,
    /// Images per role (every role present, zero included).
    pub by_role: BTreeMap<String, usize>,
    /// Images per defect class (an image showing several classes counts in each).
    pub by_class: BTreeMap<String, usize>,
    /// Images per group.
    pub by_group: BTreeMap<String, usize>,
    /// Images with a pixel mask.
    pub with_mask: usize,
    /// Images with a box mask.
    pub with_box: usize,
    /// Images linked to a defect-free twin.
    pub with_twin: usize,
    /// Defect regions in all.
    pub regions: usize,
    /// Defect regions per class.
    pub regions_by_class: BTreeMap<String, usize>,
}

impl ProjectStats {
    /// Counts `manifest`.
    pub fn of(manifest: &Manifest) -> Self {
        let mut s = Self {
            images: manifest.images.len(),
            by_role: Role::ALL
                .iter()
                .map(|r| (r.as_str().to_owned(), 0))
                .collect(),
            ..Self::default()
        };
        for e in &manifest.images {
            *s.by_role.entry(e.role.as_str().to_owned()).or_default() += 1;
            *s.by_group.entry(e.group.clone()).or_default() += 1;
            for c in e.classes() {
                *s.by_class.entry(c.to_owned()).or_default() += 1;
            }
            s.with_mask += usize::from(e.mask.is_some());
            s.with_box += usize::from(e.box_mask.is_some());
            s.with_twin += usize::from(e.twin.is_some());
            s.regions += e.regions.len();
            for r in &e.regions {
                *s.regions_by_class.entry(r.class.clone()).or_default() += 1;
            }
        }
        s
    }
}

/// A status an image can be filtered on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum StatusFilter {
    /// Has a pixel mask.
    HasMask,
    /// Has no pixel mask.
    NoMask,
    /// Has a box mask.
    HasBox,
    /// Has a defect-free twin.
    HasTwin,
}

impl StatusFilter {
    /// Every status filter, in display order.
    pub const ALL: [StatusFilter; 4] = [
        StatusFilter::HasMask,
        StatusFilter::NoMask,
        StatusFilter::HasBox,
        StatusFilter::HasTwin,
    ];

    /// Label shown in the browser.
    pub fn label(self) -> &'static str {
        match self {
            StatusFilter::HasMask => "has mask",
            StatusFilter::NoMask => "no mask",
            StatusFilter::HasBox => "has box",
            StatusFilter::HasTwin => "has twin",
        }
    }

    fn matches(self, e: &ImageEntry) -> bool {
        match self {
            StatusFilter::HasMask => e.mask.is_some(),
            StatusFilter::NoMask => e.mask.is_none(),
            StatusFilter::HasBox => e.box_mask.is_some(),
            StatusFilter::HasTwin => e.twin.is_some(),
        }
    }
}

/// The dataset browser's filter: every set field must match.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageFilter {
    /// Only this role.
    pub role: Option<Role>,
    /// Only images showing this class.
    pub class: Option<String>,
    /// Only this group.
    pub group: Option<String>,
    /// Only this status.
    pub status: Option<StatusFilter>,
    /// Only names (id or file name) containing this text, case-insensitive.
    pub search: String,
}

impl ImageFilter {
    /// True when `e` passes every set condition.
    pub fn matches(&self, e: &ImageEntry) -> bool {
        self.role.is_none_or(|r| e.role == r)
            && self
                .class
                .as_deref()
                .is_none_or(|c| e.classes().contains(c))
            && self.group.as_deref().is_none_or(|g| e.group == g)
            && self.status.is_none_or(|s| s.matches(e))
            && (self.search.is_empty() || {
                let needle = self.search.to_lowercase();
                e.id.to_lowercase().contains(&needle)
                    || e.path.as_str().to_lowercase().contains(&needle)
            })
    }

    /// Indices of the images of `manifest` that pass.
    pub fn apply(&self, manifest: &Manifest) -> Vec<usize> {
        manifest
            .images
            .iter()
            .enumerate()
            .filter(|(_, e)| self.matches(e))
            .map(|(i, _)| i)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imaging::rect::Rect;
    use crate::project::manifest::{Region, RelPath};

    fn sample() -> Manifest {
        let mut m = Manifest::new("t");
        let mut d = ImageEntry::new("d1", RelPath::new("d1.png").expect("p"), Role::Defect, "a");
        d.mask = Some(RelPath::new("m/d1.png").expect("p"));
        d.twin = Some("t1".into());
        d.regions = vec![
            Region {
                class: "open".into(),
                bbox: Rect::new(0, 0, 2, 2),
            },
            Region {
                class: "short".into(),
                bbox: Rect::new(3, 3, 2, 2),
            },
            Region {
                class: "open".into(),
                bbox: Rect::new(5, 5, 2, 2),
            },
        ];
        let mut t = ImageEntry::new(
            "t1",
            RelPath::new("t1.png").expect("p"),
            Role::Template,
            "a",
        );
        t.twin_of = Some("d1".into());
        let g = ImageEntry::new("g1", RelPath::new("G1.png").expect("p"), Role::Good, "b");
        m.images = vec![d, t, g];
        m
    }

    #[test]
    fn stats_count_roles_classes_and_regions() {
        let s = ProjectStats::of(&sample());
        assert_eq!(s.images, 3);
        assert_eq!(s.by_role["good"], 1);
        assert_eq!(s.by_role["template"], 1);
        assert_eq!(s.by_class["open"], 1);
        assert_eq!(s.regions_by_class["open"], 2);
        assert_eq!(s.regions, 3);
        assert_eq!((s.with_mask, s.with_box, s.with_twin), (1, 0, 1));
        assert_eq!(s.by_group["a"], 2);
    }

    #[test]
    fn filters_combine() {
        let m = sample();
        let mut f = ImageFilter::default();
        assert_eq!(f.apply(&m), vec![0, 1, 2]);
        f.class = Some("short".into());
        assert_eq!(f.apply(&m), vec![0]);
        f.class = None;
        f.group = Some("a".into());
        f.status = Some(StatusFilter::NoMask);
        assert_eq!(f.apply(&m), vec![1]);
        let f = ImageFilter {
            search: "g1".into(),
            ..ImageFilter::default()
        };
        assert_eq!(f.apply(&m), vec![2]);
    }
}
