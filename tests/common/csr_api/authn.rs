//! Who is calling, as kube-apiserver's authenticators decide it (simplified): a client
//! certificate verified against the client signer at the time of each request (the x509
//! authenticator runs per request, so a certificate that expires on an open connection is
//! refused from then on), then the bearer token: the gateway's [`GATEWAY_TOKEN`] or a bootstrap
//! token `<id>.<secret>` (plugin/pkg/auth/authenticator/token/bootstrap/bootstrap.go: user
//! `system:bootstrap:<id>`, group `system:bootstrappers` and the token's extra groups).

use http::{HeaderMap, header};
use rustls_pki_types::{CertificateDer, UnixTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::record::Credential;
use super::store::Inner;
use super::{GATEWAY_TOKEN, lock};

/// An authenticated caller.
#[derive(Clone, Debug)]
pub(super) struct Caller {
    pub(super) user: String,
    pub(super) groups: Vec<String>,
    /// The gateway's token: allowed everything (the stand-in's original identity).
    pub(super) superuser: bool,
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let mut parts = value.trim().splitn(3, ' ');
    let scheme = parts.next()?;
    let token = parts.next()?;
    (scheme.eq_ignore_ascii_case("bearer") && parts.next().is_none()).then_some(token)
}

/// `[a-z0-9]{6}.[a-z0-9]{16}` split in two.
fn bootstrap_parts(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.split_once('.')?;
    let ok = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    (ok(id, 6) && ok(secret, 16)).then_some((id, secret))
}

/// The caller (if any) and the credential that was judged.
pub(super) fn authenticate(
    inner: &Inner,
    headers: &HeaderMap,
    chain: &[CertificateDer<'static>],
) -> (Option<Caller>, Credential) {
    let mut credential = Credential::None;
    if let Some(leaf) = chain.first()
        && let Ok((_, cert)) = X509Certificate::from_der(leaf.as_ref())
    {
        let valid = inner
            .client_verifier
            .verify_client_cert(leaf, &chain[1..], UnixTime::now())
            .is_ok();
        credential = Credential::Certificate {
            serial: cert.raw_serial_as_string().replace(':', ""),
            not_after: cert.validity().not_after.timestamp(),
            valid,
        };
        if valid {
            let subject = cert.subject();
            let user = subject
                .iter_common_name()
                .filter_map(|a| a.as_str().ok())
                .next()
                .unwrap_or("")
                .to_string();
            let mut groups: Vec<String> = subject
                .iter_organization()
                .filter_map(|a| a.as_str().ok())
                .map(str::to_string)
                .collect();
            groups.push("system:authenticated".into());
            return (
                Some(Caller {
                    user,
                    groups,
                    superuser: false,
                }),
                credential,
            );
        }
    }
    let Some(token) = bearer(headers) else {
        return (None, credential);
    };
    if token == GATEWAY_TOKEN {
        let user = inner.identity.clone();
        let mut groups = Vec::new();
        if user.starts_with("system:node:") {
            groups.push("system:nodes".to_string());
        }
        groups.push("system:authenticated".into());
        return (
            Some(Caller {
                user,
                groups,
                superuser: true,
            }),
            Credential::GatewayToken,
        );
    }
    if let Some((id, secret)) = bootstrap_parts(token) {
        let state = lock(&inner.state);
        if let Some(t) = state.cluster.bootstrap_tokens.get(id)
            && t.secret == secret
        {
            let mut groups = vec!["system:bootstrappers".to_string()];
            groups.extend(t.extra_groups.iter().cloned());
            groups.push("system:authenticated".into());
            return (
                Some(Caller {
                    user: format!("system:bootstrap:{id}"),
                    groups,
                    superuser: false,
                }),
                Credential::BootstrapToken(id.to_string()),
            );
        }
        if !matches!(credential, Credential::Certificate { .. }) {
            credential = Credential::BootstrapToken(id.to_string());
        }
    }
    (None, credential)
}
