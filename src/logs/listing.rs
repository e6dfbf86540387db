//! The directory listing of `/logs/`, byte for byte Go's `http.FileServer` (`dirList` in
//! go `src/net/http/fs.go`): entries sorted by name, directories with a trailing `/`, each
//! name URL-escaped in the link (`url.URL{Path: name}.String()`) and HTML-escaped in the text.

/// One directory entry: its raw name and whether it is a directory (a link is not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: Vec<u8>,
    pub is_dir: bool,
}

/// The HTML body of a listing.
pub fn render(mut entries: Vec<Entry>) -> Vec<u8> {
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = Vec::with_capacity(128 + entries.len() * 64);
    out.extend_from_slice(b"<!doctype html>\n<meta name=\"viewport\" content=\"width=device-width\">\n<pre>\n");
    for e in entries {
        let mut name = e.name;
        if e.is_dir {
            name.push(b'/');
        }
        out.extend_from_slice(b"<a href=\"");
        out.extend_from_slice(url_path(&name).as_bytes());
        out.extend_from_slice(b"\">");
        html_escape(&name, &mut out);
        out.extend_from_slice(b"</a>\n");
    }
    out.extend_from_slice(b"</pre>\n");
    out
}

/// Go's `url.URL{Path: p}.String()` for a relative path: every byte but the unreserved ones
/// and `$&+,/:;=@` percent-encoded (upper-case hex), `*` alone left as is, and `./` in front
/// when the first segment holds a `:` (it would read as a scheme).
pub fn url_path(p: &[u8]) -> String {
    if p == b"*" {
        return "*".to_owned();
    }
    let mut out = String::with_capacity(p.len());
    for &c in p {
        let keep = c.is_ascii_alphanumeric() || b"-_.~$&+,/:;=@".contains(&c);
        if keep {
            out.push(c as char);
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(c >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(c & 15)]));
        }
    }
    let first = out.split('/').next().unwrap_or_default();
    if first.contains(':') {
        out.insert_str(0, "./");
    }
    out
}

/// Go's `htmlReplacer`: `&`, `<`, `>`, `"` and `'`; other bytes unchanged.
pub fn html_escape(s: &[u8], out: &mut Vec<u8>) {
    for &c in s {
        match c {
            b'&' => out.extend_from_slice(b"&amp;"),
            b'<' => out.extend_from_slice(b"&lt;"),
            b'>' => out.extend_from_slice(b"&gt;"),
            b'"' => out.extend_from_slice(b"&#34;"),
            b'\'' => out.extend_from_slice(b"&#39;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &[u8], is_dir: bool) -> Entry {
        Entry {
            name: name.to_vec(),
            is_dir,
        }
    }

    #[test]
    fn go_listing_format() {
        let body = render(vec![
            entry(b"syslog", false),
            entry(b"pods", true),
            entry(b"a b?#.log", false),
            entry(b"<script>&'\"", false),
            entry(b"Z", false),
        ]);
        assert_eq!(
            String::from_utf8(body).expect("utf-8"),
            "<!doctype html>\n<meta name=\"viewport\" content=\"width=device-width\">\n<pre>\n\
             <a href=\"%3Cscript%3E&%27%22\">&lt;script&gt;&amp;&#39;&#34;</a>\n\
             <a href=\"Z\">Z</a>\n\
             <a href=\"a%20b%3F%23.log\">a b?#.log</a>\n\
             <a href=\"pods/\">pods/</a>\n\
             <a href=\"syslog\">syslog</a>\n\
             </pre>\n"
        );
        assert_eq!(
            render(Vec::new()),
            b"<!doctype html>\n<meta name=\"viewport\" content=\"width=device-width\">\n<pre>\n</pre>\n"
        );
    }

    #[test]
    fn url_escaping_edge_cases() {
        assert_eq!(url_path(b"a:b"), "./a:b");
        assert_eq!(url_path(b"dir/a:b"), "dir/a:b");
        assert_eq!(url_path(b"*"), "*");
        assert_eq!(url_path(b"**"), "%2A%2A");
        assert_eq!(url_path(b"100%"), "100%25");
        assert_eq!(url_path(b"caf\xc3\xa9\xff"), "caf%C3%A9%FF");
        assert_eq!(url_path(b"$&+,;=@~-_."), "$&+,;=@~-_.");
        assert_eq!(url_path(b"\"<>\\^`{|}"), "%22%3C%3E%5C%5E%60%7B%7C%7D");
    }
}
