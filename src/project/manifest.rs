//! The project manifest `studio.json`: every image, its role, class, group, masks and twin.
//!
//! Format (version 1), all paths relative to the project folder with `/` separators:
//! ```json
//! {
//!   "format": 1,
//!   "name": "demo",
//!   "box_margin": 8,
//!   "images": [
//!     { "id": "oled-a/defect/0001", "path": "images/oled-a/defect/0001.png",
//!       "role": "defect", "class": "dark_spot", "group": "oled-a",
//!       "width": 256, "height": 256,
//!       "mask": "masks/oled-a/defect/0001.png", "box_mask": "boxes/oled-a/defect/0001.png",
//!       "twin": "oled-a/template/0001",
//!       "regions": [ { "class": "dark_spot", "bbox": { "x": 10, "y": 20, "w": 12, "h": 12 } } ] }
//!   ]
//! }
//! ```
//! A region is one defect: its class, its box, and its part of the pixel mask, which is the pixel
//! mask clipped to that box. `twin` names the entry (by id) of the defect-free twin; the twin
//! names its defect image back in `twin_of`.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::imaging::exemplar::CopyRepeats;
use crate::imaging::rect::Rect;

/// Current manifest format version.
pub const FORMAT_VERSION: u32 = 1;
/// Default margin, in pixels, that box masks add around each defect region.
pub const DEFAULT_BOX_MARGIN: u32 = 8;

/// What an image is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Defect-free image (a source of backgrounds and of inpainting training data).
    Good,
    /// Image with one or more defects.
    Defect,
    /// The defect-free twin of a defect image (real, as DeepPCB's templates, or inpainted).
    Template,
}

impl Role {
    /// Every role, in display order.
    pub const ALL: [Role; 3] = [Role::Good, Role::Defect, Role::Template];

    /// The name used in the manifest and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Good => "good",
            Role::Defect => "defect",
            Role::Template => "template",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A path inside the project: relative, `/`-separated, with no `..`, `.` or empty parts.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct RelPath(String);

/// Why a path was refused as a project path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelPathError {
    /// The path is empty.
    #[error("empty path")]
    Empty,
    /// The path is absolute (or has a drive prefix).
    #[error("absolute path `{0}` is not allowed: paths must be relative to the project folder")]
    Absolute(String),
    /// The path leaves the project folder or has empty / `.` parts.
    #[error("path `{0}` is not allowed: `..`, `.` and empty parts are refused")]
    Escapes(String),
    /// The path contains a backslash or a control character.
    #[error("path `{0}` has a backslash or control character; use `/` separators")]
    BadCharacter(String),
}

impl RelPath {
    /// Validates `s` as a project path.
    pub fn new(s: impl Into<String>) -> Result<Self, RelPathError> {
        let s = s.into();
        if s.is_empty() {
            return Err(RelPathError::Empty);
        }
        if s.starts_with('/') || s.as_bytes().get(1) == Some(&b':') {
            return Err(RelPathError::Absolute(s));
        }
        if s.contains('\\') || s.chars().any(char::is_control) {
            return Err(RelPathError::BadCharacter(s));
        }
        if s.split('/')
            .any(|part| part.is_empty() || part == "." || part == "..")
        {
            return Err(RelPathError::Escapes(s));
        }
        Ok(Self(s))
    }

    /// The path as written in the manifest.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The file name's stem (last part without extension).
    pub fn stem(&self) -> &str {
        let name = self.0.rsplit('/').next().unwrap_or(&self.0);
        name.rsplit_once('.').map_or(name, |(stem, _)| stem)
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for RelPath {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        RelPath::new(s).map_err(serde::de::Error::custom)
    }
}

/// One defect inside a defect image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Region {
    /// Defect class name.
    pub class: String,
    /// The defect's box (tight around the defect, before any box-mask margin).
    pub bbox: Rect,
}

/// Review state of a defect-free twin made by the studio (inpainted); real templates have none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TwinStatus {
    /// Made, not yet checked by the engineer.
    PendingReview,
    /// Checked and accepted: used for training.
    Accepted,
    /// Checked and rejected: never used.
    Rejected,
}

/// One image of the project.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageEntry {
    /// Unique, stable identifier (also used to name derived files).
    pub id: String,
    /// The image file.
    pub path: RelPath,
    /// What the image is for.
    pub role: Role,
    /// The defect class of a single-class defect image (folder layouts); multi-class images
    /// (DeepPCB) leave it empty and name classes per region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// Product / pattern / board group.
    pub group: String,
    /// Image width in pixels.
    pub width: u32,
    /// Image height in pixels.
    pub height: u32,
    /// Binary pixel mask (8-bit PNG, 255 = defect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask: Option<RelPath>,
    /// Binary box mask (8-bit PNG, 255 = inside a box).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub box_mask: Option<RelPath>,
    /// Id of this defect image's defect-free twin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub twin: Option<String>,
    /// Id of the defect image this template is the twin of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub twin_of: Option<String>,
    /// Review state of an inpainted twin (absent for real templates and other images).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub twin_status: Option<TwinStatus>,
    /// Every defect of a defect image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<Region>,
    /// For images made by the generator: how to make exactly this file again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synthetic: Option<Provenance>,
    /// For twins made by inpainting: which model and how well the seam scored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inpaint: Option<InpaintInfo>,
}

/// How an inpainted twin was made. `Default` is a one-pass network fill with an empty checkpoint
/// and a zero seam score: tests set those two and take the rest from it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct InpaintInfo {
    /// SHA-256 of the inpainting checkpoint file, hex; for a checkpoint ensemble (`inpaint
    /// apply --also`), the SHA-256 of the members' SHA-256s (hex, one per line, in order).
    pub checkpoint: String,
    /// Seam score: gradient energy across the box borders relative to the image's typical
    /// gradient energy (about 1 for an invisible seam; higher is worse).
    pub seam: f64,
    /// Whether the fill was the eight-fold flip-and-turn ensemble (`inpaint apply --ensemble`;
    /// absent: a plain fill).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ensemble: bool,
    /// The ring width, px, of a fill made from the rim inwards (`inpaint apply --peel`; absent:
    /// in one pass).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub peel: u32,
    /// How boxes were copied from repeats of their surroundings (`inpaint apply --exemplar`;
    /// absent: the network filled them all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exemplar: Option<CopyRepeats>,
    /// How many boxes (parts of the box mask) were copied so (absent: none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub copied: usize,
    /// Of those, how many from another defect-free image of the group (absent: none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub referenced: usize,
}

fn is_zero<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// Where a synthetic image came from: enough to reproduce it bit for bit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// The defect-free source image (a project id, or a path for images from outside).
    pub source: String,
    /// How the mask was made (`painted`, `random`, `stamp:<image id>`, or a file path).
    pub mask_source: String,
    /// SHA-256 of the generator checkpoint file, hex.
    pub checkpoint: String,
    /// The seed of this image's random draws.
    pub seed: u64,
}

impl ImageEntry {
    /// A new entry with no masks, twin or regions.
    pub fn new(id: impl Into<String>, path: RelPath, role: Role, group: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            path,
            role,
            class: None,
            group: group.into(),
            width: 0,
            height: 0,
            mask: None,
            box_mask: None,
            twin: None,
            twin_of: None,
            twin_status: None,
            regions: Vec::new(),
            synthetic: None,
            inpaint: None,
        }
    }

    /// Every defect class this image shows (its own class and its regions' classes), sorted.
    pub fn classes(&self) -> BTreeSet<&str> {
        let mut set: BTreeSet<&str> = self.regions.iter().map(|r| r.class.as_str()).collect();
        if let Some(c) = &self.class {
            set.insert(c);
        }
        set
    }

    /// Whether this defect-free twin may train the DTGAN: real templates carry no review status
    /// and always may; twins made by inpainting may once accepted in seam QA.
    pub fn twin_trains(&self) -> bool {
        self.is_real_template() || self.twin_status == Some(TwinStatus::Accepted)
    }

    /// Whether this is a photographed image rather than a defect-free twin the studio made
    /// (inpainted twins carry their inpainting record, and every made twin a review status).
    /// The one rule for "real": DTGAN pairs, inpainting data, good patches and generation
    /// canvases all use it.
    pub fn is_real_template(&self) -> bool {
        self.twin_status.is_none() && self.inpaint.is_none()
    }

    /// The short name shown to people: the last part of the id (file names repeat across
    /// folders, ids do not).
    pub fn display_name(&self) -> &str {
        self.id.rsplit('/').next().unwrap_or(&self.id)
    }
}

/// The whole manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version ([`FORMAT_VERSION`]).
    pub format: u32,
    /// Project name shown in the title bar.
    pub name: String,
    /// Margin, in pixels, that derived box masks add around each defect.
    #[serde(default = "default_box_margin")]
    pub box_margin: u32,
    /// Every image of the project.
    #[serde(default)]
    pub images: Vec<ImageEntry>,
}

fn default_box_margin() -> u32 {
    DEFAULT_BOX_MARGIN
}

/// A manifest that parses but contradicts itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Written by a newer studio.
    #[error("manifest format {found} is newer than this studio understands ({FORMAT_VERSION})")]
    UnsupportedFormat {
        /// The version found in the file.
        found: u32,
    },
    /// Two images share an id.
    #[error("image id `{0}` appears more than once")]
    DuplicateId(String),
    /// A twin link names no image.
    #[error("image `{image}` names twin `{twin}`, which is not in the project")]
    DanglingTwin {
        /// The image holding the link.
        image: String,
        /// The missing id.
        twin: String,
    },
    /// A region lies (partly) outside its image.
    #[error("image `{image}` has a region {bbox:?} outside its {width}x{height} pixels")]
    RegionOutside {
        /// The image holding the region.
        image: String,
        /// The region's box.
        bbox: Rect,
        /// Image width.
        width: u32,
        /// Image height.
        height: u32,
    },
}

impl Manifest {
    /// An empty manifest.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            format: FORMAT_VERSION,
            name: name.into(),
            box_margin: DEFAULT_BOX_MARGIN,
            images: Vec::new(),
        }
    }

    /// Checks the cross-references that serde cannot.
    pub fn validate(&self) -> Result<(), ManifestError> {
        if self.format > FORMAT_VERSION {
            return Err(ManifestError::UnsupportedFormat { found: self.format });
        }
        let mut ids = HashMap::with_capacity(self.images.len());
        for (i, e) in self.images.iter().enumerate() {
            if ids.insert(e.id.as_str(), i).is_some() {
                return Err(ManifestError::DuplicateId(e.id.clone()));
            }
        }
        for e in &self.images {
            for link in [&e.twin, &e.twin_of].into_iter().flatten() {
                if !ids.contains_key(link.as_str()) {
                    return Err(ManifestError::DanglingTwin {
                        image: e.id.clone(),
                        twin: link.clone(),
                    });
                }
            }
            for r in &e.regions {
                if e.width > 0 && (r.bbox.right() > e.width || r.bbox.bottom() > e.height) {
                    return Err(ManifestError::RegionOutside {
                        image: e.id.clone(),
                        bbox: r.bbox,
                        width: e.width,
                        height: e.height,
                    });
                }
            }
        }
        Ok(())
    }

    /// Index of the image with this id.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.images.iter().position(|e| e.id == id)
    }

    /// The image with this id.
    pub fn image(&self, id: &str) -> Option<&ImageEntry> {
        self.images.iter().find(|e| e.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn how_a_twin_was_filled_is_recorded_and_old_twins_read_as_plain() {
        let info = InpaintInfo {
            checkpoint: "ab".into(),
            seam: 1.5,
            ensemble: true,
            peel: 8,
            exemplar: Some(CopyRepeats {
                max_mismatch: 0.05,
                turns: crate::imaging::exemplar::Turns::All,
                references: false,
            }),
            copied: 3,
            referenced: 0,
        };
        let text = serde_json::to_string(&info).expect("json");
        assert!(text.contains("\"ensemble\":true"), "{text}");
        assert!(text.contains("\"peel\":8"), "{text}");
        assert!(
            text.contains("\"exemplar\":{\"max_mismatch\":0.05,\"turns\":\"all\"}"),
            "{text}"
        );
        assert!(text.contains("\"copied\":3"), "{text}");
        assert!(!text.contains("referenced"), "{text}");
        assert_eq!(
            serde_json::from_str::<InpaintInfo>(&text).expect("read"),
            info
        );
        // Copies from other images of the group are recorded when asked for.
        let from_others = InpaintInfo {
            exemplar: info.exemplar.map(|x| CopyRepeats {
                references: true,
                ..x
            }),
            referenced: 2,
            ..info.clone()
        };
        let text = serde_json::to_string(&from_others).expect("json");
        assert!(text.contains("\"references\":true"), "{text}");
        assert!(text.contains("\"referenced\":2"), "{text}");
        assert_eq!(
            serde_json::from_str::<InpaintInfo>(&text).expect("read"),
            from_others
        );
        let old: InpaintInfo =
            serde_json::from_str(r#"{"checkpoint":"ab","seam":1.5}"#).expect("old twin");
        assert!(!old.ensemble);
        assert_eq!(
            (old.peel, old.exemplar, old.copied, old.referenced),
            (0, None, 0, 0)
        );
        let plain = serde_json::to_string(&old).expect("json");
        for absent in ["ensemble", "peel", "exemplar", "copied", "referenced"] {
            assert!(!plain.contains(absent), "{plain}");
        }
    }

    #[test]
    fn only_real_templates_and_accepted_inpaintings_train() {
        let path = RelPath::new("t.png").expect("path");
        let real = ImageEntry::new("t", path, Role::Template, "g");
        assert!(real.is_real_template() && real.twin_trains());
        let mut made = real.clone();
        made.inpaint = Some(InpaintInfo {
            checkpoint: "00".into(),
            seam: 1.0,
            ..Default::default()
        });
        assert!(!made.is_real_template());
        assert!(!made.twin_trains(), "not reviewed yet");
        for (status, trains) in [
            (TwinStatus::PendingReview, false),
            (TwinStatus::Accepted, true),
            (TwinStatus::Rejected, false),
        ] {
            made.twin_status = Some(status);
            assert_eq!(made.twin_trains(), trains, "{status:?}");
            assert!(!made.is_real_template());
        }
        // A box filled by blending (the evaluation's twins) has a status but no inpainting
        // record: it trains, and it is not real.
        let mut blended = real.clone();
        blended.twin_status = Some(TwinStatus::Accepted);
        assert!(blended.twin_trains() && !blended.is_real_template());
    }

    #[test]
    fn rel_paths_refuse_escapes_and_absolutes() {
        assert!(RelPath::new("images/a.png").is_ok());
        assert!(matches!(
            RelPath::new("/etc/passwd"),
            Err(RelPathError::Absolute(_))
        ));
        assert!(matches!(
            RelPath::new("C:/x.png"),
            Err(RelPathError::Absolute(_))
        ));
        assert!(matches!(
            RelPath::new("../x.png"),
            Err(RelPathError::Escapes(_))
        ));
        assert!(matches!(
            RelPath::new("a/../../x.png"),
            Err(RelPathError::Escapes(_))
        ));
        assert!(matches!(
            RelPath::new("a//x.png"),
            Err(RelPathError::Escapes(_))
        ));
        assert!(matches!(
            RelPath::new("a\\x.png"),
            Err(RelPathError::BadCharacter(_))
        ));
        assert_eq!(RelPath::new("a/b.c.png").expect("valid").stem(), "b.c");
    }

    #[test]
    fn manifest_round_trips_and_refuses_dotdot_on_load() {
        let mut m = Manifest::new("t");
        let mut e = ImageEntry::new(
            "a",
            RelPath::new("images/a.png").expect("p"),
            Role::Defect,
            "g",
        );
        e.regions.push(Region {
            class: "spot".into(),
            bbox: Rect::new(1, 2, 3, 4),
        });
        m.images.push(e);
        let text = serde_json::to_string(&m).expect("serialise");
        let back: Manifest = serde_json::from_str(&text).expect("parse");
        assert_eq!(back, m);
        let bad = text.replace("images/a.png", "../a.png");
        let err = serde_json::from_str::<Manifest>(&bad).expect_err("must refuse");
        assert!(err.to_string().contains("`..`"), "{err}");
    }

    #[test]
    fn validate_finds_duplicates_and_dangling_twins() {
        let mut m = Manifest::new("t");
        let p = RelPath::new("a.png").expect("p");
        m.images
            .push(ImageEntry::new("a", p.clone(), Role::Defect, "g"));
        m.images
            .push(ImageEntry::new("a", p.clone(), Role::Good, "g"));
        assert_eq!(m.validate(), Err(ManifestError::DuplicateId("a".into())));
        m.images[1].id = "b".into();
        m.images[0].twin = Some("zz".into());
        assert!(matches!(
            m.validate(),
            Err(ManifestError::DanglingTwin { .. })
        ));
    }
}
