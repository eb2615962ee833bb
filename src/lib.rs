//! DTGAN Studio: turn a handful of real defect images into thousands of realistic synthetic ones.
//!
//! Data flows one way, and the modules follow it: [`project`] (images, masks, manifest, import)
//! -> [`imaging`] (I/O, box masks, augmentation) -> the models of later stages, built from the
//! blocks in [`nn`]. [`demo`] makes a complete project from nothing; [`worker`] runs long jobs off
//! the UI thread and talks to [`ui`] through the [`protocol`] channels.

pub mod cli;
pub mod demo;
pub mod dtgan;
pub mod fsutil;
pub mod imaging;
pub mod nn;
pub mod project;
pub mod protocol;
pub mod settings;
pub mod ui;
pub mod worker;
