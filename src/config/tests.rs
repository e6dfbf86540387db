//! Unit tests of the configuration: parsing, defaults, validation and error locations.

mod parsing;
mod schema_errors;
mod validation;

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
