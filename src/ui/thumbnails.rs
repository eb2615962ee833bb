//! Thumbnails decoded off the UI thread and cached as textures.
//!
//! The browser asks each frame for the thumbnails it shows. Missing ones are queued for a small
//! pool of loader threads; the queue is replaced every frame with what is visible now, so a fast
//! scroll never leaves a backlog of images nobody looks at any more. Decoded thumbnails come back
//! on a channel and become textures in [`ThumbnailCache::poll`], under a per-frame time budget.
//! The cache keeps at most `capacity` textures and evicts the least recently shown.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, unbounded};

/// Side of a thumbnail, in pixels.
pub const THUMB_SIDE: u32 = 128;

/// A decoded thumbnail, or why there is none.
type Decoded = Result<egui::ColorImage, String>;

#[derive(Default)]
struct Queue {
    jobs: VecDeque<(String, PathBuf)>,
    closed: bool,
}

/// State of one thumbnail as the browser sees it.
pub enum Thumb<'a> {
    /// Ready to draw.
    Ready(&'a egui::TextureHandle),
    /// Being decoded.
    Loading,
    /// The file could not be decoded: the message names the file.
    Failed(&'a str),
}

/// Textures of thumbnails by image id.
pub struct ThumbnailCache {
    queue: Arc<(Mutex<Queue>, Condvar)>,
    results: Receiver<(String, Decoded)>,
    textures: HashMap<String, (egui::TextureHandle, u64)>,
    failed: HashMap<String, String>,
    in_flight: HashSet<String>,
    wanted: Vec<(String, PathBuf)>,
    capacity: usize,
    frame: u64,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl ThumbnailCache {
    /// A cache of at most `capacity` textures decoded by `threads` loader threads.
    pub fn new(threads: usize, capacity: usize) -> Self {
        let queue = Arc::new((Mutex::new(Queue::default()), Condvar::new()));
        let (tx, rx) = unbounded();
        let threads = (0..threads.max(1))
            .filter_map(|i| {
                let queue = Arc::clone(&queue);
                let tx = tx.clone();
                std::thread::Builder::new()
                    .name(format!("thumbnails-{i}"))
                    .spawn(move || loader(&queue, &tx))
                    .ok()
            })
            .collect();
        Self {
            queue,
            results: rx,
            textures: HashMap::new(),
            failed: HashMap::new(),
            in_flight: HashSet::new(),
            wanted: Vec::new(),
            capacity: capacity.max(16),
            frame: 0,
            threads,
        }
    }

    /// Forgets everything (a new project was opened).
    pub fn clear(&mut self) {
        self.textures.clear();
        self.failed.clear();
        self.in_flight.clear();
        self.wanted.clear();
    }

    /// Number of textures held.
    pub fn len(&self) -> usize {
        self.textures.len()
    }

    /// True when no texture is held.
    pub fn is_empty(&self) -> bool {
        self.textures.is_empty()
    }

    /// The thumbnail of `id` (file `path`), queuing it if needed.
    pub fn get(&mut self, id: &str, path: &std::path::Path) -> Thumb<'_> {
        if let Some((_, used)) = self.textures.get_mut(id) {
            *used = self.frame;
            return match self.textures.get(id) {
                Some((tex, _)) => Thumb::Ready(tex),
                None => Thumb::Loading,
            };
        }
        if let Some(msg) = self.failed.get(id) {
            return Thumb::Failed(msg);
        }
        self.wanted.push((id.to_owned(), path.to_path_buf()));
        Thumb::Loading
    }

    /// Turns decoded thumbnails into textures (within `budget`), hands this frame's requests to
    /// the loaders and evicts old textures. Call once per frame, after the browser has drawn.
    pub fn poll(&mut self, ctx: &egui::Context, budget: Duration) {
        let start = Instant::now();
        while start.elapsed() < budget {
            let Ok((id, decoded)) = self.results.try_recv() else {
                break;
            };
            self.in_flight.remove(&id);
            match decoded {
                Ok(image) => {
                    let tex = ctx.load_texture(
                        format!("thumb:{id}"),
                        image,
                        egui::TextureOptions::LINEAR,
                    );
                    self.textures.insert(id, (tex, self.frame));
                }
                Err(msg) => {
                    self.failed.insert(id, msg);
                }
            }
        }
        {
            let (lock, cvar) = &*self.queue;
            let mut q = lock.lock().unwrap_or_else(PoisonError::into_inner);
            // What no loader picked up last frame is replaced by what is visible now.
            for (id, _) in q.jobs.drain(..) {
                self.in_flight.remove(&id);
            }
            for (id, path) in self.wanted.drain(..) {
                if self.in_flight.insert(id.clone()) {
                    q.jobs.push_back((id, path));
                }
            }
            cvar.notify_all();
        }
        self.evict();
        self.frame += 1;
        if !self.in_flight.is_empty() {
            ctx.request_repaint_after(Duration::from_millis(16));
        }
    }

    fn evict(&mut self) {
        if self.textures.len() <= self.capacity {
            return;
        }
        let mut by_age: Vec<(u64, String)> = self
            .textures
            .iter()
            .map(|(id, (_, used))| (*used, id.clone()))
            .collect();
        by_age.sort_unstable();
        let excess = self.textures.len() - self.capacity;
        for (_, id) in by_age.into_iter().take(excess) {
            self.textures.remove(&id);
        }
    }
}

impl Drop for ThumbnailCache {
    fn drop(&mut self) {
        let (lock, cvar) = &*self.queue;
        lock.lock().unwrap_or_else(PoisonError::into_inner).closed = true;
        cvar.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn loader(queue: &(Mutex<Queue>, Condvar), tx: &Sender<(String, Decoded)>) {
    let (lock, cvar) = queue;
    loop {
        let job = {
            let mut q = lock.lock().unwrap_or_else(PoisonError::into_inner);
            loop {
                if q.closed {
                    return;
                }
                if let Some(job) = q.jobs.pop_front() {
                    break job;
                }
                q = cvar.wait(q).unwrap_or_else(PoisonError::into_inner);
            }
        };
        let (id, path) = job;
        if tx.send((id, decode_thumbnail(&path))).is_err() {
            return;
        }
    }
}

/// Decodes `path` and shrinks it to fit a [`THUMB_SIDE`] square.
pub fn decode_thumbnail(path: &std::path::Path) -> Decoded {
    let image = crate::imaging::io::load_dynamic(path).map_err(|e| e.to_string())?;
    let thumb = image.thumbnail(THUMB_SIDE, THUMB_SIDE).to_rgba8();
    let size = [thumb.width() as usize, thumb.height() as usize];
    Ok(egui::ColorImage::from_rgba_unmultiplied(
        size,
        thumb.as_raw(),
    ))
}
