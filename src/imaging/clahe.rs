//! Contrast-limited adaptive histogram equalisation (CLAHE).
