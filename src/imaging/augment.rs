//! Augmentation for the trainers (see issue: foundation).
