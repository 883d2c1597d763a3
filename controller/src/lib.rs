//! The lichen controller.
