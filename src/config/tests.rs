//! Unit tests of the configuration: parsing, defaults, validation and error locations.
use super::validate::*;
use super::*;

const HEAD: &str = "apiVersion: kubelet-gate/v1alpha1\nkind: GatewayConfiguration\n";

fn addr<T: std::str::FromStr<Err: fmt::Debug>>(text: &str) -> T {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e:?}"))
}

fn base() -> &'static Path {
    Path::new("/etc/kubelet-gate")
}

fn parse(body: &str) -> Config {
    let text = format!("{HEAD}{body}");
    Config::from_yaml(&text, base()).unwrap_or_else(|e| panic!("{e}\n---\n{text}"))
}

fn fail(body: &str) -> ConfigError {
    let text = format!("{HEAD}{body}");
    match Config::from_yaml(&text, base()) {
        Ok(c) => panic!("accepted:\n{text}\n{c:?}"),
        Err(e) => e,
    }
}

/// Asserts field, line and message fragment, and that Display is one line.
fn assert_error(e: &ConfigError, field: &str, line: Option<usize>, fragment: &str) {
    let shown = e.to_string();
    assert_eq!(e.field(), Some(field), "{shown}");
    assert_eq!(e.line(), line, "{shown}");
    assert!(shown.contains(fragment), "{shown:?} lacks {fragment:?}");
    assert!(shown.contains(field), "{shown:?} lacks {field:?}");
    if let Some(line) = line {
        assert!(shown.starts_with(&format!("<config>:{line}: {field}: ")), "{shown}");
    }
    assert!(!shown.contains('\n'), "{shown:?}");
}

#[test]
fn defaults_of_minimal_document() {
    let c = parse("");
    assert_eq!(c.node_name, host_name());
    assert!(!c.node_name.is_empty());
    assert_eq!(c.listen, addr("0.0.0.0:10250"));
    assert_eq!(c.cert_dir, PathBuf::from("/var/lib/kubelet-gate/pki"));
    assert_eq!(c.serving_cert, ServingCert::SelfSigned);
    assert_eq!(c.tls_min_version, TlsVersion::Tls12);
    assert!(c.tls_cipher_suites.is_empty());
    assert!(c.node_addresses.is_empty());
    assert_eq!(c.kubeconfig, None);
    assert_eq!(
        c.api_server,
        ApiServer {
            request_timeout: Duration::from_secs(5),
            max_in_flight: 64,
            stale_if_error: Duration::ZERO,
        }
    );
    assert_eq!(
        c.authentication,
        Authentication {
            client_ca_file: None,
            webhook: TokenWebhook {
                enabled: true,
                cache_ttl: Duration::from_secs(120),
                audiences: vec![],
            },
            anonymous: false,
            token_file: None,
        }
    );
    assert_eq!(
        c.authorization,
        Authorization {
            mode: AuthorizationMode::Webhook,
            cache_authorized_ttl: Duration::from_secs(300),
            cache_unauthorized_ttl: Duration::from_secs(30),
            rbac_policy_files: vec![],
            exec_requires_create: true,
        }
    );
    assert!(c.fine_grained_authz);
    assert_eq!(url_text(&c.upstream.read_only), "http://127.0.0.1:10255");
    assert_eq!(c.upstream.secure, None);
    assert_eq!(c.logs.node_log_dir, PathBuf::from("/var/log"));
    assert_eq!(c.logs.pod_log_dir, PathBuf::from("/var/log/pods"));
    assert_eq!(c.ops_address, addr("127.0.0.1:10251"));
    assert_eq!(c.audit, None);
}

#[test]
fn empty_strings_mean_default() {
    let c = parse(concat!(
        "nodeName: \"\"\naddress: \"\"\ncertDir: \"\"\ntlsCertFile: \"\"\n",
        "tlsPrivateKeyFile: \"\"\ntlsMinVersion: \"\"\nkubeconfig: \"\"\n",
        "apiServer: {requestTimeout: \"\", staleIfError: \"\"}\n",
        "upstream: {readOnly: \"\", secure: {url: \"\", caFile: \"\", certFile: \"\", keyFile: \"\"}}\n",
        "ops: {address: \"\"}\naudit: {path: \"\"}\n",
    ));
    assert_eq!(c, parse(""));
}

const FULL: &str = r#"nodeName: node-a
address: 10.0.0.5
port: 10443
certDir: pki
tlsCertFile: /etc/tls/serving.crt
tlsPrivateKeyFile: /etc/tls/serving.key
serverTLSBootstrap: false
tlsMinVersion: VersionTLS13
tlsCipherSuites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305, TLS_AES_128_GCM_SHA256]
nodeAddresses: [10.0.0.5, "fd00::5", Node-A.Example.com]
kubeconfig: /etc/kubernetes/kubelet.conf
apiServer: {requestTimeout: 10s, maxInFlight: 8, staleIfError: 1m}
authentication:
  x509: {clientCAFile: /etc/kubernetes/pki/ca.crt}
  webhook: {enabled: false, cacheTTL: 1m30s, audiences: [https://kubernetes.default.svc]}
  anonymous: {enabled: true}
  tokenFile: tokens.csv
authorization:
  mode: RBAC
  webhook: {cacheAuthorizedTTL: 10m, cacheUnauthorizedTTL: 5s}
  rbac: {policyFiles: [policy/roles.yaml, /srv/bindings.yaml]}
  execRequiresCreate: false
featureGates: {KubeletFineGrainedAuthz: false}
upstream:
  readOnly: http://localhost:10255/
  secure: {url: "https://127.0.0.1:10250", caFile: ca.crt, certFile: client.crt, keyFile: client.key}
logs:
  nodeLogDir: logs/node
  podLogDir: /srv/pods
ops:
  address: "[::1]:9000"
audit:
  path: audit.log
"#;

#[test]
fn every_field_parsed() {
    let c = parse(FULL);
    let p = PathBuf::from;
    assert_eq!(c.node_name, "node-a");
    assert_eq!(c.listen, addr("10.0.0.5:10443"));
    assert_eq!(c.cert_dir, p("/etc/kubelet-gate/pki"));
    assert_eq!(
        c.serving_cert,
        ServingCert::Files {
            cert: p("/etc/tls/serving.crt"),
            key: p("/etc/tls/serving.key"),
        }
    );
    assert_eq!(c.tls_min_version, TlsVersion::Tls13);
    assert_eq!(
        c.tls_cipher_suites,
        vec![
            CipherSuiteName::EcdheRsaWithAes128GcmSha256,
            CipherSuiteName::EcdheEcdsaWithChacha20Poly1305Sha256,
            CipherSuiteName::Tls13Aes128GcmSha256,
        ]
    );
    assert_eq!(
        c.node_addresses,
        vec![
            NodeAddress::Ip(addr::<IpAddr>("10.0.0.5")),
            NodeAddress::Ip(addr::<IpAddr>("fd00::5")),
            NodeAddress::Dns("node-a.example.com".into()),
        ]
    );
    assert_eq!(c.kubeconfig, Some(p("/etc/kubernetes/kubelet.conf")));
    assert_eq!(
        c.api_server,
        ApiServer {
            request_timeout: Duration::from_secs(10),
            max_in_flight: 8,
            stale_if_error: Duration::from_secs(60),
        }
    );
    assert_eq!(
        c.authentication,
        Authentication {
            client_ca_file: Some(p("/etc/kubernetes/pki/ca.crt")),
            webhook: TokenWebhook {
                enabled: false,
                cache_ttl: Duration::from_secs(90),
                audiences: vec!["https://kubernetes.default.svc".into()],
            },
            anonymous: true,
            token_file: Some(p("/etc/kubelet-gate/tokens.csv")),
        }
    );
    assert_eq!(
        c.authorization,
        Authorization {
            mode: AuthorizationMode::Rbac,
            cache_authorized_ttl: Duration::from_secs(600),
            cache_unauthorized_ttl: Duration::from_secs(5),
            rbac_policy_files: vec![p("/etc/kubelet-gate/policy/roles.yaml"), p("/srv/bindings.yaml")],
            exec_requires_create: false,
        }
    );
    assert!(!c.fine_grained_authz);
    assert_eq!(url_text(&c.upstream.read_only), "http://localhost:10255");
    let secure = c.upstream.secure.as_ref();
    assert_eq!(
        secure.map(|s| url_text(&s.url)).as_deref(),
        Some("https://127.0.0.1:10250")
    );
    assert_eq!(
        secure.and_then(|s| s.ca_file.clone()),
        Some(p("/etc/kubelet-gate/ca.crt"))
    );
    assert_eq!(
        secure.and_then(|s| s.cert_file.clone()),
        Some(p("/etc/kubelet-gate/client.crt"))
    );
    assert_eq!(
        secure.and_then(|s| s.key_file.clone()),
        Some(p("/etc/kubelet-gate/client.key"))
    );
    assert_eq!(
        c.logs,
        Logs {
            node_log_dir: p("/etc/kubelet-gate/logs/node"),
            pod_log_dir: p("/srv/pods"),
        }
    );
    assert_eq!(c.ops_address, addr("[::1]:9000"));
    assert_eq!(c.audit, Some(AuditSink::File(p("/etc/kubelet-gate/audit.log"))));
}

#[test]
fn product_md_example_parses() {
    let c = parse(concat!(
        "nodeName: node-a\naddress: 0.0.0.0\nport: 10250\ncertDir: /var/lib/kubelet-gate/pki\n",
        "tlsCertFile: \"\"\ntlsPrivateKeyFile: \"\"\nserverTLSBootstrap: false\n",
        "tlsMinVersion: VersionTLS12\ntlsCipherSuites: []\nnodeAddresses: []\n",
        "kubeconfig: /etc/kubernetes/kubelet.conf\n",
        "apiServer: {requestTimeout: 5s, maxInFlight: 64, staleIfError: 0s}\n",
        "authentication:\n  x509: {clientCAFile: /etc/kubernetes/pki/ca.crt}\n",
        "  webhook: {enabled: true, cacheTTL: 2m, audiences: []}\n",
        "  anonymous: {enabled: false}\n  tokenFile: \"\"\n",
        "authorization:\n  mode: Webhook\n",
        "  webhook: {cacheAuthorizedTTL: 5m, cacheUnauthorizedTTL: 30s}\n",
        "  rbac: {policyFiles: []}\n  execRequiresCreate: true\n",
        "featureGates: {KubeletFineGrainedAuthz: true}\n",
        "upstream:\n  readOnly: http://127.0.0.1:10255\n",
        "  secure: {url: \"\", caFile: \"\", certFile: \"\", keyFile: \"\"}\n",
        "logs:\n  nodeLogDir: /var/log\n  podLogDir: /var/log/pods\n",
        "ops:\n  address: 127.0.0.1:10251\naudit:\n  path: \"\"\n",
    ));
    assert_eq!(c.node_name, "node-a");
    assert_eq!(
        c.authentication.client_ca_file,
        Some(PathBuf::from("/etc/kubernetes/pki/ca.crt"))
    );
    assert_eq!(
        Config {
            node_name: c.node_name.clone(),
            ..parse("")
        }
        .authorization,
        c.authorization
    );
}

#[test]
fn durations_in_each_field() {
    let c = parse(concat!(
        "apiServer: {requestTimeout: 1.5s, staleIfError: 0}\n",
        "authentication: {webhook: {cacheTTL: 5m0s}}\n",
        "authorization: {webhook: {cacheAuthorizedTTL: 1h30m, cacheUnauthorizedTTL: 500ms}}\n",
    ));
    assert_eq!(c.api_server.request_timeout, Duration::from_millis(1500));
    assert_eq!(c.api_server.stale_if_error, Duration::ZERO);
    assert_eq!(c.authentication.webhook.cache_ttl, Duration::from_secs(300));
    assert_eq!(c.authorization.cache_authorized_ttl, Duration::from_secs(5400));
    assert_eq!(c.authorization.cache_unauthorized_ttl, Duration::from_millis(500));

    let e = fail("authentication:\n  webhook:\n    cacheTTL: 2 minutes\n");
    assert_error(
        &e,
        "authentication.webhook.cacheTTL",
        Some(5),
        "<config>:5: authentication.webhook.cacheTTL: invalid duration \"2 minutes\"",
    );
    let e = fail("apiServer: {staleIfError: -1s}\n");
    assert_error(&e, "apiServer.staleIfError", Some(3), "negative");
    let e = fail("apiServer: {requestTimeout: 0s}\n");
    assert_error(&e, "apiServer.requestTimeout", Some(3), "greater than 0s");
    let e = fail("authorization:\n  webhook:\n    cacheUnauthorizedTTL: 30\n");
    assert_error(
        &e,
        "authorization.webhook.cacheUnauthorizedTTL",
        Some(5),
        "missing unit",
    );
}

#[test]
fn unknown_top_level_field() {
    let e = fail("port: 10250\nlisten: 0.0.0.0\n");
    assert_error(&e, "listen", Some(4), "unknown field \"listen\"");
    assert!(matches!(e, ConfigError::Parse { .. }));
}

#[test]
fn unknown_nested_field_block_and_flow() {
    let e = fail("authentication:\n  webhook:\n    enabled: true\n    cachettl: 2m\n");
    assert_error(
        &e,
        "authentication.webhook.cachettl",
        Some(6),
        "expected one of: enabled, cacheTTL, audiences",
    );
    let e = fail("port: 1\n\nauthorization: {webhook: {cacheAuthorizedTTL: 5m, cacheDeniedTTL: 1s}}\n");
    assert_error(&e, "authorization.webhook.cacheDeniedTTL", Some(5), "unknown field");
    let e = fail("upstream:\n  secure:\n    url: \"\"\n    caFIle: x\n");
    assert_error(&e, "upstream.secure.caFIle", Some(6), "unknown field");
}

#[test]
fn unknown_feature_gate() {
    let e = fail("featureGates:\n  KubeletFineGrainedAuthz: true\n  RotateKubeletServerCertificate: true\n");
    assert_error(
        &e,
        "featureGates.RotateKubeletServerCertificate",
        Some(5),
        "unrecognized feature gate: RotateKubeletServerCertificate",
    );
    let e = fail("featureGates: {KubeletFineGrainedAuthz: sometimes}\n");
    assert_error(&e, "featureGates.KubeletFineGrainedAuthz", Some(3), "true or false");
}

#[test]
fn ill_typed_values() {
    let e = fail("nodeName: n\nport: abc\n");
    assert_error(&e, "port", Some(4), "invalid value \"abc\": expected an integer");
    let e = fail("authentication:\n  anonymous:\n    enabled: [true]\n");
    assert_error(
        &e,
        "authentication.anonymous.enabled",
        Some(5),
        "authentication.anonymous.enabled",
    );
    let e = fail("tlsCipherSuites: TLS_AES_128_GCM_SHA256\n");
    assert_error(&e, "tlsCipherSuites", Some(3), "tlsCipherSuites");
    let e = fail("nodeAddresses:\n- 10.0.0.1\n- {ip: 10.0.0.2}\n");
    assert_error(&e, "nodeAddresses[1]", Some(5), "nodeAddresses[1]");
    let e = fail("logs: /var/log\n");
    assert_error(&e, "logs", Some(3), "logs");
}

#[test]
fn syntax_error_has_line() {
    let e = fail("port: 10250\nauthentication: {webhook: [\n");
    assert!(matches!(e, ConfigError::Parse { .. }), "{e}");
    assert!(e.line().is_some(), "{e}");
    assert!(!e.to_string().contains('\n'));
    let e = fail("port: 1\nport: 2\n");
    assert_eq!(e.line(), Some(4), "{e}");
    assert_eq!(e.field(), Some("port"), "{e}");
}

#[test]
fn api_version_and_kind() {
    let text = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: GatewayConfiguration\n";
    let e = Config::from_yaml(text, base()).err();
    let e = e.as_ref().map(ToString::to_string);
    assert_eq!(
        e.as_deref(),
        Some(
            "<config>:1: apiVersion: unsupported value \"kubelet.config.k8s.io/v1beta1\"; must be \"kubelet-gate/v1alpha1\""
        )
    );
    let e = Config::from_yaml("kind: GatewayConfiguration\n", base()).err();
    let e = e.as_ref().map(ToString::to_string);
    assert_eq!(
        e.as_deref(),
        Some("<config>: apiVersion: missing; must be \"kubelet-gate/v1alpha1\"")
    );
    let e = Config::from_yaml(
        "apiVersion: kubelet-gate/v1alpha1\nkind: KubeletConfiguration\n",
        base(),
    );
    let e = e.err();
    assert_eq!(e.as_ref().and_then(ConfigError::field), Some("kind"));
    assert_eq!(e.as_ref().and_then(ConfigError::line), Some(2));
    assert!(Config::from_yaml("", base()).is_err());
}

#[test]
fn authorization_modes() {
    let mode = |m: &str| parse(&format!("authorization: {{mode: {m}}}\n")).authorization.mode;
    assert_eq!(mode("Webhook"), AuthorizationMode::Webhook);
    assert_eq!(mode("RBAC"), AuthorizationMode::Rbac);
    assert_eq!(mode("AlwaysAllow"), AuthorizationMode::AlwaysAllow);
    // RBAC without policy files: built-in roles only.
    assert!(
        parse("authorization: {mode: RBAC}\n")
            .authorization
            .rbac_policy_files
            .is_empty()
    );
    let e = fail("authorization:\n  mode: \"\"\n");
    assert_error(&e, "authorization.mode", Some(4), "no authorization mode specified");
    for bad in ["Rbac", "webhook", "Node", "Webhook,RBAC"] {
        let e = fail(&format!("authorization:\n  mode: \"{bad}\"\n"));
        assert_error(
            &e,
            "authorization.mode",
            Some(4),
            &format!("unknown authorization mode {bad}"),
        );
    }
}

#[test]
fn relative_paths_resolve_against_config_dir() {
    let c = Config::from_yaml(
        &format!(
            "{HEAD}certDir: ./pki/\nlogs: {{nodeLogDir: ../logs}}\nkubeconfig: a/./b.conf\naudit: {{path: \"-\"}}\n"
        ),
        Path::new("/srv/gate/config"),
    );
    let c = c.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.cert_dir, PathBuf::from("/srv/gate/config/pki"));
    assert_eq!(c.logs.node_log_dir, PathBuf::from("/srv/gate/config/../logs"));
    assert_eq!(c.kubeconfig, Some(PathBuf::from("/srv/gate/config/a/b.conf")));
    assert_eq!(c.audit, Some(AuditSink::Stdout));
    assert_eq!(c.logs.pod_log_dir, PathBuf::from("/var/log/pods"));
}

#[test]
fn load_reads_file_and_names_it() {
    let dir = std::env::temp_dir().join(format!("kubelet-gate-config-test-{}", std::process::id()));
    let write = |name: &str, text: &str| {
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
        path
    };
    let good = write(
        "good.yaml",
        &format!("{HEAD}authentication: {{tokenFile: tokens.csv}}\n"),
    );
    let c = Config::load(&good).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.authentication.token_file, Some(dir.join("tokens.csv")));
    let bad = write("bad.yaml", &format!("{HEAD}port: 0\n"));
    let e = Config::load(&bad).err().map(|e| e.to_string());
    assert_eq!(
        e,
        Some(format!(
            "{}:3: port: port (--port) 0 must be between 1 and 65535, inclusive",
            bad.display()
        ))
    );
    let missing = dir.join("missing.yaml");
    let e = Config::load(&missing).err();
    assert!(matches!(e, Some(ConfigError::Read { .. })));
    assert_eq!(e.as_ref().and_then(ConfigError::line), None);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn port_range() {
    assert_eq!(parse("port: 1\n").listen.port(), 1);
    assert_eq!(parse("port: 65535\n").listen.port(), 65535);
    for bad in ["0", "65536", "-1"] {
        let e = fail(&format!("port: {bad}\n"));
        assert_error(
            &e,
            "port",
            Some(3),
            &format!("port (--port) {bad} must be between 1 and 65535, inclusive"),
        );
    }
    assert_error(&fail("address: localhost\n"), "address", Some(3), "not an IP address");
    assert_eq!(parse("address: \"::\"\n").listen, addr("[::]:10250"));
}

#[test]
fn cipher_suites() {
    let c = parse(
        "tlsCipherSuites:\n- TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256\n- TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305\n",
    );
    assert_eq!(
        c.tls_cipher_suites,
        vec![CipherSuiteName::EcdheEcdsaWithChacha20Poly1305Sha256]
    );
    for suite in CipherSuiteName::ALL {
        assert_eq!(CipherSuiteName::from_go_name(suite.go_name()), Some(suite));
    }
    assert_eq!(CipherSuiteName::ALL.iter().filter(|s| s.is_tls13()).count(), 3);
    for suite in CipherSuiteName::ALL {
        // rustls spells the TLS 1.3 suites TLS13_*, Go spells them TLS_*.
        let want = suite
            .go_name()
            .replacen("TLS_", if suite.is_tls13() { "TLS13_" } else { "TLS_" }, 1);
        assert_eq!(suite.rustls_suite().and_then(|id| id.as_str()), Some(want.as_str()));
    }
    let e = fail("tlsCipherSuites:\n- TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\n- TLS_RSA_WITH_AES_128_CBC_SHA\n");
    assert_error(
        &e,
        "tlsCipherSuites",
        Some(5),
        "tlsCipherSuites: cipher suite TLS_RSA_WITH_AES_128_CBC_SHA is not supported by kubelet-gate (insecure)",
    );
    let e = fail("tlsCipherSuites: [TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA]\n");
    assert_error(&e, "tlsCipherSuites", Some(3), "(insecure)");
    let e = fail("tlsCipherSuites:\n- TLS_FANCY\n");
    assert_error(
        &e,
        "tlsCipherSuites",
        Some(4),
        "tlsCipherSuites: cipher suite TLS_FANCY not supported or doesn't exist",
    );
}

#[test]
fn tls_versions() {
    assert_eq!(
        parse("tlsMinVersion: VersionTLS12\n").tls_min_version,
        TlsVersion::Tls12
    );
    assert_eq!(
        parse("tlsMinVersion: VersionTLS13\n").tls_min_version,
        TlsVersion::Tls13
    );
    for old in ["VersionTLS10", "VersionTLS11"] {
        let e = fail(&format!("tlsMinVersion: {old}\n"));
        assert_error(
            &e,
            "tlsMinVersion",
            Some(3),
            &format!("tlsMinVersion: {old} is not supported; the minimum is VersionTLS12"),
        );
    }
    let e = fail("tlsMinVersion: TLS1.3\n");
    assert_error(&e, "tlsMinVersion", Some(3), "VersionTLS12, VersionTLS13");
}

#[test]
fn serving_cert_sources() {
    let e = fail("certDir: /x\ntlsCertFile: a.crt\n");
    assert_error(
        &e,
        "tlsCertFile",
        Some(4),
        "tlsCertFile is set but tlsPrivateKeyFile is not",
    );
    let e = fail("tlsPrivateKeyFile: a.key\n");
    assert_error(
        &e,
        "tlsPrivateKeyFile",
        Some(3),
        "tlsPrivateKeyFile is set but tlsCertFile is not",
    );
    assert_eq!(
        parse("serverTLSBootstrap: true\n").serving_cert,
        ServingCert::Bootstrap { fallback: None }
    );
    let c = parse("serverTLSBootstrap: true\ntlsCertFile: a.crt\ntlsPrivateKeyFile: a.key\n");
    assert_eq!(
        c.serving_cert,
        ServingCert::Bootstrap {
            fallback: Some((
                PathBuf::from("/etc/kubelet-gate/a.crt"),
                PathBuf::from("/etc/kubelet-gate/a.key")
            ))
        }
    );
    let e = fail("upstream: {secure: {url: \"https://h\", keyFile: k}}\n");
    assert_error(
        &e,
        "upstream.secure.keyFile",
        Some(3),
        "upstream.secure.keyFile is set but upstream.secure.certFile is not",
    );
}

#[test]
fn upstream_urls() {
    let ok = |s: &str| upstream_url(s, "http").map(|u| url_text(&u));
    assert_eq!(ok("http://127.0.0.1:10255").as_deref(), Ok("http://127.0.0.1:10255"));
    assert_eq!(ok("http://node/").as_deref(), Ok("http://node"));
    assert_eq!(ok("http://[fd00::1]:10255").as_deref(), Ok("http://[fd00::1]:10255"));
    for bad in [
        "https://h:1",
        "127.0.0.1:10255",
        "http://u:p@h:1",
        "http://h:1/stats",
        "http://h:1/?x=1",
        "http://h:0",
        "http://h:99999",
        "http://h:1/#f",
        "http://",
    ] {
        assert!(ok(bad).is_err(), "{bad} accepted");
    }
    let e = fail("upstream:\n  readOnly: https://127.0.0.1:10250\n");
    assert_error(&e, "upstream.readOnly", Some(4), "must be a http:// URL");
    let e = fail("upstream: {secure: {url: \"http://127.0.0.1:10250\"}}\n");
    assert_error(&e, "upstream.secure.url", Some(3), "must be a https:// URL");
    let e = fail("upstream: {secure: {caFile: ca.crt}}\n");
    assert_error(&e, "upstream.secure.url", Some(3), "url is empty");
}

#[test]
fn other_cross_field_checks() {
    let e = fail("apiServer:\n  maxInFlight: 0\n");
    assert_error(&e, "apiServer.maxInFlight", Some(4), "0 must be at least 1");
    let e = fail("port: 9000\nops: {address: \"127.0.0.1:9000\"}\n");
    assert_error(&e, "ops.address", Some(4), "conflicts");
    let e = fail("ops: {address: localhost:1}\n");
    assert_error(&e, "ops.address", Some(3), "IP:port");
    let e = fail("nodeName: Node_A\n");
    assert_error(&e, "nodeName", Some(3), "not a valid node name");
    let e = fail("nodeAddresses: [10.0.0.1, \"bad name\"]\n");
    assert_error(
        &e,
        "nodeAddresses",
        Some(3),
        "\"bad name\" is neither an IP address nor a DNS name",
    );
    let e = fail("authorization:\n  rbac:\n    policyFiles:\n    - a.yaml\n    - \"\"\n");
    assert_error(&e, "authorization.rbac.policyFiles", Some(7), "must not be empty");
    assert!(is_dns_subdomain("node-a.example.com"));
    assert!(!is_dns_subdomain("-a"));
    assert!(!is_dns_subdomain("a..b"));
    assert!(!is_dns_subdomain(&"a".repeat(64)));
}

#[test]
fn to_yaml_round_trips() {
    for body in [
        FULL,
        "",
        "serverTLSBootstrap: true\ntlsCertFile: a\ntlsPrivateKeyFile: b\naudit: {path: \"-\"}\nupstream: {secure: {url: \"https://[::1]:10250\"}}\n",
    ] {
        let c = parse(body);
        let yaml = c.to_yaml();
        let back = Config::from_yaml(&yaml, Path::new("/somewhere/else")).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        assert_eq!(back, c, "{yaml}");
    }
    let yaml = parse("").to_yaml();
    assert!(
        yaml.starts_with("apiVersion: kubelet-gate/v1alpha1\nkind: GatewayConfiguration\n"),
        "{yaml}"
    );
    for key in [
        "cacheTTL: 2m0s",
        "readOnly: http://127.0.0.1:10255",
        "mode: Webhook",
        "KubeletFineGrainedAuthz: true",
        "port: 10250",
    ] {
        assert!(yaml.contains(key), "{key} missing from\n{yaml}");
    }
}
