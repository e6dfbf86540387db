//! The canonical-path gate: a request target that could be read two ways (dot segments,
//! doubled or encoded slashes, backslashes, control bytes, `;` parameters, non-ASCII) is
//! refused before authentication, so the path that is authorized is byte for byte the path
//! that is forwarded (the Envoy, Istio and kube-rbac-proxy bypasses all came from a checker
//! and a forwarder reading one path two ways).

use http::{Uri, Version};

/// Longer targets are refused with 414 before any review is sent.
pub const MAX_TARGET_BYTES: usize = 8 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// 400, with the reason for the log.
    BadRequest(&'static str),
    /// 414.
    TooLong,
}

/// Checks the request target of a request as hyper parsed it.
pub fn check(uri: &Uri, version: Version) -> Result<(), Rejection> {
    // HTTP/2 always carries :scheme and :authority; in HTTP/1 only the absolute form does.
    if version < Version::HTTP_2 && (uri.scheme().is_some() || uri.authority().is_some()) {
        return Err(Rejection::BadRequest("absolute-form request target"));
    }
    let path = uri.path();
    let query = uri.query().unwrap_or("");
    if path.len() + query.len() + 1 > MAX_TARGET_BYTES {
        return Err(Rejection::TooLong);
    }
    check_path(path)?;
    check_query(query)
}

/// The rules for the path alone; pure, and the unit of the fuzz and table tests.
pub fn check_path(path: &str) -> Result<(), Rejection> {
    let bad = |why| Err(Rejection::BadRequest(why));
    let Some(rest) = path.strip_prefix('/') else {
        return bad("request target is not an absolute path");
    };
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => return bad("backslash in path"),
            b';' => return bad("';' in path"),
            b'#' => return bad("fragment in request target"),
            b'%' => {
                let decoded = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match decoded {
                    None => return bad("malformed percent-encoding"),
                    Some(b'.' | b'/' | b'\\' | b';') => return bad("encoded '.', '/', '\\' or ';' in path"),
                    Some(c) if !c.is_ascii() || c.is_ascii_control() => {
                        return bad("encoded control or non-ASCII byte in path");
                    }
                    Some(_) => i += 2,
                }
            }
            c if !c.is_ascii() => return bad("non-ASCII byte in path"),
            c if c.is_ascii_control() || c == b' ' => return bad("control character or space in path"),
            _ => {}
        }
        i += 1;
    }
    let segments: Vec<&str> = rest.split('/').collect();
    for (n, segment) in segments.iter().enumerate() {
        match *segment {
            "." | ".." => return bad("dot segment in path"),
            // An empty segment is only allowed as the last one: a trailing slash.
            "" if n + 1 < segments.len() => return bad("empty segment ('//') in path"),
            _ => {}
        }
    }
    Ok(())
}

fn check_query(query: &str) -> Result<(), Rejection> {
    if query
        .bytes()
        .any(|c| !c.is_ascii() || c.is_ascii_control() || c == b' ' || c == b'#')
    {
        return Err(Rejection::BadRequest("control, space or non-ASCII byte in query"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(s: &str) -> Uri {
        s.parse().expect("uri")
    }

    #[test]
    fn canonical_paths_pass() {
        for p in [
            "/",
            "/pods",
            "/pods/",
            "/metrics/cadvisor",
            "/containerLogs/kube-system/coredns-abc/coredns",
            "/logs/journal/x.log",
            "/exec/ns/p%2Dx/c",
            "/a..b/.c/d.",
        ] {
            assert_eq!(check_path(p), Ok(()), "{p}");
        }
        assert_eq!(check(&uri("/pods?x=%2F&follow=true"), Version::HTTP_11), Ok(()));
        assert_eq!(check(&uri("https://node:10250/pods"), Version::HTTP_2), Ok(()));
    }

    #[test]
    fn non_canonical_paths_are_refused() {
        for p in [
            "/metrics/../exec/ns/p/c",
            "/pods/.",
            "/pods/./",
            "/./pods",
            "/..",
            "//exec/ns/p/c",
            "/exec//ns/p/c",
            "/metrics//../exec",
            "/metrics%2F..%2Fexec/ns/p/c",
            "/metrics%2f..%2fexec",
            "/metrics/%2e%2e/exec",
            "/metrics/%2E./exec",
            "/metrics%5cexec",
            "/metrics\\..\\exec",
            "/pods;x=y",
            "/pods%3bx",
            "/pods%00",
            "/pods%0a",
            "/pods%0D",
            "/pods%7f",
            "/pods%c3%a9",
            "/pods%",
            "/pods%2",
            "/pods%zz",
            "/p\tods",
            "/p ods",
            "/p\u{e9}ods",
            "/pods#frag",
            "*",
            "pods",
            "",
        ] {
            assert!(
                matches!(check_path(p), Err(Rejection::BadRequest(_))),
                "{p:?} should be refused"
            );
        }
    }

    #[test]
    fn absolute_form_and_length() {
        let abs = uri("https://10.0.0.9:10255/pods");
        assert!(matches!(check(&abs, Version::HTTP_11), Err(Rejection::BadRequest(_))));
        let long = format!("/pods/{}", "a".repeat(MAX_TARGET_BYTES));
        assert_eq!(check(&uri(&long), Version::HTTP_11), Err(Rejection::TooLong));
        let at_limit = format!("/{}", "a".repeat(MAX_TARGET_BYTES - 2));
        assert_eq!(check(&uri(&at_limit), Version::HTTP_11), Ok(()));
    }
}
