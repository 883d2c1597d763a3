//! core-data's pure parts, tested on the host: HTTP/1.1 requests ([`http`]), the bounded
//! event store ([`store`]), EdgeX's v3 REST API over it ([`api`]) and what it keeps in the
//! vault ([`persist`]).

#![no_std]
#![warn(missing_docs)]

extern crate alloc;

pub mod api;
pub mod http;
pub mod persist;
pub mod store;
