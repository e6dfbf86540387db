//! What the schema rejects, each error with its field and line: unknown fields and feature gates,
//! ill-typed values, YAML syntax errors, and a wrong `apiVersion` or `kind`.

use super::*;

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
fn keys_with_line_breaks_are_shown_on_one_line() {
    // Found by the config fuzz target: the unknown key's path went into Display as it was.
    let e = fail("\"node\\nName\": x\n");
    assert_eq!(e.field(), Some("node\nName"));
    let shown = e.to_string();
    assert!(!shown.contains('\n'), "{shown}");
    assert!(
        shown.starts_with("<config>:3: node\\nName: unknown field \"node\\nName\", expected one of: apiVersion"),
        "{shown}"
    );
    let e = fail("authentication:\n  x509: {client\n\n    CAFile: x}\n");
    assert_eq!(e.field(), Some("authentication.x509.client\nCAFile"));
    assert!(!e.to_string().contains('\n'), "{e}");
    assert!(
        e.to_string()
            .contains("authentication.x509.client\\nCAFile: unknown field"),
        "{e}"
    );
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
