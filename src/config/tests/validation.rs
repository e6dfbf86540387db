//! The checks after parsing, field by field and across fields: authorization modes, the port,
//! cipher suites and TLS versions, serving-certificate sources, upstream URLs, and the rest.

use super::*;

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
        ServingCertSource::Bootstrap { fallback: None }
    );
    let c = parse("serverTLSBootstrap: true\ntlsCertFile: a.crt\ntlsPrivateKeyFile: a.key\n");
    assert_eq!(
        c.serving_cert,
        ServingCertSource::Bootstrap {
            fallback: Some((
                PathBuf::from("/etc/kubelet-gate/a.crt"),
                PathBuf::from("/etc/kubelet-gate/a.key")
            ))
        }
    );
    // The kubelet authenticates every caller: without all four the secure upstream cannot work.
    let e = fail("upstream: {secure: {url: \"https://h\", caFile: ca, keyFile: k}}\n");
    assert_error(
        &e,
        "upstream.secure.certFile",
        Some(3),
        "required with upstream.secure: the gateway's client certificate for the kubelet",
    );
    let e = fail("upstream: {secure: {url: \"https://h\", certFile: c, keyFile: k}}\n");
    assert_error(
        &e,
        "upstream.secure.caFile",
        Some(3),
        "the CA that signed the kubelet's serving certificate",
    );
    let e = fail("upstream: {readOnly: \"\"}\n");
    assert_error(
        &e,
        "upstream.readOnly",
        Some(3),
        "may be empty only when upstream.secure is set",
    );
    let e = fail("upstream: {streamIdleTimeout: 0s}\n");
    assert_error(&e, "upstream.streamIdleTimeout", Some(3), "must be greater than 0s");
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
    assert_error(
        &e,
        "upstream.secure.url",
        Some(3),
        "required with upstream.secure: the kubelet's own port",
    );
}

#[test]
fn other_cross_field_checks() {
    let e = fail("apiServer:\n  maxInFlight: 0\n");
    assert_error(&e, "apiServer.maxInFlight", Some(4), "0 must be at least 1");
    let e = fail("port: 9000\nops: {address: \"127.0.0.1:9000\"}\n");
    assert_error(&e, "ops.address", Some(4), "conflicts");
    // The gateway as its own upstream: the kubelet moved to loopback, the gateway left on all
    // addresses (the file says nothing of address, so the error names the field alone).
    let secure =
        "upstream: {readOnly: \"\", secure: {url: \"https://127.0.0.1:10250\", caFile: c, certFile: c, keyFile: k}}\n";
    let e = fail(secure);
    assert_error(&e, "address", None, "takes upstream.secure.url's 127.0.0.1:10250");
    let e = fail(&format!("address: 127.0.0.1\n{secure}"));
    assert_error(&e, "address", Some(3), "the gateway would forward to itself");
    let e = fail("port: 80\nupstream: {readOnly: \"http://localhost\"}\n");
    assert_error(&e, "address", None, "upstream.readOnly's 127.0.0.1:80");
    parse(&format!("address: 10.0.0.5\n{secure}"));
    parse("address: 127.0.0.1\nport: 10250\nupstream: {readOnly: \"http://127.0.0.1:10255\"}\n");
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
fn bootstrap_kubeconfig_needs_a_kubeconfig_to_write() {
    let c = parse("kubeconfig: /var/lib/kubelet-gate/kubeconfig\nbootstrapKubeconfig: bootstrap.conf\n");
    assert_eq!(
        c.bootstrap_kubeconfig,
        Some(PathBuf::from("/etc/kubelet-gate/bootstrap.conf"))
    );
    assert_eq!(parse("").bootstrap_kubeconfig, None);
    let e = fail("bootstrapKubeconfig: /etc/kubernetes/bootstrap-kubelet.conf\n");
    assert_error(&e, "bootstrapKubeconfig", Some(3), "needs kubeconfig");
    let e = fail("kubeconfig: a.conf\nbootstrapKubeconfig: ./a.conf\n");
    assert_error(&e, "bootstrapKubeconfig", Some(4), "must differ from kubeconfig");
}
