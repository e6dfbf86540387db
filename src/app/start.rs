//! The start steps, each named for what it produces: everything the configuration names read
//! and checked with nothing written ([`Inputs`], which is all `check-config` runs), then the
//! serving certificate (the one step that may write, a self-signed pair), the authentication
//! chain and the authorizer. `build_with` in the parent module assembles the gateway from them;
//! the tools reuse [`authorization_alone`].

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::{BuildOptions, StartError};
use crate::authn::Authenticator;
use crate::authn::token_file::TokenFile;
use crate::authn::token_review::TokenReviewer;
use crate::authn::x509::ClientCa;
use crate::authz::rbac::RbacPolicy;
use crate::authz::webhook::SarAuthorizer;
use crate::authz::{AlwaysAllow, AnyAuthorizer, RbacAuthorizer};
use crate::certs::client::{self, ClientFlow};
use crate::certs::csr::Template;
use crate::certs::manager::Manager;
use crate::certs::store::Issued;
use crate::certs::{self, self_signed, serving};
use crate::clock::Clock;
use crate::config::{AuthorizationMode, Config, NodeAddress, ServingCertSource};
use crate::k8s::{ApiClient, CallPolicy};
use crate::ops::audit::Output;
use crate::proxy::forward::ReadOnlyPort;
use crate::proxy::secure::SecurePort;
use crate::tls::ServingCert;

/// What `check-config` verifies: everything `serve` reads, loaded and checked as `serve` loads
/// it, short of writing files, binding ports or contacting the API server. Returns the
/// warnings `serve` would log.
pub async fn check(config: &Config) -> Result<Vec<String>, StartError> {
    let inputs = Inputs::read(config, &BuildOptions::default()).await?;
    Ok(inputs.warnings)
}

/// Every file and setting the configuration names, read and checked, with nothing written yet:
/// a start that fails here leaves no trace on disk.
pub(super) struct Inputs {
    pub(super) serving: ServingInput,
    pub(super) client_ca: Option<ClientCa>,
    pub(super) token_file: Option<TokenFile>,
    pub(super) api: Option<Arc<ApiClient>>,
    /// The join and renewal of the gateway's own client certificate (`bootstrapKubeconfig`).
    pub(super) join: Option<Join>,
    pub(super) authorizer: AnyAuthorizer,
    pub(super) read_only: Option<ReadOnlyPort>,
    pub(super) secure: Option<SecurePort>,
    pub(super) warnings: Vec<String>,
}

/// The serving certificate as found at start.
pub(super) enum ServingInput {
    Files(Arc<rustls::sign::CertifiedKey>),
    /// Generated (or reused) in `certDir`: the one step that writes.
    SelfSigned,
    /// The stored bootstrapped certificate (served while valid), and the configured files
    /// (served while there is no valid stored one).
    Bootstrap {
        current: Option<Issued>,
        fallback: Option<Arc<rustls::sign::CertifiedKey>>,
    },
}

impl Inputs {
    pub(super) async fn read(config: &Config, options: &BuildOptions) -> Result<Inputs, StartError> {
        crate::crypto::install_default_provider();
        let mut warnings = Vec::new();
        let serving = match &config.serving_cert {
            ServingCertSource::Files { cert, key } => ServingInput::Files(certs::load_pair(cert, key)?),
            ServingCertSource::SelfSigned => ServingInput::SelfSigned,
            // The kubelet store's order: the stored current certificate, then the configured files.
            ServingCertSource::Bootstrap { fallback } => {
                let current = serving::load_current(&config.cert_dir);
                let fallback = match fallback {
                    Some((cert, key)) => Some(certs::load_pair(cert, key)?),
                    None => None,
                };
                ServingInput::Bootstrap { current, fallback }
            }
        };
        let client_ca = config
            .authentication
            .client_ca_file
            .as_deref()
            .map(ClientCa::load)
            .transpose()?;
        let token_file = config
            .authentication
            .token_file
            .as_deref()
            .map(TokenFile::load)
            .transpose()?;
        if let Some(f) = &token_file {
            warnings.extend(f.warnings.iter().cloned());
        }
        if let Some(sink) = &config.audit {
            Output::check(sink)?;
        }
        let (api, join) = api_client(config, options).await?;
        let (authorizer, authorizer_warnings) = authorization(config, api.as_ref(), &options.clock)?;
        warnings.extend(authorizer_warnings);
        let read_only = config
            .upstream
            .read_only
            .as_ref()
            .map(|url| {
                ReadOnlyPort::new(
                    url,
                    config.upstream.connect_timeout,
                    config.upstream.response_header_timeout,
                )
            })
            .transpose()?;
        // Reads the CA bundle and the client pair; nothing is dialled yet.
        let secure = config
            .upstream
            .secure
            .as_ref()
            .map(|s| {
                SecurePort::new(
                    s,
                    config.upstream.connect_timeout,
                    config.upstream.response_header_timeout,
                    config.upstream.stream_idle_timeout,
                )
            })
            .transpose()?;
        warnings.extend(posture_warnings(config));
        Ok(Inputs {
            serving,
            client_ca,
            token_file,
            api,
            join,
            authorizer,
            read_only,
            secure,
            warnings,
        })
    }
}

/// The client certificate manager of a join, with the certificate it starts from.
pub(super) type Join = (Manager<ClientFlow>, Option<Issued>);

/// The API server client, when a webhook, a CSR flow or a join needs one. Building it reads
/// the kubeconfig and its files (with `bootstrapKubeconfig`, decides whether to join, and
/// checks the bootstrap token's form); nothing is sent until a request needs it.
async fn api_client(
    config: &Config,
    options: &BuildOptions,
) -> Result<(Option<Arc<ApiClient>>, Option<Join>), StartError> {
    let needs_api = config.authentication.webhook.enabled
        || config.authorization.mode == AuthorizationMode::Webhook
        || matches!(config.serving_cert, ServingCertSource::Bootstrap { .. })
        || config.bootstrap_kubeconfig.is_some();
    if !needs_api {
        return Ok((None, None));
    }
    let policy = call_policy(config, options);
    let (Some(bootstrap), Some(kubeconfig)) = (&config.bootstrap_kubeconfig, &config.kubeconfig) else {
        return Ok((
            Some(Arc::new(
                ApiClient::connect(config.kubeconfig.as_deref(), policy).await?,
            )),
            None,
        ));
    };
    let current = client::resolve(kubeconfig, bootstrap)?;
    let api = Arc::new(match &current {
        Some(_) => ApiClient::connect(Some(kubeconfig), policy).await?,
        None => ApiClient::without_identity(
            kubeconfig,
            policy,
            format!(
                "no client certificate yet: joining with bootstrapKubeconfig {}",
                bootstrap.display()
            ),
        ),
    });
    let manager = Manager {
        flow: ClientFlow {
            api: api.clone(),
            node_name: config.node_name.clone(),
            kubeconfig: kubeconfig.clone(),
            bootstrap: bootstrap.clone(),
            store: client::store(&config.cert_dir),
        },
        store: client::store(&config.cert_dir),
        timing: options.csr_timing(),
    };
    Ok((Some(api), Some((manager, current))))
}

/// Settings an operator should hear about at start, one line each.
fn posture_warnings(config: &Config) -> Vec<String> {
    let mut warnings = Vec::new();
    if config.authentication.anonymous {
        warnings
            .push("anonymous access is enabled: requests without credentials are reviewed as system:anonymous".into());
    }
    if config.authorization.mode == AuthorizationMode::AlwaysAllow {
        warnings.push(
            "authorization.mode is AlwaysAllow: every authenticated request is allowed (development only)".into(),
        );
    }
    for (field, dir) in [
        ("logs.nodeLogDir", &config.logs.node_log_dir),
        ("logs.podLogDir", &config.logs.pod_log_dir),
    ] {
        if !dir.is_dir() {
            warnings.push(format!(
                "{field} {} is not a directory (yet): its endpoint answers 404 until it is",
                dir.display()
            ));
        }
    }
    let stale = config.api_server.stale_if_error;
    if !stale.is_zero() {
        warnings.push(format!(
            "apiServer.staleIfError is {stale:?}: expired identities and decisions stand in while the API server is unreachable"
        ));
    }
    warnings
}

pub(super) fn bootstrap_template(config: &Config) -> Option<Template> {
    (!config.node_addresses.is_empty())
        .then(|| serving::template_from_configured(&config.node_name, &config.node_addresses))
}

/// The serving certificate as built: where it lives, and what keeps it valid.
pub(super) struct Serving {
    pub(super) cert: Arc<ServingCert>,
    /// For the CSR flow: the stored certificate, if any.
    pub(super) bootstrapped: Option<Option<Issued>>,
    /// For a self-signed pair: its renewal.
    pub(super) renewal: Option<self_signed::Renewal>,
}

/// The serving certificate's first key: the files', the stored bootstrapped one, or a
/// self-signed pair generated (or reused) in `certDir`, valid for `self_signed_lifetime`.
pub(super) fn serving_certificate(
    config: &Config,
    input: ServingInput,
    self_signed_lifetime: std::time::Duration,
) -> Result<Serving, StartError> {
    let (key, bootstrapped, self_signed) = match input {
        ServingInput::Files(key) => (Some(key), None, None),
        ServingInput::SelfSigned => {
            let subject = self_signed_subject(config);
            let pair = self_signed::ensure(&config.cert_dir, &subject, self_signed_lifetime)?;
            if pair.generated {
                tracing::info!(cert = %pair.cert.display(), dns = ?subject.dns_names, ips = ?subject.ips, "generated a self-signed serving certificate");
            }
            let key = certs::load_pair(&pair.cert, &pair.key)?;
            (Some(key), None, Some((subject, pair.validity)))
        }
        // A valid stored certificate is served until its notAfter; else the files, if any.
        ServingInput::Bootstrap { current, fallback } => (fallback, Some(current), None),
    };
    let cert = Arc::new(ServingCert::new(key));
    if let Some(Some(c)) = &bootstrapped
        && c.valid_now()
    {
        cert.set_until(c.key.clone(), c.not_after);
    }
    let renewal = self_signed.map(|(subject, current)| self_signed::Renewal {
        cert_dir: config.cert_dir.clone(),
        subject,
        lifetime: self_signed_lifetime,
        serving: cert.clone(),
        current,
    });
    Ok(Serving {
        cert,
        bootstrapped,
        renewal,
    })
}

/// The authentication chain: client CA, token file, TokenReview webhook, anonymous.
pub(super) fn authenticator(
    config: &Config,
    client_ca: Option<Arc<ArcSwap<ClientCa>>>,
    token_file: Option<Arc<ArcSwap<TokenFile>>>,
    api: Option<&Arc<ApiClient>>,
    options: &BuildOptions,
) -> Result<Authenticator, StartError> {
    let token_reviewer = match (api, config.authentication.webhook.enabled) {
        (Some(api), true) => Some(TokenReviewer::new(
            api.clone(),
            config.authentication.webhook.cache_ttl,
            config.authentication.webhook.audiences.clone(),
            config.api_server.stale_if_error,
            options.clock.clone(),
            Arc::new(crate::authn::review_budget::ReviewBudget::new(
                config.limits.token_reviews_per_second,
                config.limits.token_reviews_per_second_per_peer,
                options.clock.clone(),
            )),
        )?),
        _ => None,
    };
    Ok(Authenticator::new(
        client_ca,
        token_file,
        token_reviewer,
        config.authentication.anonymous,
    ))
}

/// The authorization step: the authorizer the configuration names, with the warnings it brings
/// (RBAC policy oddities, AlwaysAllow). `api` is needed for Webhook mode.
pub fn authorization(
    config: &Config,
    api: Option<&Arc<ApiClient>>,
    clock: &Clock,
) -> Result<(AnyAuthorizer, Vec<String>), StartError> {
    Ok(match config.authorization.mode {
        AuthorizationMode::AlwaysAllow => (
            AnyAuthorizer::AlwaysAllow(AlwaysAllow),
            vec!["authorization.mode is AlwaysAllow: every authenticated request is allowed (development only)".into()],
        ),
        AuthorizationMode::Webhook => {
            let api = api.cloned().ok_or(StartError::Unsupported {
                field: "authorization.mode",
                message: "Webhook needs an API server client",
            })?;
            let sar = SarAuthorizer::new(
                api,
                config.authorization.cache_authorized_ttl,
                config.authorization.cache_unauthorized_ttl,
                config.api_server.stale_if_error,
                clock.clone(),
            );
            (AnyAuthorizer::Webhook(sar), Vec::new())
        }
        AuthorizationMode::Rbac => {
            let policy = RbacPolicy::load(&config.authorization.rbac_policy_files)?;
            let warnings = policy.warnings().to_vec();
            (AnyAuthorizer::Rbac(RbacAuthorizer::new(policy)), warnings)
        }
    })
}

/// The authorization step on its own, for the tools (`explain`, `policy-test`): an API server
/// client only when Webhook mode needs one, nothing else of the gateway.
pub async fn authorization_alone(config: &Config) -> Result<(AnyAuthorizer, Vec<String>), StartError> {
    let options = BuildOptions::default();
    let api = match config.authorization.mode {
        AuthorizationMode::Webhook => Some(Arc::new(
            ApiClient::connect(config.kubeconfig.as_deref(), call_policy(config, &options)).await?,
        )),
        _ => None,
    };
    authorization(config, api.as_ref(), &options.clock)
}

fn call_policy(config: &Config, options: &BuildOptions) -> CallPolicy {
    CallPolicy {
        deadline: config.api_server.request_timeout,
        max_in_flight: config.api_server.max_in_flight,
        backoff: options.backoff,
    }
}

/// Names for the self-signed certificate: the node name and host name, and every address.
fn self_signed_subject(config: &Config) -> self_signed::Subject {
    let mut dns_names = BTreeSet::from([config.node_name.clone()]);
    let mut ips = BTreeSet::new();
    if config.node_addresses.is_empty() {
        ips.extend(detected_addresses());
    }
    for address in &config.node_addresses {
        match address {
            NodeAddress::Ip(ip) => {
                ips.insert(*ip);
            }
            NodeAddress::Dns(name) => {
                dns_names.insert(name.clone());
            }
        }
    }
    self_signed::Subject {
        host: config.node_name.clone(),
        dns_names,
        ips,
    }
}

/// The host's interface addresses, without IPv6 link-local ones (never dialled by name).
pub fn detected_addresses() -> Vec<IpAddr> {
    let Ok(interfaces) = if_addrs::get_if_addrs() else {
        return Vec::new();
    };
    interfaces
        .into_iter()
        .map(|i| i.ip())
        .filter(|ip| !matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80))
        .collect()
}
