//! The Go side: finding a Go toolchain new enough, building tests/go/apiserver-dial with it, and
//! running its kubelet-like TLS server as a node.

use super::*;

pub(super) fn go_binary() -> Option<PathBuf> {
    if let Some(go) = std::env::var_os("KUBELET_GATE_GO") {
        return Some(PathBuf::from(go));
    }
    let debian = PathBuf::from("/usr/lib/go-1.26/bin/go");
    if debian.exists() {
        return Some(debian);
    }
    Command::new("go")
        .arg("version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|_| PathBuf::from("go"))
}

/// `go1.26.11` → (1, 26); a development version counts as new.
pub(super) fn go_version(version: &str) -> Option<(u32, u32)> {
    if version.starts_with("devel") {
        return Some((u32::MAX, 0));
    }
    let mut parts = version.trim().strip_prefix("go")?.split(['.', '-', ' ', 'r', 'b']);
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// The Go environment: nothing from the user's, nothing downloaded, caches in cargo's test
/// scratch directory (so that a second run builds in a second).
pub(super) fn go_command(go: &Path) -> Command {
    let scratch = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let mut c = Command::new(go);
    c.env("GOCACHE", scratch.join("go-cache"))
        .env("GOPATH", scratch.join("go-path"))
        .env("GOTOOLCHAIN", "local")
        .env("CGO_ENABLED", "0")
        .env("GOFLAGS", "")
        .env("GOPROXY", "off")
        .env("GOWORK", "off")
        .env("GOENV", "off")
        .env_remove("GO111MODULE");
    c
}

/// Builds tests/go/apiserver-dial, or says why not (`Err`: skip, `panic`: broken).
pub(super) fn build_go_side() -> Result<PathBuf, String> {
    let go = go_binary().ok_or("no Go toolchain ($KUBELET_GATE_GO, /usr/lib/go-1.26/bin/go, go on PATH)")?;
    let out = go_command(&go)
        .args(["env", "GOVERSION"])
        .output()
        .map_err(|e| format!("{}: {e}", go.display()))?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    match go_version(&version) {
        Some(v) if v >= MIN_GO => {}
        _ => {
            return Err(format!(
                "{} is {version:?}; diagnose emulates Go >= {}.{}",
                go.display(),
                MIN_GO.0,
                MIN_GO.1
            ));
        }
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/go/apiserver-dial");
    let bin = Path::new(env!("CARGO_TARGET_TMPDIR")).join("apiserver-dial");
    let out = go_command(&go)
        .current_dir(&src)
        .arg("build")
        .arg("-o")
        .arg(&bin)
        .arg("main.go")
        .output()
        .expect("run go build");
    assert!(
        out.status.success(),
        "go build of {}: {}",
        src.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(bin)
}

// ---- a node: the Go program's kubelet-like TLS server ----

/// Killed (and reaped) when dropped; it also exits when its stdin closes.
pub(super) struct GoNode {
    pub(super) child: Child,
    pub(super) port: u16,
}

impl GoNode {
    pub(super) fn start(
        bin: &Path,
        serving: Option<&(PathBuf, PathBuf)>,
        client_ca: &Path,
        authorized: bool,
    ) -> GoNode {
        let mut c = Command::new(bin);
        c.arg("serve").arg("-client-ca").arg(client_ca);
        if let Some((cert, key)) = serving {
            c.arg("-cert").arg(cert).arg("-key").arg(key);
        }
        if authorized {
            c.args(["-allow", APISERVER_USER]);
        }
        let mut child = c
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the Go node");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("node stdout");
        BufReader::new(stdout).read_line(&mut line).expect("node address");
        let port = line
            .trim()
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or_else(|| panic!("the Go node printed {line:?}, not its address"));
        GoNode { child, port }
    }
}

impl Drop for GoNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
