//! Boot tests of the Xen platform live in `tests/`; this library is empty.
