//! The kubelet's endpoint inventory (kubernetes pkg/kubelet/server/server.go,
//! `InstallDefaultHandlers` and `InstallDebuggingHandlers`) as two levels, as on the
//! kubelet: the HTTP mux, which answers unknown paths with 404 before any authentication, and
//! the REST routes under each mux root, which are matched only after authorization.

use http::Method;

/// Who serves an endpoint once the request is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    /// Forwarded to the read-only port.
    ReadOnly,
    /// `/logs/`: served by the gateway from the node log directory.
    NodeLogs,
    /// `/containerLogs/`: served by the gateway from the pod log directory.
    ContainerLogs,
    /// Needs the kubelet's private API, which the read-only port cannot serve.
    Private(&'static str),
}

/// The mux's answer, before authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mux {
    /// 404 `404 page not found\n`: no pattern matches.
    NotFound,
    /// A subtree registered only with its trailing slash: redirect to it.
    Redirect(&'static str),
    /// A registered pattern: authenticate, authorize, then dispatch.
    Known(Root),
}

/// The REST router's answer, after authorization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dispatch {
    Handle(Handler),
    /// go-restful's `404: Page Not Found`.
    NoRoute,
    /// go-restful's `405: Method Not Allowed`, with the `Allow` header value.
    MethodNotAllowed(&'static str),
}

/// A mux pattern and the routes under it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Root {
    pub prefix: &'static str,
    kind: RootKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RootKind {
    /// A plain `Handle` on an exact path, any method.
    Exact(Handler),
    /// A go-restful WebService: the root and its subtree, with parameterised routes.
    Service(&'static [Route]),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Route {
    /// Path segments after the root; `{}` is one parameter, `{*}` the rest of the path.
    segments: &'static [&'static str],
    methods: &'static [Method],
    allow: &'static str,
    handler: Handler,
}

const GET: &[Method] = &[Method::GET];
const POST: &[Method] = &[Method::POST];
const GET_POST: &[Method] = &[Method::GET, Method::POST];

const fn route(
    segments: &'static [&'static str],
    methods: &'static [Method],
    allow: &'static str,
    handler: Handler,
) -> Route {
    Route {
        segments,
        methods,
        allow,
        handler,
    }
}

const fn exact(prefix: &'static str, handler: Handler) -> Root {
    Root {
        prefix,
        kind: RootKind::Exact(handler),
    }
}

const fn service(prefix: &'static str, routes: &'static [Route]) -> Root {
    Root {
        prefix,
        kind: RootKind::Service(routes),
    }
}

const P: &str = "{}";
const REST: &str = "{*}";

/// Every endpoint of the kubelet's port 10250 (debugging handlers on, as by default).
pub const ROOTS: &[Root] = &[
    exact("/healthz", Handler::ReadOnly),
    exact("/healthz/ping", Handler::ReadOnly),
    exact("/healthz/log", Handler::ReadOnly),
    exact("/healthz/syncloop", Handler::ReadOnly),
    exact("/metrics", Handler::ReadOnly),
    exact("/metrics/cadvisor", Handler::ReadOnly),
    exact("/metrics/resource", Handler::ReadOnly),
    exact("/metrics/probes", Handler::ReadOnly),
    exact("/metrics/slis", Handler::ReadOnly),
    exact("/statusz", Handler::ReadOnly),
    exact("/configz", Handler::Private("configz")),
    exact("/flagz", Handler::Private("flagz")),
    exact("/debug/flags/v", Handler::Private("debug/flags")),
    service("/pods", &[route(&[], GET, "GET", Handler::ReadOnly)]),
    service(
        "/stats/",
        &[route(&["summary"], GET_POST, "GET, POST", Handler::ReadOnly)],
    ),
    service(
        "/run",
        &[
            route(&[P, P, P], POST, "POST", Handler::Private("run")),
            route(&[P, P, P, P], POST, "POST", Handler::Private("run")),
        ],
    ),
    service(
        "/exec",
        &[
            route(&[P, P, P], GET_POST, "GET, POST", Handler::Private("exec")),
            route(&[P, P, P, P], GET_POST, "GET, POST", Handler::Private("exec")),
        ],
    ),
    service(
        "/attach",
        &[
            route(&[P, P, P], GET_POST, "GET, POST", Handler::Private("attach")),
            route(&[P, P, P, P], GET_POST, "GET, POST", Handler::Private("attach")),
        ],
    ),
    service(
        "/portForward",
        &[
            route(&[P, P], GET_POST, "GET, POST", Handler::Private("portForward")),
            route(&[P, P, P], GET_POST, "GET, POST", Handler::Private("portForward")),
        ],
    ),
    service(
        "/containerLogs",
        &[route(&[P, P, P], GET, "GET", Handler::ContainerLogs)],
    ),
    service(
        "/runningpods/",
        &[route(&[], GET, "GET", Handler::Private("runningpods"))],
    ),
    service(
        "/checkpoint",
        &[route(&[P, P, P], POST, "POST", Handler::Private("checkpoint"))],
    ),
    service(
        "/logs/",
        &[
            route(&[], GET, "GET", Handler::NodeLogs),
            route(&[REST], GET, "GET", Handler::NodeLogs),
        ],
    ),
    service(
        "/debug/pprof",
        &[route(&[REST], GET, "GET", Handler::Private("debug/pprof"))],
    ),
];

/// The mux step. The path has passed the canonical-path gate.
pub fn mux(path: &str) -> Mux {
    for root in ROOTS {
        match root.kind {
            RootKind::Exact(_) if path == root.prefix => return Mux::Known(*root),
            RootKind::Exact(_) => {}
            RootKind::Service(_) => {
                if let Some(bare) = root.prefix.strip_suffix('/') {
                    // Registered only as a subtree: the bare path is redirected, like ServeMux.
                    if path == bare {
                        return Mux::Redirect(root.prefix);
                    }
                    if path.starts_with(root.prefix) {
                        return Mux::Known(*root);
                    }
                } else if path == root.prefix || path.strip_prefix(root.prefix).is_some_and(|r| r.starts_with('/')) {
                    return Mux::Known(*root);
                }
            }
        }
    }
    Mux::NotFound
}

impl Root {
    /// The REST routing step, after authorization.
    pub fn dispatch(&self, method: &Method, path: &str) -> Dispatch {
        let routes = match self.kind {
            RootKind::Exact(handler) => return Dispatch::Handle(handler),
            RootKind::Service(routes) => routes,
        };
        let rest = path.strip_prefix(self.prefix.trim_end_matches('/')).unwrap_or("");
        // go-restful ignores empty tokens, so `/pods` and `/pods/` are one route.
        let tokens: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        let mut allow = None;
        for r in routes {
            let matches = match r.segments.last() {
                Some(&REST) => tokens.len() >= r.segments.len(),
                _ => tokens.len() == r.segments.len(),
            } && r
                .segments
                .iter()
                .zip(&tokens)
                .all(|(s, t)| *s == P || *s == REST || s == t);
            if matches {
                if r.methods.contains(method) {
                    return Dispatch::Handle(r.handler);
                }
                allow = Some(r.allow);
            }
        }
        allow.map_or(Dispatch::NoRoute, Dispatch::MethodNotAllowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(path: &str) -> Root {
        match mux(path) {
            Mux::Known(root) => root,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn mux_answers_unknown_paths_and_redirects() {
        for p in [
            "/",
            "/foo",
            "/metrics/",
            "/healthz/",
            "/healthzjunk",
            "/podsx",
            "/Exec/ns/p/c",
            "/METRICS",
            "/spec/",
            "/debug/flags/x",
        ] {
            assert_eq!(mux(p), Mux::NotFound, "{p}");
        }
        assert_eq!(mux("/stats"), Mux::Redirect("/stats/"));
        assert_eq!(mux("/runningpods"), Mux::Redirect("/runningpods/"));
        assert_eq!(mux("/logs"), Mux::Redirect("/logs/"));
        for p in [
            "/pods",
            "/pods/",
            "/pods/x",
            "/exec",
            "/exec/ns",
            "/stats/",
            "/stats/x",
            "/logs/a/b",
            "/debug/pprof/heap",
        ] {
            known(p);
        }
    }

    #[test]
    fn dispatch_matches_go_restful() {
        let get = Method::GET;
        let post = Method::POST;
        assert_eq!(
            known("/pods").dispatch(&get, "/pods"),
            Dispatch::Handle(Handler::ReadOnly)
        );
        assert_eq!(
            known("/pods/").dispatch(&get, "/pods/"),
            Dispatch::Handle(Handler::ReadOnly)
        );
        assert_eq!(known("/pods/x").dispatch(&get, "/pods/x"), Dispatch::NoRoute);
        assert_eq!(
            known("/pods").dispatch(&post, "/pods"),
            Dispatch::MethodNotAllowed("GET")
        );
        assert_eq!(
            known("/stats/summary").dispatch(&post, "/stats/summary"),
            Dispatch::Handle(Handler::ReadOnly)
        );
        assert_eq!(known("/stats/").dispatch(&get, "/stats/"), Dispatch::NoRoute);
        assert_eq!(
            known("/exec/a/b/c").dispatch(&get, "/exec/a/b/c"),
            Dispatch::Handle(Handler::Private("exec"))
        );
        assert_eq!(
            known("/exec/a/b/u/c").dispatch(&post, "/exec/a/b/u/c"),
            Dispatch::Handle(Handler::Private("exec"))
        );
        assert_eq!(known("/exec/a").dispatch(&get, "/exec/a"), Dispatch::NoRoute);
        assert_eq!(
            known("/exec/a/b/c").dispatch(&Method::PUT, "/exec/a/b/c"),
            Dispatch::MethodNotAllowed("GET, POST")
        );
        assert_eq!(
            known("/run/a/b/c").dispatch(&get, "/run/a/b/c"),
            Dispatch::MethodNotAllowed("POST")
        );
        assert_eq!(
            known("/portForward/a/b").dispatch(&get, "/portForward/a/b"),
            Dispatch::Handle(Handler::Private("portForward"))
        );
        assert_eq!(
            known("/logs/").dispatch(&get, "/logs/"),
            Dispatch::Handle(Handler::NodeLogs)
        );
        assert_eq!(
            known("/logs/a/b.log").dispatch(&get, "/logs/a/b.log"),
            Dispatch::Handle(Handler::NodeLogs)
        );
        assert_eq!(
            known("/logs/a").dispatch(&Method::HEAD, "/logs/a"),
            Dispatch::MethodNotAllowed("GET")
        );
        assert_eq!(
            known("/containerLogs/ns/p/c").dispatch(&get, "/containerLogs/ns/p/c"),
            Dispatch::Handle(Handler::ContainerLogs)
        );
        assert_eq!(
            known("/containerLogs/ns/p").dispatch(&get, "/containerLogs/ns/p"),
            Dispatch::NoRoute
        );
        assert_eq!(
            known("/containerLogs/ns/p/c").dispatch(&post, "/containerLogs/ns/p/c"),
            Dispatch::MethodNotAllowed("GET")
        );
        assert_eq!(
            known("/metrics").dispatch(&Method::DELETE, "/metrics"),
            Dispatch::Handle(Handler::ReadOnly)
        );
        assert_eq!(
            known("/checkpoint/a/b/c").dispatch(&post, "/checkpoint/a/b/c"),
            Dispatch::Handle(Handler::Private("checkpoint"))
        );
    }
}
