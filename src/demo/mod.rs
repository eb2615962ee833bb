//! The demo project made by the studio itself.
