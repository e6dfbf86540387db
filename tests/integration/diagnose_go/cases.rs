//! The table of nodes: each case's serving chain, kube-apiserver's CA and client certificate, and
//! what Go must say of it.

use super::*;

/// What Go must say for the case: the table says which failure each node is meant to show, so
/// that a case that silently stopped testing it fails too.
#[derive(Clone, Copy)]
pub(super) enum Expect {
    Accepted,
    /// Go's line contains this.
    Refused(&'static str),
}

pub(super) struct Case {
    pub(super) name: &'static str,
    /// What the node serves (chain and key files); `None`: no serving certificate yet.
    pub(super) serving: Option<(PathBuf, PathBuf)>,
    /// `--kubelet-certificate-authority`.
    pub(super) ca: Option<PathBuf>,
    /// `--kubelet-client-certificate` and `--kubelet-client-key`.
    pub(super) client: (PathBuf, PathBuf),
    /// The node authorizes kube-apiserver's user (nodes/proxy, nodes/healthz).
    pub(super) authorized: bool,
    /// Dialled as `localhost` instead of 127.0.0.1.
    pub(super) by_name: bool,
    pub(super) expect: Expect,
}

pub(super) struct Pki {
    pub(super) dir: tempfile::TempDir,
    pub(super) bin: PathBuf,
}

impl Pki {
    pub(super) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub(super) fn leaf(&self, name: &str, leaf: &Leaf) -> (PathBuf, PathBuf) {
        let pair = (self.path(&format!("{name}.crt")), self.path(&format!("{name}.key")));
        leaf.write(&pair.0, &pair.1);
        pair
    }

    pub(super) fn ca(&self, name: &str, ca: &Ca) -> PathBuf {
        let path = self.path(&format!("{name}.crt"));
        ca.write_pem(&path);
        path
    }

    /// The Go program's `issue` mode, for what rcgen cannot make.
    pub(super) fn go_issue(&self, out: &str, args: &[&str]) -> (PathBuf, PathBuf) {
        let now = diagnose::unix_now();
        let status = Command::new(&self.bin)
            .args(["issue", "-out"])
            .arg(self.path(out))
            .args(args)
            .args(["-not-before", &(now - 3600).to_string()])
            .args(["-not-after", &(now + 30 * 86_400).to_string()])
            .status()
            .expect("run the Go issuer");
        assert!(status.success(), "apiserver-dial issue {out} {args:?}");
        (self.path(&format!("{out}.crt")), self.path(&format!("{out}.key")))
    }
}

pub(super) fn serving_spec() -> ServerSpec {
    ServerSpec::new(&format!("system:node:{NODE}"))
        .dns(&[NODE, "localhost"])
        .ips(&[LOCALHOST])
}

pub(super) fn cases(pki: &Pki) -> Vec<Case> {
    let cluster = Ca::new("kubernetes");
    let ca = Some(pki.ca("cluster-ca", &cluster));
    let client_ca = Ca::new("kubelet-client-ca");
    pki.ca("client-ca", &client_ca);
    let client = pki.leaf("client", &client_ca.client(ClientSpec::new(APISERVER_USER)));
    let wrong_client = pki.leaf(
        "wrong-client",
        &Ca::new("some-other-client-ca").client(ClientSpec::new(APISERVER_USER)),
    );
    let expired_client = pki.leaf(
        "expired-client",
        &client_ca.client(ClientSpec::new(APISERVER_USER).expired()),
    );

    let healthy = pki.leaf("healthy", &cluster.server_with(serving_spec()));
    let inter = cluster.intermediate("kubelet-serving-ca", IntermediateOpts::new());
    let via_intermediate = pki.leaf("via-intermediate", &inter.server_with(serving_spec()));
    let mut leaf_only = inter.server_with(serving_spec());
    leaf_only.chain.truncate(1);
    leaf_only.cert_pem = crate::common::pki::chain_pem(&leaf_only.chain);
    let intermediate_not_sent = pki.leaf("intermediate-not-sent", &leaf_only);
    let stamp = diagnose::unix_now();
    let node_ca = Ca::new(&format!("{NODE}-ca@{stamp}"));
    let kubelet_crt = pki.leaf(
        "kubelet-crt",
        &node_ca
            .server_with(
                ServerSpec::new(&format!("{NODE}@{stamp}"))
                    .dns(&[NODE])
                    .ips(&[LOCALHOST]),
            )
            .with_chain(vec![node_ca.cert_der()]),
    );
    let other_ca = pki.leaf("other-ca", &Ca::new("some-other-ca").server_with(serving_spec()));
    let dns_only = pki.leaf("dns-only", &cluster.server_with(ServerSpec::new(NODE).dns(&[NODE])));
    let expired = pki.leaf(
        "expired",
        &cluster.server_with(serving_spec().validity(Offset::days(-10), Offset::days(-1))),
    );
    let future = pki.leaf(
        "future",
        &cluster.server_with(serving_spec().validity(Offset::days(1), Offset::days(30))),
    );
    let old_root = Ca::with_validity("kubernetes", Offset::days(-30), Offset::days(-1));
    let old_root_ca = Some(pki.ca("old-root", &old_root));
    let from_old_root = pki.leaf("from-old-root", &old_root.server_with(serving_spec()));
    let future_root = Ca::with_validity("kubernetes", Offset::days(1), Offset::days(30));
    let future_root_ca = Some(pki.ca("future-root", &future_root));
    let from_future_root = pki.leaf("from-future-root", &future_root.server_with(serving_spec()));
    let old_inter = cluster.intermediate("kubelet-serving-ca", IntermediateOpts::new().expired());
    let via_old_intermediate = pki.leaf("via-old-intermediate", &old_inter.server_with(serving_spec()));
    let client_eku = pki.leaf("client-eku", &cluster.server_with(serving_spec().eku(Eku::ClientAuth)));
    let client_eku_dns_only = pki.leaf(
        "client-eku-dns-only",
        &cluster.server_with(ServerSpec::new(NODE).dns(&[NODE]).eku(Eku::ClientAuth)),
    );
    let client_eku_other_ca = pki.leaf(
        "client-eku-other-ca",
        &Ca::new("some-other-ca").server_with(serving_spec().eku(Eku::ClientAuth)),
    );
    let client_eku_expired = pki.leaf(
        "client-eku-expired",
        &cluster.server_with(
            serving_spec()
                .eku(Eku::ClientAuth)
                .validity(Offset::days(-10), Offset::days(-1)),
        ),
    );
    let impostor = pki.leaf("impostor", &Ca::new("kubernetes").server_with(serving_spec()));
    let not_ca = cluster.intermediate("not-a-ca", IntermediateOpts::new().not_ca());
    let via_not_ca = pki.leaf("via-not-ca", &not_ca.server_with(serving_spec()));
    let no_more = cluster.intermediate("path-len-0", IntermediateOpts::new().path_len(0));
    let below = no_more.intermediate("below-path-len-0", IntermediateOpts::new());
    let too_deep = pki.leaf("too-deep", &below.server_with(serving_spec()));
    let critical = pki.leaf(
        "critical",
        &cluster.client(
            ClientSpec::new(NODE)
                .eku(Eku::ClientAndServer)
                .unknown_critical_ext(true),
        ),
    );
    let legacy_cn = pki.leaf("legacy-cn", &cluster.server_with(ServerSpec::new("localhost")));

    // Go-made: a SHA-1 signature (by an RSA CA) and an RSA-1024 serving key (from the cluster CA).
    pki.go_issue("sha1-ca", &["-cn", "sha1-ca", "-is-ca", "-key", "rsa2048"]);
    let sha1_ca = Some(pki.path("sha1-ca.crt"));
    let sha1 = pki.go_issue(
        "sha1-leaf",
        &[
            "-ca",
            &pki.path("sha1-ca").display().to_string(),
            "-sig",
            "sha1",
            "-cn",
            NODE,
            "-ip",
            "127.0.0.1",
            "-dns",
            "localhost",
        ],
    );
    cluster.write_pair(&pki.path("cluster.crt"), &pki.path("cluster.key"));
    let rsa1024 = pki.go_issue(
        "rsa1024",
        &[
            "-ca",
            &pki.path("cluster").display().to_string(),
            "-key",
            "rsa1024",
            "-cn",
            NODE,
            "-ip",
            "127.0.0.1",
            "-dns",
            "localhost",
        ],
    );

    let case = |name, serving: &(PathBuf, PathBuf), ca: &Option<PathBuf>, expect| Case {
        name,
        serving: Some(serving.clone()),
        ca: ca.clone(),
        client: client.clone(),
        authorized: true,
        by_name: false,
        expect,
    };
    let unknown = Expect::Refused("x509: certificate signed by unknown authority");
    let expired_now = Expect::Refused("x509: certificate has expired or is not yet valid: current time");
    let usage = Expect::Refused("x509: certificate specifies an incompatible key usage");
    vec![
        case("healthy, dialled by IP", &healthy, &ca, Expect::Accepted),
        Case {
            by_name: true,
            ..case("healthy, dialled by name", &healthy, &ca, Expect::Accepted)
        },
        case(
            "healthy, through an intermediate",
            &via_intermediate,
            &ca,
            Expect::Accepted,
        ),
        case("RSA-1024 serving key", &rsa1024, &ca, Expect::Accepted),
        case("self-signed kubelet.crt", &kubelet_crt, &ca, unknown),
        case("from another CA", &other_ca, &ca, unknown),
        case("intermediate not sent", &intermediate_not_sent, &ca, unknown),
        case(
            "no IP SAN",
            &dns_only,
            &ca,
            Expect::Refused("doesn't contain any IP SANs"),
        ),
        Case {
            by_name: true,
            ..case(
                "wrong DNS name",
                &dns_only,
                &ca,
                Expect::Refused("is valid for node-a, not localhost"),
            )
        },
        Case {
            by_name: true,
            ..case(
                "legacy CN only",
                &legacy_cn,
                &ca,
                Expect::Refused("relies on legacy Common Name field"),
            )
        },
        case("expired leaf", &expired, &ca, expired_now),
        case("not-yet-valid leaf", &future, &ca, expired_now),
        case("expired root", &from_old_root, &old_root_ca, expired_now),
        case("not-yet-valid root", &from_future_root, &future_root_ca, expired_now),
        case("expired intermediate", &via_old_intermediate, &ca, expired_now),
        case("serverAuth missing", &client_eku, &ca, usage),
        case(
            "serverAuth missing and no IP SAN",
            &client_eku_dns_only,
            &ca,
            Expect::Refused("doesn't contain any IP SANs"),
        ),
        case("serverAuth missing and another CA", &client_eku_other_ca, &ca, unknown),
        case("serverAuth missing and expired", &client_eku_expired, &ca, expired_now),
        case(
            "SHA-1 signed leaf",
            &sha1,
            &sha1_ca,
            Expect::Refused("insecure algorithm SHA1-RSA"),
        ),
        case(
            "CA with the cluster CA's name, another key",
            &impostor,
            &ca,
            Expect::Refused("ECDSA verification failure"),
        ),
        case(
            "an intermediate that is no CA",
            &via_not_ca,
            &ca,
            Expect::Refused("parent certificate cannot sign this kind of certificate"),
        ),
        case(
            "path length constraint exceeded",
            &too_deep,
            &ca,
            Expect::Refused("x509: too many intermediates for path length constraint"),
        ),
        case(
            "unhandled critical extension",
            &critical,
            &ca,
            Expect::Refused("x509: unhandled critical extension"),
        ),
        Case {
            serving: None,
            ..case(
                "no serving certificate yet",
                &healthy,
                &ca,
                Expect::Refused("remote error: tls: internal error"),
            )
        },
        case(
            "no CA flag: self-signed kubelet.crt",
            &kubelet_crt,
            &None,
            Expect::Accepted,
        ),
        case("no CA flag: expired leaf", &expired, &None, Expect::Accepted),
        case("no CA flag: SHA-1 signed leaf", &sha1, &None, Expect::Accepted),
        case("no CA flag: RSA-1024 serving key", &rsa1024, &None, Expect::Accepted),
        Case {
            authorized: false,
            ..case(
                "client certificate not authorized",
                &healthy,
                &ca,
                Expect::Refused(
                    "403 Forbidden (user=kube-apiserver-kubelet-client, verb=get, resource=nodes, subresource(s)=[proxy])",
                ),
            )
        },
        Case {
            client: wrong_client.clone(),
            ..case(
                "client certificate from another CA",
                &healthy,
                &ca,
                Expect::Refused("401 Unauthorized"),
            )
        },
        Case {
            client: expired_client.clone(),
            ..case(
                "expired client certificate",
                &healthy,
                &ca,
                Expect::Refused("401 Unauthorized"),
            )
        },
    ]
}
