//! The kubelet's mapping of a request to authorization attributes (kubernetes
//! pkg/kubelet/server/auth.go, `nodeAuthorizerAttributesGetter.GetRequestAttributes`), plus the gateway's one deliberate difference:
//! the streaming endpoints are reviewed as `create` whatever the method.

use http::Method;

/// The verb the kubelet derives from the method. Anything but the five listed methods,
/// HEAD and OPTIONS included, is the empty verb.
pub fn method_verb(method: &Method) -> &'static str {
    match *method {
        Method::POST => "create",
        Method::GET => "get",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "",
    }
}

/// Paths whose handlers open a process or a stream into a container.
const STREAMING_ROOTS: [&str; 4] = ["/exec", "/attach", "/portForward", "/run"];

/// The verb the gateway reviews. With `exec_requires_create`, exec, attach, portForward and
/// run are `create` for every method, so `get nodes/proxy` can never open an exec WebSocket
/// (a WebSocket upgrade is a GET; upstream declined the same change in kubernetes#136550 and
/// fixed the API server's side with `AuthorizePodWebsocketUpgradeCreatePermission`).
pub fn request_verb(method: &Method, path: &str, exec_requires_create: bool) -> &'static str {
    if exec_requires_create && STREAMING_ROOTS.iter().any(|root| is_subpath(path, root)) {
        return "create";
    }
    method_verb(method)
}

/// `isSubpath` from the kubelet's auth.go, byte for byte.
pub fn is_subpath(subpath: &str, path: &str) -> bool {
    let path = path.strip_suffix('/').unwrap_or(path);
    subpath == path || (subpath.starts_with(path) && subpath.as_bytes().get(path.len()) == Some(&b'/'))
}

/// The subresources to try, in order: the first that is allowed wins (fine-grained
/// authorization, KEP-2862); without the feature gate, the pre-1.32 single subresource.
pub fn subresources(path: &str, fine_grained: bool) -> &'static [&'static str] {
    if is_subpath(path, "/stats") {
        &["stats"]
    } else if is_subpath(path, "/metrics") {
        &["metrics"]
    } else if is_subpath(path, "/logs") {
        &["log"]
    } else if is_subpath(path, "/checkpoint") {
        &["checkpoint"]
    } else if !fine_grained {
        &["proxy"]
    } else if is_subpath(path, "/statusz") {
        &["statusz"]
    } else if is_subpath(path, "/flagz") {
        &["configz"]
    } else if is_subpath(path, "/pods") || is_subpath(path, "/runningpods") {
        &["pods", "proxy"]
    } else if is_subpath(path, "/healthz") {
        &["healthz", "proxy"]
    } else if is_subpath(path, "/configz") {
        &["configz", "proxy"]
    } else {
        &["proxy"]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_subpath_matches_the_kubelet_table() {
        let cases = [
            ("", "", true),
            ("/foo", "/", true),
            ("/foo/", "/foo", true),
            ("/foo/bar", "/foo", true),
            ("/foo/bar", "/foo/", true),
            ("/foobar", "/foo", false),
            ("/foo", "/foo/bar", false),
            ("/foo", "/foo", true),
            ("/foo/", "/foo/", true),
            ("/", "/foo", false),
            ("", "/foo", false),
            ("/foo/bar/baz", "/foo", true),
            ("/foo", "", true),
        ];
        for (sub, path, want) in cases {
            assert_eq!(is_subpath(sub, path), want, "isSubpath({sub:?}, {path:?})");
        }
    }

    #[test]
    fn verbs() {
        let cases = [
            ("POST", "create"),
            ("GET", "get"),
            ("PUT", "update"),
            ("PATCH", "patch"),
            ("DELETE", "delete"),
            ("HEAD", ""),
            ("OPTIONS", ""),
            ("TRACE", ""),
            ("CONNECT", ""),
            ("get", ""),
            ("PROPFIND", ""),
        ];
        for (m, want) in cases {
            let method = Method::from_bytes(m.as_bytes()).expect("method");
            assert_eq!(method_verb(&method), want, "{m}");
        }
    }

    #[test]
    fn streaming_endpoints_need_create() {
        for path in [
            "/exec/ns/p/c",
            "/attach/ns/p/c",
            "/portForward/ns/p",
            "/run/ns/p/c",
            "/exec",
        ] {
            for m in [Method::GET, Method::POST, Method::PUT, Method::HEAD] {
                assert_eq!(request_verb(&m, path, true), "create", "{m} {path}");
            }
        }
        assert_eq!(request_verb(&Method::GET, "/exec/ns/p/c", false), "get");
        assert_eq!(request_verb(&Method::GET, "/execute", true), "get");
        assert_eq!(request_verb(&Method::GET, "/pods", true), "get");
    }

    #[test]
    fn subresource_table() {
        let fine = [
            ("/pods", &["pods", "proxy"][..]),
            ("/pods/", &["pods", "proxy"]),
            ("/runningpods/", &["pods", "proxy"]),
            ("/healthz", &["healthz", "proxy"]),
            ("/healthz/ping", &["healthz", "proxy"]),
            ("/configz", &["configz", "proxy"]),
            ("/statusz", &["statusz"]),
            ("/flagz", &["configz"]),
            ("/stats/summary", &["stats"]),
            ("/stats", &["stats"]),
            ("/statsx", &["proxy"]),
            ("/metrics", &["metrics"]),
            ("/metrics/", &["metrics"]),
            ("/metrics/cadvisor", &["metrics"]),
            ("/metricsx", &["proxy"]),
            ("/logs/", &["log"]),
            ("/logs/kubelet.log", &["log"]),
            ("/logsfoo", &["proxy"]),
            ("/checkpoint/ns/p/c", &["checkpoint"]),
            ("/exec/ns/p/c", &["proxy"]),
            ("/containerLogs/ns/p/c", &["proxy"]),
            ("/debug/pprof/profile", &["proxy"]),
            ("/Exec/ns/p/c", &["proxy"]),
            ("/METRICS", &["proxy"]),
        ];
        for (path, want) in fine {
            assert_eq!(subresources(path, true), want, "{path}");
        }
        for (path, want) in [
            ("/pods", "proxy"),
            ("/healthz", "proxy"),
            ("/stats/summary", "stats"),
            ("/statusz", "proxy"),
        ] {
            assert_eq!(subresources(path, false), [want], "{path}");
        }
    }
}
