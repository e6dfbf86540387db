//! Benchmarks of the per-request work on the cached path: the path gate, the mux, the
//! attribute mapping, a token-file lookup, an RBAC decision against a large policy, and the
//! review filter loop. `cargo bench --bench hot_path` prints nanoseconds per operation.
//! (A plain harness: the figures are for comparing changes on one machine, not for CI.)

use std::future::Future;
use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use http::{Method, Uri, Version};
use kubelet_gate::authn::token_file::TokenFile;
use kubelet_gate::authn::user::UserInfo;
use kubelet_gate::authz::attributes::{request_verb, subresources};
use kubelet_gate::authz::rbac::{RbacPolicy, Request};
use kubelet_gate::authz::{AnyAuthorizer, RbacAuthorizer, review};
use kubelet_gate::proxy::{path, routes};

fn bench(name: &str, iterations: u32, mut f: impl FnMut()) {
    for _ in 0..iterations / 10 {
        f();
    }
    let started = Instant::now();
    for _ in 0..iterations {
        f();
    }
    let per = started.elapsed().as_nanos() as f64 / f64::from(iterations);
    println!("{name:<48} {per:>10.1} ns/op");
}

/// `get nodes/<subresource>` on node-a, as the gateway asks it.
fn get_node<'a>(user: &'a str, groups: &'a [String], subresource: &'a str) -> Request<'a> {
    Request {
        user,
        groups,
        verb: "get",
        api_group: "",
        resource: "nodes",
        subresource,
        name: "node-a",
    }
}

fn policy(bindings: usize) -> RbacPolicy {
    let mut yaml = String::new();
    for i in 0..bindings {
        yaml.push_str(&format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{name: role-{i}}}\nrules:\n- apiGroups: [\"\"]\n  resources: [nodes/metrics, nodes/stats]\n  verbs: [get]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {{name: binding-{i}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: role-{i}}}\nsubjects:\n- {{kind: User, name: user-{i}}}\n- {{kind: Group, name: group-{}}}\n---\n",
            i % 50
        ));
    }
    RbacPolicy::from_sources(&[("bench.yaml".into(), yaml)]).expect("policy")
}

fn main() {
    let uri: Uri = "/stats/summary?only_cpu_and_memory=true".parse().expect("uri");
    bench("path gate + mux + attributes (/stats/summary)", 1_000_000, || {
        let ok = path::check(black_box(&uri), Version::HTTP_11).is_ok();
        let root = routes::mux(uri.path());
        let verb = request_verb(&Method::GET, uri.path(), true);
        black_box((ok, root, verb, subresources(uri.path(), true)));
    });

    let mut csv = String::new();
    for i in 0..10_000 {
        csv.push_str(&format!("token-{i:08},user-{i},uid-{i},\"g1,g2\"\n"));
    }
    let tokens = TokenFile::parse(Path::new("bench.csv"), csv.as_bytes()).expect("tokens");
    bench("token file lookup (10 000 tokens)", 1_000_000, || {
        black_box(tokens.lookup(black_box("token-00004242")));
    });

    let policy = policy(1_000);
    let groups = vec!["group-7".to_string(), "system:authenticated".to_string()];
    bench("RBAC allow via group (1 000 bindings)", 1_000_000, || {
        black_box(policy.authorize(&get_node("someone", &groups, "stats")));
    });
    let nobody = vec!["nobody-group".to_string()];
    bench("RBAC no opinion (1 000 bindings)", 1_000_000, || {
        black_box(policy.authorize(&get_node("nobody", &nobody, "proxy")));
    });

    bench(
        "RBAC no opinion, user and group bound (1 000 bindings)",
        1_000_000,
        || {
            black_box(policy.authorize(&get_node("user-3", &groups, "pods")));
        },
    );
    let authorizer = AnyAuthorizer::Rbac(RbacAuthorizer::new(policy));
    let user = UserInfo {
        name: "user-3".into(),
        groups: groups.clone(),
        ..UserInfo::default()
    };
    bench("review loop, fine-grained fallback (/pods)", 500_000, || {
        // The RBAC review is ready at once: poll it directly, so no executor cost is measured.
        let fut = std::pin::pin!(review(&authorizer, &user, "get", subresources("/pods", true), "node-a"));
        let verdict = fut.poll(&mut std::task::Context::from_waker(std::task::Waker::noop()));
        let _ = black_box(verdict);
    });
}
