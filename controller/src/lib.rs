//! The lichen controller: manages lichen (and EVE) nodes through the EVE device API v2.
//!
//! - [`server`]: the HTTPS server of the device routes and the admin API;
//! - [`store`]: what it keeps, behind the [`store::Store`] trait (embedded, durable by default);
//! - [`registration`], [`device_config`]: onboarding rules and device configuration;
//! - [`pki`], [`admin_token`]: certificates and the admin credential, created on first start;
//! - [`datastore`], [`deploy`]: the datastore app images are served from, and the config
//!   objects that deploy one;
//! - [`tpm`]: the TPM structures of attestation quotes;
//! - [`client`], [`admin_api`], [`admin_client`], [`admin_cli`], [`admin_show`]: the admin side;
//! - [`devsim`]: simulated devices, for tests and load.

pub mod admin_api;
pub mod admin_cli;
pub mod admin_client;
pub mod admin_show;
pub mod admin_token;
pub mod client;
pub mod datastore;
pub mod deploy;
pub mod device_config;
pub mod devsim;
pub mod lifecycle;
pub mod pki;
pub mod registration;
pub mod server;
pub mod store;
pub mod tpm;
