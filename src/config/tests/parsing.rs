//! From YAML to the typed `Config`: the defaults, every field, durations, paths relative to the
//! configuration's directory, `load` naming the file in its errors, and the `to_yaml` round trip.

use super::*;

#[test]
fn defaults_of_minimal_document() {
    let c = parse("");
    assert_eq!(c.node_name, host_name());
    assert!(!c.node_name.is_empty());
    assert_eq!(c.listen, addr("0.0.0.0:10250"));
    assert_eq!(c.cert_dir, PathBuf::from("/var/lib/kubelet-gate/pki"));
    assert_eq!(c.serving_cert, ServingCertSource::SelfSigned);
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
    assert_eq!(
        c.upstream.read_only.as_ref().map(url_text).as_deref(),
        Some("http://127.0.0.1:10255")
    );
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
        "upstream: {secure: {url: \"\", caFile: \"\", certFile: \"\", keyFile: \"\"}}\n",
        "ops: {address: \"\"}\naudit: {path: \"\"}\n",
    ));
    assert_eq!(c, parse(""));
}

/// The one empty string that is not the default: no read-only port, the secure one serving
/// every forwarded endpoint (a node with `readOnlyPort: 0`).
#[test]
fn an_empty_read_only_port_is_none_and_needs_the_secure_one() {
    let c = parse(
        "upstream:\n  readOnly: \"\"\n  secure: {url: \"https://127.0.0.1:10260\", caFile: ca.crt, certFile: c.crt, keyFile: c.key}\n",
    );
    assert_eq!(c.upstream.read_only, None);
    assert!(c.upstream.secure.is_some());
    assert_eq!(c.upstream.stream_idle_timeout, Duration::from_secs(4 * 3600));
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
        ServingCertSource::Files {
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
    assert_eq!(
        c.upstream.read_only.as_ref().map(url_text).as_deref(),
        Some("http://localhost:10255")
    );
    let secure = c.upstream.secure.as_ref();
    assert_eq!(
        secure.map(|s| url_text(&s.url)).as_deref(),
        Some("https://127.0.0.1:10250")
    );
    assert_eq!(secure.map(|s| s.ca_file.clone()), Some(p("/etc/kubelet-gate/ca.crt")));
    assert_eq!(
        secure.map(|s| s.cert_file.clone()),
        Some(p("/etc/kubelet-gate/client.crt"))
    );
    assert_eq!(
        secure.map(|s| s.key_file.clone()),
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
fn to_yaml_round_trips() {
    for body in [
        FULL,
        "",
        "serverTLSBootstrap: true\ntlsCertFile: a\ntlsPrivateKeyFile: b\naudit: {path: \"-\"}\nupstream: {readOnly: \"\", streamIdleTimeout: 5m, secure: {url: \"https://[::1]:10260\", caFile: ca, certFile: c, keyFile: k}}\n",
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
