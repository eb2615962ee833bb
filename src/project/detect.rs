//! Recognising an import layout from a folder's contents (drag and drop, `--layout auto`).

use std::path::{Path, PathBuf};

use super::import::Layout;

/// A recognised layout and, where the data ships them, its pixel masks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Detected {
    /// The layout.
    pub layout: Layout,
    /// A folder of pixel masks by stem (DeepPCB's `derived_masks/binary`).
    pub masks: Option<PathBuf>,
}

/// The layout of `dir`: `pairs/` + `boxes/` is DeepPCB; `good/` or `defect/` is the folder layout.
pub fn detect_layout(dir: &Path) -> Option<Detected> {
    if dir.join("pairs").is_dir() && dir.join("boxes").is_dir() {
        let masks = dir.join("derived_masks").join("binary");
        return Some(Detected {
            layout: Layout::Deeppcb,
            masks: masks.is_dir().then_some(masks),
        });
    }
    if dir.join("good").is_dir() || dir.join("defect").is_dir() {
        return Some(Detected {
            layout: Layout::Folders,
            masks: None,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_both_layouts_and_nothing_else() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        assert_eq!(detect_layout(root), None);
        std::fs::create_dir_all(root.join("a/good")).expect("mkdir");
        assert_eq!(
            detect_layout(&root.join("a")).map(|d| d.layout),
            Some(Layout::Folders)
        );
        for sub in ["b/pairs", "b/boxes", "b/derived_masks/binary"] {
            std::fs::create_dir_all(root.join(sub)).expect("mkdir");
        }
        let found = detect_layout(&root.join("b")).expect("deeppcb");
        assert_eq!(found.layout, Layout::Deeppcb);
        assert_eq!(found.masks, Some(root.join("b/derived_masks/binary")));
    }
}
