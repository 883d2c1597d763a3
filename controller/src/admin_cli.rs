//! The admin CLI.
