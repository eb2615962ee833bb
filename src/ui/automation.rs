//! Unattended runs of the real window: a screenshot for the smoke test and the README, and the
//! browser scrolling benchmark. Driven by environment variables so the normal CLI stays simple:
//!
//! - `DTGAN_STUDIO_SCREENSHOT=out.png`: once the project is open and thumbnails are showing, save
//!   a screenshot of the window to `out.png` and close.
//! - `DTGAN_STUDIO_BENCH_SCROLL=SECONDS`: scroll the browser continuously for SECONDS after the
//!   first thumbnails appear, then print one JSON line of timings to stdout and close.
//!   `DTGAN_STUDIO_BENCH_SPEED=POINTS` sets the scroll per frame (default 40; 0 measures a
//!   window that repaints without scrolling, i.e. the cost of drawing alone).
//!   `DTGAN_STUDIO_BENCH_TRAIN=CLASS` also starts training CLASS (the `cpu` preset, into
//!   `runs/bench-train` of the project) when scrolling starts, to measure the UI while training
//!   saturates the CPU.
//! - `DTGAN_STUDIO_OPEN_RUN=RUN`: show this training run's curves and samples in the training
//!   tab at start (for screenshots of a run).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The variable that opens a training run at start.
pub const OPEN_RUN_ENV: &str = "DTGAN_STUDIO_OPEN_RUN";

/// Longest wait for the project and its thumbnails before acting anyway.
const MAX_WAIT: Duration = Duration::from_secs(90);

/// Where the screenshot callback leaves its outcome for the UI thread.
type ScreenshotSlot = Arc<Mutex<Option<Result<(), String>>>>;

/// What the unattended run should do.
#[derive(Debug)]
pub enum Automation {
    /// Save a screenshot and close.
    Screenshot {
        /// Where to write the PNG.
        out: PathBuf,
        /// Frames drawn since thumbnails appeared (a few, so the window settles).
        settled_frames: u32,
        /// Set once the screenshot was asked for.
        result: Option<ScreenshotSlot>,
    },
    /// Scroll the browser and measure.
    BenchScroll(ScrollBench),
}

/// Measurements of the scrolling benchmark.
#[derive(Debug)]
pub struct ScrollBench {
    duration: Duration,
    scroll_started: Option<Instant>,
    first_thumbnail: Option<Duration>,
    frame_cpu_ms: Vec<f64>,
    frame_interval_ms: Vec<f64>,
    last_frame: Option<Instant>,
    reported: bool,
    speed: f32,
    train_class: Option<String>,
}

/// What the app should do after a frame.
pub enum Step {
    /// Keep going.
    Continue,
    /// Close the window.
    Close,
}

impl Automation {
    /// Reads the environment; `None` for a normal interactive run.
    pub fn from_env() -> Option<Self> {
        if let Some(out) = std::env::var_os("DTGAN_STUDIO_SCREENSHOT") {
            return Some(Self::Screenshot {
                out: out.into(),
                settled_frames: 0,
                result: None,
            });
        }
        let secs: f64 = std::env::var("DTGAN_STUDIO_BENCH_SCROLL")
            .ok()?
            .parse()
            .ok()?;
        Some(Self::BenchScroll(ScrollBench {
            duration: Duration::from_secs_f64(secs),
            scroll_started: None,
            first_thumbnail: None,
            frame_cpu_ms: Vec::new(),
            frame_interval_ms: Vec::new(),
            last_frame: None,
            reported: false,
            speed: std::env::var("DTGAN_STUDIO_BENCH_SPEED")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(40.0),
            train_class: std::env::var("DTGAN_STUDIO_BENCH_TRAIN").ok(),
        }))
    }

    /// The class to start training, once, when the scrolling benchmark starts.
    pub fn take_training_class(&mut self) -> Option<String> {
        match self {
            Automation::BenchScroll(b) if b.scroll_started.is_some() => b.train_class.take(),
            _ => None,
        }
    }

    /// Pixels the browser should scroll this frame (benchmark only).
    pub fn scroll_speed(&self) -> Option<f32> {
        match self {
            Automation::BenchScroll(b) if b.scroll_started.is_some() => Some(b.speed),
            _ => None,
        }
    }

    /// Called at the end of each frame. `ready` is true once the project is open and at least one
    /// thumbnail is drawn; `app_start` is when the app was created; `cpu` is this frame's time.
    pub fn after_frame(
        &mut self,
        ctx: &egui::Context,
        ready: bool,
        app_start: Instant,
        cpu: Duration,
    ) -> Step {
        let waited_too_long = app_start.elapsed() > MAX_WAIT;
        ctx.request_repaint();
        match self {
            Automation::Screenshot {
                out,
                settled_frames,
                result,
            } => {
                if let Some(result) = result {
                    let done = result.lock().unwrap_or_else(PoisonError::into_inner).take();
                    return match done {
                        Some(Ok(())) => Step::Close,
                        Some(Err(e)) => {
                            eprintln!("error: screenshot: {e}");
                            Step::Close
                        }
                        None => Step::Continue,
                    };
                }
                if ready || waited_too_long {
                    *settled_frames += 1;
                }
                if *settled_frames >= 10 {
                    let slot = Arc::new(Mutex::new(None));
                    let sink = Arc::clone(&slot);
                    let out = out.clone();
                    ctx.request_screenshot(move |image| {
                        let saved = save_color_image(&out, &image);
                        *sink.lock().unwrap_or_else(PoisonError::into_inner) = Some(saved);
                    });
                    *result = Some(slot);
                }
                Step::Continue
            }
            Automation::BenchScroll(b) => b.after_frame(ready || waited_too_long, app_start, cpu),
        }
    }
}

impl ScrollBench {
    fn after_frame(&mut self, ready: bool, app_start: Instant, cpu: Duration) -> Step {
        if self.reported {
            return Step::Close;
        }
        let now = Instant::now();
        if ready && self.first_thumbnail.is_none() {
            self.first_thumbnail = Some(app_start.elapsed());
            self.scroll_started = Some(now);
        }
        if let Some(started) = self.scroll_started {
            self.frame_cpu_ms.push(cpu.as_secs_f64() * 1e3);
            if let Some(last) = self.last_frame {
                self.frame_interval_ms
                    .push((now - last).as_secs_f64() * 1e3);
            }
            self.last_frame = Some(now);
            if started.elapsed() >= self.duration {
                println!("{}", self.report());
                self.reported = true;
                return Step::Close;
            }
        }
        Step::Continue
    }

    fn report(&self) -> String {
        serde_json::json!({
            "first_thumbnail_seconds": self.first_thumbnail.map(|d| d.as_secs_f64()),
            "frames": self.frame_cpu_ms.len(),
            "ui_cpu_ms_p50": percentile(&self.frame_cpu_ms, 0.50),
            "ui_cpu_ms_p99": percentile(&self.frame_cpu_ms, 0.99),
            "frame_interval_ms_p50": percentile(&self.frame_interval_ms, 0.50),
            "frame_interval_ms_p99": percentile(&self.frame_interval_ms, 0.99),
        })
        .to_string()
    }
}

/// The `q` quantile (0..=1) of `values`, nearest rank; `None` when empty.
pub fn percentile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

fn save_color_image(out: &std::path::Path, image: &egui::ColorImage) -> Result<(), String> {
    let [w, h] = image.size;
    let bytes: Vec<u8> = image.pixels.iter().flat_map(|c| c.to_array()).collect();
    let rgba = image::RgbaImage::from_raw(w as u32, h as u32, bytes)
        .ok_or_else(|| "screenshot has an inconsistent size".to_owned())?;
    crate::imaging::io::save_png(out, &image::DynamicImage::ImageRgba8(rgba))
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.99), Some(99.0));
        assert_eq!(percentile(&v, 0.5), Some(50.0));
        assert_eq!(percentile(&[3.0], 0.99), Some(3.0));
        assert_eq!(percentile(&[], 0.5), None);
    }
}
