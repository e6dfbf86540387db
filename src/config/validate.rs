//! Validation: turns the raw schema into the typed [`Config`], naming the field and line of
//! anything wrong.

use super::*;

/// Turns the schema into a `Config`, with errors that carry the file name and line.
pub(super) struct Validator<'a> {
    pub(super) file: &'a str,
    pub(super) index: SourceIndex,
    pub(super) base_dir: PathBuf,
    /// Fields whose value came from a flag, with the flag: an error about one names the flag.
    pub(super) flags: Vec<(&'static str, &'static str)>,
}

impl Validator<'_> {
    pub(super) fn error(&self, field: &str, message: impl Into<String>) -> ConfigError {
        self.error_at(field, field, message)
    }

    /// An error about `field`, placed on the line of `located` (e.g. one list element).
    fn error_at(&self, field: &str, located: &str, message: impl Into<String>) -> ConfigError {
        if let Some(&(_, flag)) = self.flags.iter().find(|(f, _)| *f == field) {
            return ConfigError::Flag {
                flag,
                field: field.to_owned(),
                message: message.into(),
            };
        }
        ConfigError::Invalid {
            file: self.file.to_owned(),
            line: self.index.line_of(located).or_else(|| self.index.line_of(field)),
            field: field.to_owned(),
            message: message.into(),
        }
    }

    fn path(&self, value: &str) -> PathBuf {
        let joined = self.base_dir.join(value);
        // Drops `.` segments and trailing slashes; `..` stays, as symlinks may make it matter.
        joined.components().collect()
    }

    fn opt_path(&self, value: Option<String>) -> Option<PathBuf> {
        non_empty(value).map(|v| self.path(&v))
    }

    fn path_or(&self, value: Option<String>, default: &str) -> PathBuf {
        self.path(&non_empty(value).unwrap_or_else(|| default.to_owned()))
    }

    pub(super) fn duration(
        &self,
        field: &str,
        value: Option<String>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        match non_empty(value) {
            None => Ok(default),
            Some(text) => parse_go_duration(&text).map_err(|e| self.error(field, e.to_string())),
        }
    }

    /// Both or neither of a certificate and its key, as `(cert, key)`.
    fn pair(
        &self,
        (cert_field, cert): (&str, Option<String>),
        (key_field, key): (&str, Option<String>),
    ) -> Result<Option<(PathBuf, PathBuf)>, ConfigError> {
        match (non_empty(cert), non_empty(key)) {
            (Some(cert), Some(key)) => Ok(Some((self.path(&cert), self.path(&key)))),
            (None, None) => Ok(None),
            (Some(_), None) => Err(self.error(
                cert_field,
                format!("{cert_field} is set but {key_field} is not; set both or neither"),
            )),
            (None, Some(_)) => Err(self.error(
                key_field,
                format!("{key_field} is set but {cert_field} is not; set both or neither"),
            )),
        }
    }

    pub(super) fn config(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let must_be = |field: &str, value: Option<String>, want: &str| match value {
            Some(v) if v == want => Ok(()),
            Some(v) => Err(self.error(field, format!("unsupported value {v:?}; must be {want:?}"))),
            None => Err(self.error(field, format!("missing; must be {want:?}"))),
        };
        must_be("apiVersion", raw.api_version, API_VERSION)?;
        must_be("kind", raw.kind, KIND)?;

        let node_name = match non_empty(raw.node_name) {
            Some(name) if is_dns_subdomain(&name) => name,
            Some(name) => {
                return Err(self.error(
                    "nodeName",
                    format!("{name:?} is not a valid node name (a lower-case RFC 1123 subdomain)"),
                ));
            }
            None => {
                let name = host_name();
                if !is_dns_subdomain(&name) {
                    return Err(self.error(
                        "nodeName",
                        format!("the host name {name:?} is not a valid node name; set nodeName"),
                    ));
                }
                name
            }
        };

        let ip = match non_empty(raw.address) {
            None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Some(text) => text
                .parse::<IpAddr>()
                .map_err(|_| self.error("address", format!("{text:?} is not an IP address")))?,
        };
        let port = raw.port.unwrap_or(i64::from(DEFAULT_PORT));
        let port = u16::try_from(port).ok().filter(|&p| p != 0).ok_or_else(|| {
            self.error(
                "port",
                format!("port (--port) {port} must be between 1 and 65535, inclusive"),
            )
        })?;
        let listen = SocketAddr::new(ip, port);

        let files = self.pair(
            ("tlsCertFile", raw.tls_cert_file),
            ("tlsPrivateKeyFile", raw.tls_private_key_file),
        )?;
        let serving_cert = match (raw.server_tls_bootstrap.unwrap_or(false), files) {
            (true, fallback) => ServingCertSource::Bootstrap { fallback },
            (false, Some((cert, key))) => ServingCertSource::Files { cert, key },
            (false, None) => ServingCertSource::SelfSigned,
        };

        let tls_min_version = match raw.tls_min_version.as_deref().unwrap_or("") {
            "" | "VersionTLS12" => TlsVersion::Tls12,
            "VersionTLS13" => TlsVersion::Tls13,
            old @ ("VersionTLS10" | "VersionTLS11") => {
                return Err(self.error(
                    "tlsMinVersion",
                    format!("{old} is not supported; the minimum is VersionTLS12"),
                ));
            }
            other => {
                return Err(self.error(
                    "tlsMinVersion",
                    format!("unknown tls version {other:?}; valid values: VersionTLS12, VersionTLS13"),
                ));
            }
        };

        let mut tls_cipher_suites = Vec::new();
        for (i, name) in raw.tls_cipher_suites.unwrap_or_default().iter().enumerate() {
            let field = "tlsCipherSuites";
            let at = format!("{field}[{i}]");
            match CipherSuiteName::from_go_name(name) {
                Some(suite) if !tls_cipher_suites.contains(&suite) => tls_cipher_suites.push(suite),
                Some(_) => {}
                None if GO_SUITES_WITHOUT_RUSTLS.contains(&name.as_str()) => {
                    return Err(self.error_at(
                        field,
                        &at,
                        format!("cipher suite {name} is not supported by kubelet-gate (insecure)"),
                    ));
                }
                None => {
                    return Err(self.error_at(
                        field,
                        &at,
                        format!("cipher suite {name} not supported or doesn't exist"),
                    ));
                }
            }
        }

        let mut node_addresses = Vec::new();
        for (i, text) in raw.node_addresses.unwrap_or_default().into_iter().enumerate() {
            let address = if let Ok(ip) = text.parse::<IpAddr>() {
                NodeAddress::Ip(ip)
            } else if is_dns_subdomain(&text.to_ascii_lowercase()) {
                NodeAddress::Dns(text.to_ascii_lowercase())
            } else {
                return Err(self.error_at(
                    "nodeAddresses",
                    &format!("nodeAddresses[{i}]"),
                    format!("{text:?} is neither an IP address nor a DNS name"),
                ));
            };
            node_addresses.push(address);
        }

        let kubeconfig = self.opt_path(raw.kubeconfig);
        let bootstrap_kubeconfig = self.opt_path(raw.bootstrap_kubeconfig);
        if bootstrap_kubeconfig.is_some() && kubeconfig.is_none() {
            return Err(self.error(
                "bootstrapKubeconfig",
                "needs kubeconfig: the file the identity issued through the bootstrap token is written to",
            ));
        }
        if bootstrap_kubeconfig.is_some() && bootstrap_kubeconfig == kubeconfig {
            return Err(self.error(
                "bootstrapKubeconfig",
                "must differ from kubeconfig, which is written once a certificate is issued",
            ));
        }

        let api = raw.api_server.unwrap_or_default();
        let request_timeout = self.duration("apiServer.requestTimeout", api.request_timeout, Duration::from_secs(5))?;
        if request_timeout.is_zero() {
            return Err(self.error("apiServer.requestTimeout", "must be greater than 0s"));
        }
        let max_in_flight = api.max_in_flight.unwrap_or(64);
        let max_in_flight = usize::try_from(max_in_flight)
            .ok()
            .filter(|&n| n >= 1)
            .ok_or_else(|| self.error("apiServer.maxInFlight", format!("{max_in_flight} must be at least 1")))?;
        let api_server = ApiServer {
            request_timeout,
            max_in_flight,
            stale_if_error: self.duration("apiServer.staleIfError", api.stale_if_error, Duration::ZERO)?,
        };

        let authentication = self.authentication(raw.authentication.unwrap_or_default())?;
        let authorization = self.authorization(raw.authorization.unwrap_or_default())?;
        let gates = raw.feature_gates.unwrap_or_default();
        let fine_grained_authz = gates.kubelet_fine_grained_authz.unwrap_or(true);
        let split_log_streams = gates.pod_logs_query_split_streams.unwrap_or(false);
        let upstream = self.upstream(raw.upstream.unwrap_or_default())?;
        // The gateway must never be its own upstream: with the kubelet on 127.0.0.1:10250, a
        // gateway on 0.0.0.0:10250 would take the kubelet's port (or fail to bind) and send
        // every request back to itself.
        let upstreams = [
            ("upstream.readOnly", upstream.read_only.as_ref()),
            ("upstream.secure.url", upstream.secure.as_ref().map(|s| &s.url)),
        ];
        for (field, url) in upstreams {
            if let Some(url) = url
                && let Some(target) = ip_target(url)
                && target.port() == listen.port()
                && addresses_overlap(target.ip(), listen.ip())
            {
                return Err(self.error(
                    "address",
                    format!(
                        "the listen address {listen} takes {field}'s {target}: the gateway would forward to itself; set address (--address) to the node's address"
                    ),
                ));
            }
        }

        let logs = raw.logs.unwrap_or_default();
        let logs = Logs {
            node_log_dir: self.path_or(logs.node_log_dir, DEFAULT_NODE_LOG_DIR),
            pod_log_dir: self.path_or(logs.pod_log_dir, DEFAULT_POD_LOG_DIR),
        };

        let ops_address = match non_empty(raw.ops.and_then(|o| o.address)) {
            None => DEFAULT_OPS_ADDRESS,
            Some(text) => text.parse::<SocketAddr>().map_err(|_| {
                self.error(
                    "ops.address",
                    format!("{text:?} is not an IP:port address (IPv6 in brackets)"),
                )
            })?,
        };
        if ops_address.port() == listen.port() && addresses_overlap(ops_address.ip(), listen.ip()) {
            return Err(self.error(
                "ops.address",
                format!("{ops_address} conflicts with the gateway's listen address {listen}"),
            ));
        }

        let audit = match non_empty(raw.audit.and_then(|a| a.path)) {
            None => None,
            Some(p) if p == "-" => Some(AuditSink::Stdout),
            Some(p) => Some(AuditSink::File(self.path(&p))),
        };

        let limits = self.limits(raw.limits.unwrap_or_default())?;

        Ok(Config {
            node_name,
            listen,
            cert_dir: self.path_or(raw.cert_dir, DEFAULT_CERT_DIR),
            serving_cert,
            tls_min_version,
            tls_cipher_suites,
            node_addresses,
            kubeconfig,
            bootstrap_kubeconfig,
            api_server,
            authentication,
            authorization,
            fine_grained_authz,
            upstream,
            logs,
            split_log_streams,
            ops_address,
            audit,
            limits,
        })
    }

    fn authentication(&self, raw: RawAuthentication) -> Result<Authentication, ConfigError> {
        let webhook = raw.webhook.unwrap_or_default();
        let audiences = webhook.audiences.unwrap_or_default();
        if let Some(i) = audiences.iter().position(String::is_empty) {
            return Err(self.error_at(
                "authentication.webhook.audiences",
                &format!("authentication.webhook.audiences[{i}]"),
                "an audience must not be empty",
            ));
        }
        Ok(Authentication {
            client_ca_file: self.opt_path(raw.x509.and_then(|x| x.client_ca_file)),
            webhook: TokenWebhook {
                enabled: webhook.enabled.unwrap_or(true),
                cache_ttl: self.duration(
                    "authentication.webhook.cacheTTL",
                    webhook.cache_ttl,
                    Duration::from_secs(120),
                )?,
                audiences,
            },
            anonymous: raw.anonymous.and_then(|a| a.enabled).unwrap_or(false),
            token_file: self.opt_path(raw.token_file),
        })
    }

    fn authorization(&self, raw: RawAuthorization) -> Result<Authorization, ConfigError> {
        let mode = match raw.mode.as_deref() {
            None | Some("Webhook") => AuthorizationMode::Webhook,
            Some("RBAC") => AuthorizationMode::Rbac,
            Some("AlwaysAllow") => AuthorizationMode::AlwaysAllow,
            Some("") => {
                return Err(self.error("authorization.mode", "no authorization mode specified"));
            }
            Some(other) => {
                return Err(self.error(
                    "authorization.mode",
                    format!("unknown authorization mode {other} (valid: Webhook, RBAC, AlwaysAllow)"),
                ));
            }
        };
        let webhook = raw.webhook.unwrap_or_default();
        let files = raw.rbac.and_then(|r| r.policy_files).unwrap_or_default();
        let mut rbac_policy_files = Vec::with_capacity(files.len());
        for (i, file) in files.iter().enumerate() {
            if file.is_empty() {
                return Err(self.error_at(
                    "authorization.rbac.policyFiles",
                    &format!("authorization.rbac.policyFiles[{i}]"),
                    "a policy file name must not be empty",
                ));
            }
            rbac_policy_files.push(self.path(file));
        }
        Ok(Authorization {
            mode,
            cache_authorized_ttl: self.duration(
                "authorization.webhook.cacheAuthorizedTTL",
                webhook.cache_authorized_ttl,
                Duration::from_secs(300),
            )?,
            cache_unauthorized_ttl: self.duration(
                "authorization.webhook.cacheUnauthorizedTTL",
                webhook.cache_unauthorized_ttl,
                Duration::from_secs(30),
            )?,
            rbac_policy_files,
            exec_requires_create: raw.exec_requires_create.unwrap_or(true),
        })
    }

    fn upstream(&self, raw: RawUpstream) -> Result<Upstream, ConfigError> {
        let connect_timeout = self.duration(
            "upstream.connectTimeout",
            raw.connect_timeout,
            DEFAULT_UPSTREAM_CONNECT_TIMEOUT,
        )?;
        let response_header_timeout = self.duration(
            "upstream.responseHeaderTimeout",
            raw.response_header_timeout,
            DEFAULT_UPSTREAM_RESPONSE_HEADER_TIMEOUT,
        )?;
        let stream_idle_timeout = self.duration(
            "upstream.streamIdleTimeout",
            raw.stream_idle_timeout,
            DEFAULT_STREAM_IDLE_TIMEOUT,
        )?;
        for (field, d) in [
            ("upstream.connectTimeout", connect_timeout),
            ("upstream.responseHeaderTimeout", response_header_timeout),
            ("upstream.streamIdleTimeout", stream_idle_timeout),
        ] {
            if d.is_zero() {
                return Err(self.error(field, "must be greater than 0s".to_owned()));
            }
        }
        let secure = match raw.secure {
            Some(s)
                if [&s.url, &s.ca_file, &s.cert_file, &s.key_file]
                    .iter()
                    .any(|v| v.as_deref().is_some_and(|v| !v.is_empty())) =>
            {
                Some(self.secure_upstream(s)?)
            }
            _ => None,
        };
        // Absent: the default read-only port. Empty: none, only with the secure upstream (every
        // forwarded endpoint then goes there, so a node with `readOnlyPort: 0` works).
        let read_only = match raw.read_only.as_deref() {
            None => {
                Some(upstream_url(DEFAULT_READ_ONLY_UPSTREAM, "http").map_err(|m| self.error("upstream.readOnly", m))?)
            }
            Some("") if secure.is_some() => None,
            Some("") => {
                return Err(self.error(
                    "upstream.readOnly",
                    "may be empty only when upstream.secure is set (something must serve the read-only endpoints)",
                ));
            }
            Some(text) => Some(upstream_url(text, "http").map_err(|m| self.error("upstream.readOnly", m))?),
        };
        Ok(Upstream {
            read_only,
            connect_timeout,
            response_header_timeout,
            stream_idle_timeout,
            secure,
        })
    }

    /// `upstream.secure`: the kubelet's own port, with the CA of its serving certificate and the
    /// gateway's client certificate, all required (the kubelet authenticates every caller).
    fn secure_upstream(&self, raw: RawSecureUpstream) -> Result<SecureUpstream, ConfigError> {
        let required = |field: &str, value: Option<String>, what: &str| {
            non_empty(value).ok_or_else(|| {
                self.error_at(
                    &format!("upstream.secure.{field}"),
                    "upstream.secure",
                    format!("required with upstream.secure: {what}"),
                )
            })
        };
        let url = required("url", raw.url, "the kubelet's own port, e.g. https://127.0.0.1:10250")?;
        let url = upstream_url(&url, "https").map_err(|m| self.error("upstream.secure.url", m))?;
        let ca = required(
            "caFile",
            raw.ca_file,
            "the CA that signed the kubelet's serving certificate",
        )?;
        let cert = required(
            "certFile",
            raw.cert_file,
            "the gateway's client certificate for the kubelet",
        )?;
        let key = required("keyFile", raw.key_file, "the key of certFile")?;
        Ok(SecureUpstream {
            url,
            ca_file: self.path(&ca),
            cert_file: self.path(&cert),
            key_file: self.path(&key),
        })
    }
}

/// Parses an upstream base URL: `scheme://host[:port]` with at most a `/` path, because the
/// request path is appended verbatim and must be exactly the path that was authorized.
pub(super) fn upstream_url(text: &str, scheme: &str) -> Result<http::Uri, String> {
    let uri = text
        .parse::<http::Uri>()
        .map_err(|e| format!("invalid URL {text:?}: {e}"))?;
    if uri.scheme_str() != Some(scheme) {
        return Err(format!("{text:?} must be a {scheme}:// URL"));
    }
    let authority = uri
        .authority()
        .filter(|a| !a.host().is_empty())
        .ok_or_else(|| format!("{text:?} has no host"))?;
    if authority.as_str().contains('@') {
        return Err(format!("{text:?} must not contain user information"));
    }
    if let Some(port) = authority.as_str()[authority.host().len()..].strip_prefix(':')
        && !matches!(port.parse::<u16>(), Ok(p) if p != 0)
    {
        return Err(format!("{text:?} has an invalid port"));
    }
    if uri.query().is_some() {
        return Err(format!("{text:?} must not have a query"));
    }
    if !matches!(uri.path(), "" | "/") || text.contains('#') {
        return Err(format!("{text:?} must not have a path"));
    }
    format!("{scheme}://{authority}/")
        .parse::<http::Uri>()
        .map_err(|e| format!("invalid URL {text:?}: {e}"))
}

/// An upstream URL's address when its host is an IP literal or `localhost`, with the scheme's
/// port when it names none.
fn ip_target(url: &http::Uri) -> Option<SocketAddr> {
    let host = url.host()?;
    let ip = match host.trim_start_matches('[').trim_end_matches(']') {
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        literal => literal.parse().ok()?,
    };
    let port = url
        .port_u16()
        .unwrap_or(if url.scheme_str() == Some("https") { 443 } else { 80 });
    Some(SocketAddr::new(ip, port))
}

pub(super) fn addresses_overlap(a: IpAddr, b: IpAddr) -> bool {
    a == b || a.is_unspecified() || b.is_unspecified()
}

/// The kubelet's default node name: the host name, lower-cased.
pub(super) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_ascii_lowercase())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// An RFC 1123 subdomain as Kubernetes validates object names: lower-case labels of letters,
/// digits and inner hyphens, 253 characters at most.
pub(super) fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            let bytes = label.as_bytes();
            !bytes.is_empty()
                && bytes.len() <= 63
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
                && bytes.first() != Some(&b'-')
                && bytes.last() != Some(&b'-')
        })
}
