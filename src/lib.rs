//! DTGAN Studio: turn a handful of real defect images into thousands of realistic synthetic ones.
//!
//! Data flows one way, and the modules follow it: [`project`] (images, masks, manifest, import)
//! -> [`imaging`] (I/O, box masks, augmentation) -> the models of later stages, built from the
//! blocks in [`nn`]. [`demo`] makes a complete project from nothing; [`worker`] runs long jobs off
//! the UI thread and talks to [`ui`] through the [`protocol`] channels.

pub mod cli;
pub mod demo;
pub mod dtgan;
pub mod eval;
pub mod fsutil;
pub mod imaging;
pub mod inpaint;
pub mod nn;
pub mod project;
pub mod protocol;
pub mod settings;
pub mod ui;
pub mod worker;

/// An error and its causes on one line, each cause once: thiserror messages that already show
/// their source (`"{path}: {source}"`) would otherwise repeat it in anyhow's `{:#}` form.
pub fn describe(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    line
}
