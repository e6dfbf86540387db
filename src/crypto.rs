//! The one crypto provider of the process (aws-lc-rs), named here and nowhere else: every rustls
//! configuration is built with it, so a second provider linked in by a dependency can never be
//! picked by accident, and the modules that build TLS (the listener, the x509 authenticator,
//! the API client, the tools) depend on this leaf rather than on each other.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

/// The provider every rustls configuration here is built with.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Makes the same provider the process default, for libraries (the `kube` client) that build
/// their rustls configurations with `ClientConfig::builder()`. Idempotent.
pub fn install_default_provider() {
    let _ = CryptoProvider::clone(&provider()).install_default();
}
