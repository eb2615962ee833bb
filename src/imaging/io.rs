//! Reading images and masks of any common format and depth, and writing masks.
//!
//! Images may be PNG, JPEG, BMP or TIFF, 8 or 16 bits, gray, RGB or RGBA; they are converted to
//! 8-bit gray or RGB on load. Masks are binarised at 128 (>= 128 is defect) and stored as 8-bit PNG
//! holding only 0 and 255. Every error names the file.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{DynamicImage, GrayImage, ImageReader, Limits, RgbImage};

use crate::fsutil::write_atomic;

/// Largest width or height accepted, in pixels (a 16k line-scan tile fits).
pub const MAX_SIDE: u32 = 20_000;
/// Largest decoded size accepted, in bytes.
pub const MAX_DECODED_BYTES: u64 = 2 << 30;
/// Mask values at or above this are defect pixels.
pub const MASK_THRESHOLD: u8 = 128;

/// An image or mask that could not be read or written. Each variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ImagingError {
    /// The file could not be opened or read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The path is a folder.
    #[error("{0}: is a folder, not an image file")]
    IsFolder(PathBuf),
    /// The file is empty.
    #[error("{0}: the file is empty")]
    Empty(PathBuf),
    /// The bytes are not an image this studio can decode (truncated, wrong format, ...).
    #[error("{path}: not a readable image: {message}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// What the decoder said.
        message: String,
    },
    /// The header claims a size above the limits.
    #[error("{path}: image claims {width}x{height} pixels, above the {MAX_SIDE} px per side limit")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Claimed width.
        width: u32,
        /// Claimed height.
        height: u32,
    },
    /// A mask's size differs from its image's.
    #[error("mask {mask} is {mask_w}x{mask_h} but its image {image} is {image_w}x{image_h}")]
    SizeMismatch {
        /// The mask file.
        mask: PathBuf,
        /// The image file.
        image: PathBuf,
        /// Mask width.
        mask_w: u32,
        /// Mask height.
        mask_h: u32,
        /// Image width.
        image_w: u32,
        /// Image height.
        image_h: u32,
    },
    /// A file could not be written.
    #[error("{path}: cannot write: {message}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

fn reader(path: &Path) -> Result<ImageReader<std::io::BufReader<std::fs::File>>, ImagingError> {
    let meta = std::fs::metadata(path).map_err(|source| ImagingError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if meta.is_dir() {
        return Err(ImagingError::IsFolder(path.to_path_buf()));
    }
    if meta.len() == 0 {
        return Err(ImagingError::Empty(path.to_path_buf()));
    }
    let mut r = ImageReader::open(path)
        .map_err(|source| ImagingError::Read {
            path: path.to_path_buf(),
            source,
        })?
        .with_guessed_format()
        .map_err(|source| ImagingError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODED_BYTES);
    r.limits(limits);
    Ok(r)
}

fn decode_error(path: &Path, e: image::ImageError) -> ImagingError {
    match e {
        image::ImageError::IoError(source) => ImagingError::Read {
            path: path.to_path_buf(),
            source,
        },
        other => ImagingError::Decode {
            path: path.to_path_buf(),
            message: other.to_string(),
        },
    }
}

/// Width and height from the file's header, without decoding the pixels.
pub fn read_dimensions(path: &Path) -> Result<(u32, u32), ImagingError> {
    let mut r = reader(path)?;
    // Only the header is read here; lifting the limits lets `check_size` report the claimed size.
    r.no_limits();
    let (width, height) = r.into_dimensions().map_err(|e| decode_error(path, e))?;
    check_size(path, width, height)?;
    Ok((width, height))
}

fn check_size(path: &Path, width: u32, height: u32) -> Result<(), ImagingError> {
    if width > MAX_SIDE || height > MAX_SIDE {
        return Err(ImagingError::TooLarge {
            path: path.to_path_buf(),
            width,
            height,
        });
    }
    if width == 0 || height == 0 {
        return Err(ImagingError::Decode {
            path: path.to_path_buf(),
            message: format!("image has no pixels ({width}x{height})"),
        });
    }
    Ok(())
}

/// Decodes any supported image as it is stored.
pub fn load_dynamic(path: &Path) -> Result<DynamicImage, ImagingError> {
    let (w, h) = read_dimensions(path)?;
    check_size(path, w, h)?;
    let r = reader(path)?;
    if r.format() == Some(image::ImageFormat::Jpeg) {
        check_jpeg_end(path)?;
    }
    r.decode().map_err(|e| decode_error(path, e))
}

/// Refuses a JPEG without an end-of-image marker near its end: the JPEG decoder fills the
/// missing rows of a truncated file with gray instead of failing.
fn check_jpeg_end(path: &Path) -> Result<(), ImagingError> {
    use std::io::{Read, Seek, SeekFrom};
    const TAIL: u64 = 64 * 1024;
    let read_err = |source| ImagingError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(read_err)?;
    let len = f.metadata().map_err(read_err)?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(TAIL)))
        .map_err(read_err)?;
    let mut tail = Vec::new();
    f.read_to_end(&mut tail).map_err(read_err)?;
    if tail.windows(2).any(|w| w == [0xFF, 0xD9]) {
        Ok(())
    } else {
        Err(ImagingError::Decode {
            path: path.to_path_buf(),
            message: "truncated JPEG (no end-of-image marker)".to_owned(),
        })
    }
}

/// Decodes an image as 8-bit RGB (gray is replicated, alpha dropped, 16 bits scaled).
pub fn load_rgb8(path: &Path) -> Result<RgbImage, ImagingError> {
    Ok(load_dynamic(path)?.to_rgb8())
}

/// Decodes an image as 8-bit gray (colour is converted by luminance, 16 bits scaled).
pub fn load_gray8(path: &Path) -> Result<GrayImage, ImagingError> {
    Ok(load_dynamic(path)?.to_luma8())
}

/// Sets every pixel to 255 where it is at least [`MASK_THRESHOLD`], else 0.
pub fn binarize(mut mask: GrayImage) -> GrayImage {
    for p in mask.pixels_mut() {
        p.0[0] = if p.0[0] >= MASK_THRESHOLD { 255 } else { 0 };
    }
    mask
}

/// Reads a mask of any format and depth and binarises it.
pub fn load_mask(path: &Path) -> Result<GrayImage, ImagingError> {
    Ok(binarize(load_gray8(path)?))
}

/// Reads a mask and checks that it has the size of `image` (`image_size` = its width, height).
pub fn load_mask_for(
    path: &Path,
    image: &Path,
    image_size: (u32, u32),
) -> Result<GrayImage, ImagingError> {
    let (w, h) = read_dimensions(path)?;
    if (w, h) != image_size {
        return Err(ImagingError::SizeMismatch {
            mask: path.to_path_buf(),
            image: image.to_path_buf(),
            mask_w: w,
            mask_h: h,
            image_w: image_size.0,
            image_h: image_size.1,
        });
    }
    load_mask(path)
}

/// Encodes `image` as PNG bytes.
pub fn encode_png(image: &DynamicImage) -> Result<Vec<u8>, image::ImageError> {
    let mut bytes = Vec::new();
    image.write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png)?;
    Ok(bytes)
}

/// Writes a PNG atomically.
pub fn save_png(path: &Path, image: &DynamicImage) -> Result<(), ImagingError> {
    let write_err = |message: String| ImagingError::Write {
        path: path.to_path_buf(),
        message,
    };
    let bytes = encode_png(image).map_err(|e| write_err(e.to_string()))?;
    write_atomic(path, &bytes).map_err(|e| write_err(e.to_string()))
}

/// Writes a mask atomically as an 8-bit PNG of 0/255 (binarising on the way).
pub fn save_mask(path: &Path, mask: &GrayImage) -> Result<(), ImagingError> {
    save_png(path, &DynamicImage::ImageLuma8(binarize(mask.clone())))
}

/// True when every pixel of the mask is 0.
pub fn mask_is_empty(mask: &GrayImage) -> bool {
    mask.as_raw().iter().all(|&v| v < MASK_THRESHOLD)
}

/// Number of defect pixels.
pub fn mask_area(mask: &GrayImage) -> u64 {
    mask.as_raw()
        .iter()
        .filter(|&&v| v >= MASK_THRESHOLD)
        .count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageBuffer, Luma, Rgba};

    #[test]
    fn sixteen_bit_and_rgba_load_as_8_bit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p16 = dir.path().join("g16.png");
        let img16: ImageBuffer<Luma<u16>, Vec<u16>> =
            ImageBuffer::from_fn(4, 3, |x, _| Luma([x as u16 * 20000]));
        img16.save(&p16).expect("save");
        let g = load_gray8(&p16).expect("load");
        assert_eq!(g.dimensions(), (4, 3));
        assert_eq!(g.get_pixel(0, 0).0[0], 0);
        assert!(g.get_pixel(3, 0).0[0] > 200);
        let prgba = dir.path().join("c.png");
        let rgba: ImageBuffer<Rgba<u8>, Vec<u8>> =
            ImageBuffer::from_pixel(2, 2, Rgba([10, 20, 30, 0]));
        rgba.save(&prgba).expect("save");
        assert_eq!(
            load_rgb8(&prgba).expect("load").get_pixel(1, 1).0,
            [10, 20, 30]
        );
    }

    #[test]
    fn masks_are_binarised_at_128_and_saved_as_0_255() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("m.png");
        let m = GrayImage::from_fn(3, 1, |x, _| Luma([[127, 128, 200][x as usize]]));
        save_mask(&p, &m).expect("save");
        let back = load_mask(&p).expect("load");
        assert_eq!(back.as_raw(), &vec![0, 255, 255]);
        assert_eq!(mask_area(&back), 2);
    }

    #[test]
    fn size_mismatch_names_both_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("mask.png");
        save_mask(&p, &GrayImage::new(4, 4)).expect("save");
        let err = load_mask_for(&p, Path::new("img.jpg"), (5, 4)).expect_err("mismatch");
        let text = err.to_string();
        assert!(
            text.contains("mask.png") && text.contains("img.jpg"),
            "{text}"
        );
    }

    #[test]
    fn empty_and_folder_paths_give_clear_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = dir.path().join("e.png");
        std::fs::write(&empty, b"").expect("write");
        assert!(matches!(load_rgb8(&empty), Err(ImagingError::Empty(_))));
        let folder = dir.path().join("x.png");
        std::fs::create_dir(&folder).expect("mkdir");
        assert!(matches!(load_rgb8(&folder), Err(ImagingError::IsFolder(_))));
    }
}
