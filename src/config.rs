//! The gateway's configuration: the `--config` YAML file (`kubelet-gate/v1alpha1`,
//! `GatewayConfiguration`), its defaults and validation, and the effective configuration
//! printed by `check-config`. Everything after start-up uses the validated [`Config`]; the
//! serde schema in `config/schema.rs` never leaves this module.

mod duration;
mod limits;
mod schema;
#[cfg(test)]
mod tests;
mod validate;

use validate::Validator;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use duration::{DurationError, format_go_duration, parse_go_duration};
pub use limits::Limits;
use schema::{
    RawAnonymous, RawApiServer, RawAudit, RawAuthentication, RawAuthnWebhook, RawAuthorization, RawAuthzWebhook,
    RawConfig, RawFeatureGates, RawLogs, RawOps, RawRbac, RawSecureUpstream, RawUpstream, RawX509, SourceIndex,
};

pub const API_VERSION: &str = "kubelet-gate/v1alpha1";
pub const KIND: &str = "GatewayConfiguration";

const DEFAULT_PORT: u16 = 10250;
const DEFAULT_CERT_DIR: &str = "/var/lib/kubelet-gate/pki";
const DEFAULT_READ_ONLY_UPSTREAM: &str = "http://127.0.0.1:10255";
const DEFAULT_NODE_LOG_DIR: &str = "/var/log";
const DEFAULT_POD_LOG_DIR: &str = "/var/log/pods";
const DEFAULT_OPS_ADDRESS: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 10251);
/// `upstream.connectTimeout`: connecting to a local port either works at once or not at all.
pub const DEFAULT_UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// `upstream.responseHeaderTimeout`: the wait for the upstream's response headers; the body
/// then streams with no total limit.
pub const DEFAULT_UPSTREAM_RESPONSE_HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// `upstream.streamIdleTimeout`: the kubelet's `streamingConnectionIdleTimeout` default.
pub const DEFAULT_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(4 * 3600);
/// Shown instead of a file name when the text did not come from a file.
const UNNAMED_SOURCE: &str = "<config>";

/// The validated configuration. Paths are absolute (relative ones in the file are resolved
/// against the file's directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The Node name used in SubjectAccessReviews and certificates.
    pub node_name: String,
    pub listen: SocketAddr,
    pub cert_dir: PathBuf,
    pub serving_cert: ServingCertSource,
    pub tls_min_version: TlsVersion,
    /// Empty: the TLS library's defaults.
    pub tls_cipher_suites: Vec<CipherSuiteName>,
    /// Empty: detect at run time.
    pub node_addresses: Vec<NodeAddress>,
    /// `None`: in-cluster configuration.
    pub kubeconfig: Option<PathBuf>,
    /// The kubelet's `--bootstrap-kubeconfig`: when `kubeconfig` is missing or its client
    /// certificate unusable, join with this file's bootstrap token and write `kubeconfig`.
    pub bootstrap_kubeconfig: Option<PathBuf>,
    pub api_server: ApiServer,
    pub authentication: Authentication,
    pub authorization: Authorization,
    /// Feature gate `KubeletFineGrainedAuthz`.
    pub fine_grained_authz: bool,
    pub upstream: Upstream,
    pub logs: Logs,
    /// Feature gate `PodLogsQuerySplitStreams` (alpha in the kubelet, off by default):
    /// `/containerLogs?stream=Stdout|Stderr`.
    pub split_log_streams: bool,
    /// The gateway's own `/healthz`, `/readyz`, `/metrics`.
    pub ops_address: SocketAddr,
    pub audit: Option<AuditSink>,
    /// Deadlines and caps on the 10250 listener's connections, streams and requests.
    pub limits: Limits,
}

/// Where the serving certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServingCertSource {
    /// `tlsCertFile` and `tlsPrivateKeyFile`, reloaded when they change.
    Files { cert: PathBuf, key: PathBuf },
    /// `kubelet.crt`/`kubelet.key` in `cert_dir`, generated when missing or expired.
    SelfSigned,
    /// `serverTLSBootstrap: true`. As in the kubelet's certificate store, the files (when
    /// given) serve until a bootstrapped certificate exists. The pair is `(cert, key)`.
    Bootstrap { fallback: Option<(PathBuf, PathBuf)> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

impl TlsVersion {
    /// Go's name, as `tlsMinVersion` spells it.
    pub fn go_name(self) -> &'static str {
        match self {
            TlsVersion::Tls12 => "VersionTLS12",
            TlsVersion::Tls13 => "VersionTLS13",
        }
    }
}

/// The cipher suites kubelet-gate can honour: the AEAD ECDHE suites of TLS 1.2, plus the TLS 1.3
/// suites, which Go accepts in the list and ignores (TLS 1.3 suites are not configurable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CipherSuiteName {
    EcdheEcdsaWithAes128GcmSha256,
    EcdheEcdsaWithAes256GcmSha384,
    EcdheEcdsaWithChacha20Poly1305Sha256,
    EcdheRsaWithAes128GcmSha256,
    EcdheRsaWithAes256GcmSha384,
    EcdheRsaWithChacha20Poly1305Sha256,
    Tls13Aes128GcmSha256,
    Tls13Aes256GcmSha384,
    Tls13Chacha20Poly1305Sha256,
}

impl CipherSuiteName {
    pub const ALL: [CipherSuiteName; 9] = [
        CipherSuiteName::EcdheEcdsaWithAes128GcmSha256,
        CipherSuiteName::EcdheEcdsaWithAes256GcmSha384,
        CipherSuiteName::EcdheEcdsaWithChacha20Poly1305Sha256,
        CipherSuiteName::EcdheRsaWithAes128GcmSha256,
        CipherSuiteName::EcdheRsaWithAes256GcmSha384,
        CipherSuiteName::EcdheRsaWithChacha20Poly1305Sha256,
        CipherSuiteName::Tls13Aes128GcmSha256,
        CipherSuiteName::Tls13Aes256GcmSha384,
        CipherSuiteName::Tls13Chacha20Poly1305Sha256,
    ];

    /// Go's `tls.CipherSuiteName` for the suite (the `_SHA256`-suffixed ChaCha20 names).
    pub fn go_name(self) -> &'static str {
        match self {
            CipherSuiteName::EcdheEcdsaWithAes128GcmSha256 => "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            CipherSuiteName::EcdheEcdsaWithAes256GcmSha384 => "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            CipherSuiteName::EcdheEcdsaWithChacha20Poly1305Sha256 => "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
            CipherSuiteName::EcdheRsaWithAes128GcmSha256 => "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            CipherSuiteName::EcdheRsaWithAes256GcmSha384 => "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            CipherSuiteName::EcdheRsaWithChacha20Poly1305Sha256 => "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
            CipherSuiteName::Tls13Aes128GcmSha256 => "TLS_AES_128_GCM_SHA256",
            CipherSuiteName::Tls13Aes256GcmSha384 => "TLS_AES_256_GCM_SHA384",
            CipherSuiteName::Tls13Chacha20Poly1305Sha256 => "TLS_CHACHA20_POLY1305_SHA256",
        }
    }

    /// Accepts Go's names and the legacy ChaCha20 aliases without `_SHA256` that
    /// component-base keeps for compatibility.
    pub fn from_go_name(name: &str) -> Option<CipherSuiteName> {
        match name {
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305" => Some(CipherSuiteName::EcdheEcdsaWithChacha20Poly1305Sha256),
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" => Some(CipherSuiteName::EcdheRsaWithChacha20Poly1305Sha256),
            _ => CipherSuiteName::ALL.into_iter().find(|s| s.go_name() == name),
        }
    }

    /// The rustls identifier, for filtering a crypto provider's suites. Always `Some`: every
    /// name this enum can hold was admitted because rustls implements it.
    pub fn rustls_suite(&self) -> Option<rustls::CipherSuite> {
        use rustls::CipherSuite as R;
        Some(match self {
            CipherSuiteName::EcdheEcdsaWithAes128GcmSha256 => R::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            CipherSuiteName::EcdheEcdsaWithAes256GcmSha384 => R::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            CipherSuiteName::EcdheEcdsaWithChacha20Poly1305Sha256 => R::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            CipherSuiteName::EcdheRsaWithAes128GcmSha256 => R::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            CipherSuiteName::EcdheRsaWithAes256GcmSha384 => R::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            CipherSuiteName::EcdheRsaWithChacha20Poly1305Sha256 => R::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
            CipherSuiteName::Tls13Aes128GcmSha256 => R::TLS13_AES_128_GCM_SHA256,
            CipherSuiteName::Tls13Aes256GcmSha384 => R::TLS13_AES_256_GCM_SHA384,
            CipherSuiteName::Tls13Chacha20Poly1305Sha256 => R::TLS13_CHACHA20_POLY1305_SHA256,
        })
    }

    pub fn is_tls13(self) -> bool {
        matches!(
            self,
            CipherSuiteName::Tls13Aes128GcmSha256
                | CipherSuiteName::Tls13Aes256GcmSha384
                | CipherSuiteName::Tls13Chacha20Poly1305Sha256
        )
    }
}

/// Names Go knows (`tls.CipherSuites()` and `tls.InsecureCipherSuites()`) that have no rustls
/// implementation: CBC, static-RSA key exchange, 3DES and RC4.
const GO_SUITES_WITHOUT_RUSTLS: &[&str] = &[
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_RC4_128_SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
];

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NodeAddress {
    Ip(IpAddr),
    /// A lower-case RFC 1123 host name.
    Dns(String),
}

impl fmt::Display for NodeAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeAddress::Ip(ip) => ip.fmt(f),
            NodeAddress::Dns(name) => f.write_str(name),
        }
    }
}

/// Calls to the API server (TokenReview, SubjectAccessReview, CSR).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiServer {
    pub request_timeout: Duration,
    /// At least 1.
    pub max_in_flight: usize,
    /// How long a cached answer may still be used while the API server fails; zero: never.
    pub stale_if_error: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authentication {
    /// `authentication.x509.clientCAFile`; `None`: no client certificates are requested.
    pub client_ca_file: Option<PathBuf>,
    pub webhook: TokenWebhook,
    /// `authentication.anonymous.enabled`.
    pub anonymous: bool,
    /// A kube-apiserver `--token-auth-file` CSV.
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenWebhook {
    pub enabled: bool,
    pub cache_ttl: Duration,
    pub audiences: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub mode: AuthorizationMode,
    pub cache_authorized_ttl: Duration,
    pub cache_unauthorized_ttl: Duration,
    /// `authorization.rbac.policyFiles`; may be empty in RBAC mode (built-in roles only).
    pub rbac_policy_files: Vec<PathBuf>,
    /// Authorize exec, attach, portForward and run with verb `create` whatever the method.
    pub exec_requires_create: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthorizationMode {
    Webhook,
    Rbac,
    AlwaysAllow,
}

impl AuthorizationMode {
    /// The spelling in the YAML file.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthorizationMode::Webhook => "Webhook",
            AuthorizationMode::Rbac => "RBAC",
            AuthorizationMode::AlwaysAllow => "AlwaysAllow",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// An `http://` URL with only scheme, host and port; `None` (an empty `readOnly`) sends the
    /// read-only endpoints to the secure upstream too.
    pub read_only: Option<http::Uri>,
    /// How long connecting to the read-only port may take (default 1s).
    pub connect_timeout: Duration,
    /// How long the read-only port may take to send response headers (default 30s); bodies
    /// then stream with no total limit, so `follow` streams are never cut.
    pub response_header_timeout: Duration,
    /// An upgraded stream (exec, attach, port-forward) with no byte either way for this long is
    /// closed (the kubelet's `streamingConnectionIdleTimeout`, 4h). There is no total limit.
    pub stream_idle_timeout: Duration,
    pub secure: Option<SecureUpstream>,
}

/// The kubelet's own authenticated port, moved to loopback (`https://127.0.0.1:10250`, the
/// gateway on the node's address), for the endpoints the read-only port lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecureUpstream {
    /// An `https://` URL with only scheme, host and port; the host must be in the kubelet's
    /// serving certificate.
    pub url: http::Uri,
    /// The CA that signed the kubelet's serving certificate.
    pub ca_file: PathBuf,
    /// The gateway's client certificate and key, reloaded when they change.
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logs {
    pub node_log_dir: PathBuf,
    pub pod_log_dir: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditSink {
    /// `path: "-"`.
    Stdout,
    File(PathBuf),
}

/// A configuration that cannot be used. Display is one line: `file:line: field: message`,
/// or `file: field: message` when the field does not appear in the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The YAML is malformed or does not fit the schema (unknown field, wrong type).
    #[error("{}", located(file, *line, field.as_deref(), message))]
    Parse {
        file: String,
        line: Option<usize>,
        field: Option<String>,
        message: String,
    },
    /// The values are well-formed but not acceptable.
    #[error("{}", located(file, *line, Some(field.as_str()), message))]
    Invalid {
        file: String,
        line: Option<usize>,
        field: String,
        message: String,
    },
    /// A command-line flag's value is not acceptable (judged as the same value in the file).
    #[error("{flag}: {field}: {message}")]
    Flag {
        flag: &'static str,
        field: String,
        message: String,
    },
}

/// Values given on the command line (`serve` and `check-config` flags) in place of the file's.
/// They are put into the file's fields before validation, so a bad flag is refused exactly as
/// the same value in the file would be; the error names the flag. A relative `--cert-dir` is
/// resolved against the working directory, as a flag's path is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    pub node_name: Option<String>,
    pub address: Option<IpAddr>,
    pub port: Option<u16>,
    pub cert_dir: Option<PathBuf>,
    pub ops_address: Option<SocketAddr>,
}

impl Overrides {
    /// Writes the flags into the raw file and returns which field each one set.
    fn apply(&self, raw: &mut RawConfig) -> Vec<(&'static str, &'static str)> {
        let mut set = Vec::new();
        if let Some(n) = &self.node_name {
            raw.node_name = Some(n.clone());
            set.push(("nodeName", "--node-name"));
        }
        if let Some(a) = self.address {
            raw.address = Some(a.to_string());
            set.push(("address", "--address"));
        }
        if let Some(p) = self.port {
            raw.port = Some(i64::from(p));
            set.push(("port", "--port"));
        }
        if let Some(d) = &self.cert_dir {
            let d = std::path::absolute(d).unwrap_or_else(|_| d.clone());
            raw.cert_dir = Some(d.display().to_string());
            set.push(("certDir", "--cert-dir"));
        }
        if let Some(a) = self.ops_address {
            raw.ops.get_or_insert_with(RawOps::default).address = Some(a.to_string());
            set.push(("ops.address", "--ops-address"));
        }
        set
    }
}

fn located(file: &str, line: Option<usize>, field: Option<&str>, message: &str) -> String {
    let file = one_line(file);
    let place = match line {
        Some(line) => format!("{file}:{line}"),
        None => file,
    };
    match field {
        Some(field) => format!("{place}: {}: {}", one_line(field), one_line(message)),
        None => format!("{place}: {}", one_line(message)),
    }
}

/// Control characters escaped as Rust writes them (`\n`): a field path holds the file's own
/// keys (`"node\nName": x`), and the error must stay one line.
fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

impl ConfigError {
    /// The 1-based line of the offending field, when it appears in the file.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Read { .. } | ConfigError::Flag { .. } => None,
            ConfigError::Parse { line, .. } | ConfigError::Invalid { line, .. } => *line,
        }
    }

    /// The dotted path of the offending field, e.g. `authentication.webhook.cacheTTL`.
    pub fn field(&self) -> Option<&str> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Parse { field, .. } => field.as_deref(),
            ConfigError::Invalid { field, .. } | ConfigError::Flag { field, .. } => Some(field),
        }
    }
}

impl Config {
    /// Parses and validates `text`; relative paths are resolved against `base_dir`.
    pub fn from_yaml(text: &str, base_dir: &Path) -> Result<Config, ConfigError> {
        Config::from_yaml_named(text, base_dir, UNNAMED_SOURCE)
    }

    /// As [`Config::from_yaml`], with `source_name` (usually the file name) in error messages.
    pub fn from_yaml_named(text: &str, base_dir: &Path, source_name: &str) -> Result<Config, ConfigError> {
        Config::from_yaml_with(text, base_dir, source_name, &Overrides::default())
    }

    fn from_yaml_with(
        text: &str,
        base_dir: &Path,
        source_name: &str,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let mut raw = schema::parse(text).map_err(|f| ConfigError::Parse {
            file: source_name.to_owned(),
            line: f.line,
            field: f.field,
            message: f.message,
        })?;
        let base_dir = std::path::absolute(base_dir)
            .or_else(|_| std::env::current_dir())
            .unwrap_or_else(|_| base_dir.to_path_buf());
        let flags = overrides.apply(&mut raw);
        let v = Validator {
            file: source_name,
            index: SourceIndex::build(text),
            base_dir,
            flags,
        };
        v.config(raw)
    }

    /// Reads and validates the file at `path`; relative paths in it are resolved against its
    /// directory, as the kubelet does for its own config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with(path, &Overrides::default())
    }

    /// As [`Config::load`], with command-line values in place of the file's.
    pub fn load_with(path: &Path, overrides: &Overrides) -> Result<Config, ConfigError> {
        let read_err = |source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        };
        let text = std::fs::read_to_string(path).map_err(read_err)?;
        let absolute = std::path::absolute(path).map_err(read_err)?;
        let base_dir = absolute.parent().unwrap_or(Path::new("/"));
        Config::from_yaml_with(&text, base_dir, &path.display().to_string(), overrides)
    }

    /// The effective configuration in the file format: every field, defaults filled in, paths
    /// absolute. Parsing it back yields an equal `Config`.
    pub fn to_yaml(&self) -> String {
        let raw = self.to_raw();
        serde_saphyr::to_string(&raw).unwrap_or_else(|e| format!("# cannot render the configuration: {e}\n"))
    }

    fn to_raw(&self) -> RawConfig {
        let path = |p: &Path| p.to_string_lossy().into_owned();
        let opt_path = |p: &Option<PathBuf>| p.as_deref().map(path).unwrap_or_default();
        let dur = |d: Duration| Some(format_go_duration(d));
        let (cert_files, bootstrap) = match &self.serving_cert {
            ServingCertSource::Files { cert, key } => (Some((cert, key)), false),
            ServingCertSource::SelfSigned => (None, false),
            ServingCertSource::Bootstrap { fallback } => (fallback.as_ref().map(|(c, k)| (c, k)), true),
        };
        let secure = self.upstream.secure.as_ref();
        RawConfig {
            api_version: Some(API_VERSION.to_owned()),
            kind: Some(KIND.to_owned()),
            node_name: Some(self.node_name.clone()),
            address: Some(self.listen.ip().to_string()),
            port: Some(i64::from(self.listen.port())),
            cert_dir: Some(path(&self.cert_dir)),
            tls_cert_file: Some(cert_files.map(|(c, _)| path(c)).unwrap_or_default()),
            tls_private_key_file: Some(cert_files.map(|(_, k)| path(k)).unwrap_or_default()),
            server_tls_bootstrap: Some(bootstrap),
            tls_min_version: Some(self.tls_min_version.go_name().to_owned()),
            tls_cipher_suites: Some(self.tls_cipher_suites.iter().map(|s| s.go_name().to_owned()).collect()),
            node_addresses: Some(self.node_addresses.iter().map(|a| a.to_string()).collect()),
            kubeconfig: Some(opt_path(&self.kubeconfig)),
            bootstrap_kubeconfig: Some(opt_path(&self.bootstrap_kubeconfig)),
            api_server: Some(RawApiServer {
                request_timeout: dur(self.api_server.request_timeout),
                max_in_flight: Some(i64::try_from(self.api_server.max_in_flight).unwrap_or(i64::MAX)),
                stale_if_error: dur(self.api_server.stale_if_error),
            }),
            authentication: Some(RawAuthentication {
                x509: Some(RawX509 {
                    client_ca_file: Some(opt_path(&self.authentication.client_ca_file)),
                }),
                webhook: Some(RawAuthnWebhook {
                    enabled: Some(self.authentication.webhook.enabled),
                    cache_ttl: dur(self.authentication.webhook.cache_ttl),
                    audiences: Some(self.authentication.webhook.audiences.clone()),
                }),
                anonymous: Some(RawAnonymous {
                    enabled: Some(self.authentication.anonymous),
                }),
                token_file: Some(opt_path(&self.authentication.token_file)),
            }),
            authorization: Some(RawAuthorization {
                mode: Some(self.authorization.mode.as_str().to_owned()),
                webhook: Some(RawAuthzWebhook {
                    cache_authorized_ttl: dur(self.authorization.cache_authorized_ttl),
                    cache_unauthorized_ttl: dur(self.authorization.cache_unauthorized_ttl),
                }),
                rbac: Some(RawRbac {
                    policy_files: Some(self.authorization.rbac_policy_files.iter().map(|p| path(p)).collect()),
                }),
                exec_requires_create: Some(self.authorization.exec_requires_create),
            }),
            feature_gates: Some(RawFeatureGates {
                kubelet_fine_grained_authz: Some(self.fine_grained_authz),
                pod_logs_query_split_streams: Some(self.split_log_streams),
            }),
            upstream: Some(RawUpstream {
                read_only: Some(self.upstream.read_only.as_ref().map(url_text).unwrap_or_default()),
                connect_timeout: dur(self.upstream.connect_timeout),
                response_header_timeout: dur(self.upstream.response_header_timeout),
                stream_idle_timeout: dur(self.upstream.stream_idle_timeout),
                secure: Some(RawSecureUpstream {
                    url: Some(secure.map(|s| url_text(&s.url)).unwrap_or_default()),
                    ca_file: Some(secure.map(|s| path(&s.ca_file)).unwrap_or_default()),
                    cert_file: Some(secure.map(|s| path(&s.cert_file)).unwrap_or_default()),
                    key_file: Some(secure.map(|s| path(&s.key_file)).unwrap_or_default()),
                }),
            }),
            logs: Some(RawLogs {
                node_log_dir: Some(path(&self.logs.node_log_dir)),
                pod_log_dir: Some(path(&self.logs.pod_log_dir)),
            }),
            ops: Some(RawOps {
                address: Some(self.ops_address.to_string()),
            }),
            audit: Some(RawAudit {
                path: Some(match &self.audit {
                    None => String::new(),
                    Some(AuditSink::Stdout) => "-".to_owned(),
                    Some(AuditSink::File(p)) => path(p),
                }),
            }),
            limits: Some(self.limits.to_raw()),
        }
    }
}

/// `scheme://authority`, without the `/` that `Uri`'s Display adds.
fn url_text(uri: &http::Uri) -> String {
    match (uri.scheme_str(), uri.authority()) {
        (Some(scheme), Some(authority)) => format!("{scheme}://{authority}"),
        _ => uri.to_string(),
    }
}

/// `None` for an absent or empty value: in KubeletConfiguration style, empty means unset.
fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}
