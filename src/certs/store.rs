//! The certificate store: `<prefix>-<time>.pem` files (the chain and its key in one PEM, mode
//! 0600) in a directory, and the `<prefix>-current.pem` link to the pair in use, swapped through
//! `<prefix>-updated.pem` (client-go util/certificate/certificate_store.go `fileStore`: `Current`,
//! `Update`, `updateSymlink`, `recover`).
//!
//! Two differences from client-go's store. Each pair is written under a temporary name, synced
//! and renamed into place, and the link is renamed over the old one, so a crash never leaves a
//! half-written pair or a moment without `current` (client-go writes in place and removes
//! `current` before renaming `updated`). And an update prunes: it keeps the new pair and the one
//! it replaces, and removes older pairs, each of which holds a private key.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rustls::sign::CertifiedKey;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::CertError;
use super::rotation;

/// A certificate and its key as the store hands them out, with the validity (Unix seconds) and
/// the rotation deadline the manager reads.
#[derive(Clone)]
pub struct Issued {
    pub key: Arc<CertifiedKey>,
    pub leaf: CertificateDer<'static>,
    pub not_before: i64,
    pub not_after: i64,
    /// Derived from the certificate ([`rotation::deadline`]): a restart does not move it.
    pub rotate_at: i64,
    /// Where it was read from or written to.
    pub path: PathBuf,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("path", &self.path)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .field("rotate_at", &self.rotate_at)
            .finish_non_exhaustive()
    }
}

impl Issued {
    /// A chain and its key from one PEM (the store's format).
    pub fn from_pem(pem: &[u8], path: &Path) -> Result<Issued, CertError> {
        Issued::from_pair(pem, path, pem, path)
    }

    /// A chain and its key from separate PEMs (a kubeconfig's `client-certificate` and
    /// `client-key`); every failure names the file.
    pub fn from_pair(cert_pem: &[u8], cert_path: &Path, key_pem: &[u8], key_path: &Path) -> Result<Issued, CertError> {
        let invalid = |m: String| CertError::Invalid {
            path: cert_path.into(),
            message: m,
        };
        let key = super::pair_from_pem(cert_path, cert_pem, key_path, key_pem)?;
        let leaf = CertificateDer::pem_slice_iter(cert_pem)
            .next()
            .ok_or_else(|| invalid("no certificate".into()))?
            .map_err(|e| invalid(e.to_string()))?;
        let (not_before, not_after) = {
            let (_, cert) = X509Certificate::from_der(&leaf).map_err(|e| invalid(e.to_string()))?;
            (
                cert.validity().not_before.timestamp(),
                cert.validity().not_after.timestamp(),
            )
        };
        Ok(Issued {
            rotate_at: rotation::deadline(not_before, not_after, &leaf),
            key,
            leaf,
            not_before,
            not_after,
            path: cert_path.into(),
        })
    }

    /// Within its validity now. After `notAfter` the kubelet's manager treats the certificate
    /// as absent (`manager.Current`: `now.After(NotAfter)`).
    pub fn valid_now(&self) -> bool {
        self.not_before <= rotation::now_unix() && !rotation::is_past(self.not_after)
    }

    /// The leaf, parsed (it parsed when this was made).
    pub fn with_leaf<T>(&self, f: impl FnOnce(&X509Certificate<'_>) -> T) -> Option<T> {
        X509Certificate::from_der(&self.leaf).ok().map(|(_, c)| f(&c))
    }

    /// The subject's common name.
    pub fn common_name(&self) -> String {
        self.with_leaf(|c| {
            c.subject()
                .iter_common_name()
                .filter_map(|a| a.as_str().ok())
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Cert(#[from] CertError),
}

/// The pairs of one kind (`kubelet-server`, `kubelet-gate-client`) in one directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    prefix: &'static str,
}

impl Store {
    pub fn new(dir: &Path, prefix: &'static str) -> Store {
        Store {
            dir: dir.to_path_buf(),
            prefix,
        }
    }

    /// `<dir>/<prefix>-current.pem`, the link to the pair in use.
    pub fn current_path(&self) -> PathBuf {
        self.dir.join(self.name("current"))
    }

    fn name(&self, qualifier: &str) -> String {
        format!("{}-{qualifier}.pem", self.prefix)
    }

    /// The pair in use, if there is one (valid or not: the caller judges). An update that
    /// stopped between creating `updated` and renaming it is finished first (`recover`).
    pub fn load(&self) -> Result<Option<Issued>, StoreError> {
        let current = self.current_path();
        let updated = self.dir.join(self.name("updated"));
        if std::fs::symlink_metadata(&current).is_err()
            && std::fs::symlink_metadata(&updated).is_ok_and(|m| m.file_type().is_symlink())
        {
            std::fs::rename(&updated, &current).map_err(|source| StoreError::Io {
                path: updated.clone(),
                source,
            })?;
        }
        match std::fs::read(&current) {
            Ok(pem) => Ok(Some(Issued::from_pem(&pem, &current)?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError::Io { path: current, source }),
        }
    }

    /// Stores a new pair as `<prefix>-<time>.pem`, points `current` at it, and removes every
    /// older pair but the one it replaces.
    pub fn update(&self, chain_pem: &[u8], key_pem: &[u8], now: SystemTime) -> Result<Issued, StoreError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StoreError::Io { path, source }
        };
        std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        let name = self.name(&timestamp_name(now));
        let path = self.dir.join(&name);
        let mut pem = chain_pem.to_vec();
        if !pem.ends_with(b"\n") {
            pem.push(b'\n');
        }
        pem.extend_from_slice(key_pem);
        // Refuse what does not parse before anything on disk changes.
        let issued = Issued::from_pem(&pem, &path)?;

        let temporary = self.dir.join(format!(".{name}.tmp"));
        let _ = std::fs::remove_file(&temporary);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)
            .map_err(io(&temporary))?;
        f.write_all(&pem).map_err(io(&temporary))?;
        f.sync_all().map_err(io(&temporary))?;
        drop(f);
        std::fs::rename(&temporary, &path).map_err(io(&path))?;

        let current = self.current_path();
        let previous = std::fs::read_link(&current)
            .ok()
            .and_then(|t| t.file_name().map(OsString::from));
        let updated = self.dir.join(self.name("updated"));
        match std::fs::symlink_metadata(&updated) {
            Ok(m) if m.file_type().is_symlink() => std::fs::remove_file(&updated).map_err(io(&updated))?,
            Ok(_) => {
                return Err(StoreError::Io {
                    path: updated,
                    source: std::io::Error::other("expected a symbolic link, found a file"),
                });
            }
            Err(_) => {}
        }
        std::os::unix::fs::symlink(&name, &updated).map_err(io(&updated))?;
        std::fs::rename(&updated, &current).map_err(io(&current))?;
        if let Ok(dir) = std::fs::File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        self.prune(&[OsString::from(&name)], previous.as_ref());
        Ok(issued)
    }

    /// Removes every `<prefix>-<time>.pem` but `keep` and `previous`.
    fn prune(&self, keep: &[OsString], previous: Option<&OsString>) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            if keep.contains(&file_name) || previous == Some(&file_name) {
                continue;
            }
            let Some(text) = file_name.to_str() else { continue };
            if !self.is_pair_name(text) {
                continue;
            }
            match std::fs::remove_file(entry.path()) {
                Ok(()) => tracing::debug!(file = %entry.path().display(), "removed an old certificate and key"),
                Err(e) => {
                    tracing::warn!(file = %entry.path().display(), error = %e, "cannot remove an old certificate and key")
                }
            }
        }
    }

    /// `<prefix>-YYYY-MM-DD-HH-MM-SS.pem`: a pair this store wrote.
    fn is_pair_name(&self, name: &str) -> bool {
        let Some(stamp) = name
            .strip_prefix(self.prefix)
            .and_then(|r| r.strip_prefix('-'))
            .and_then(|r| r.strip_suffix(".pem"))
        else {
            return false;
        };
        stamp.len() == 19
            && stamp.char_indices().all(|(i, c)| match i {
                4 | 7 | 10 | 13 | 16 => c == '-',
                _ => c.is_ascii_digit(),
            })
    }
}

/// `YYYY-MM-DD-HH-MM-SS` in UTC, the kubelet store's file-name format (Go's
/// `2006-01-02-15-04-05`).
pub fn timestamp_name(t: SystemTime) -> String {
    let d = time::OffsetDateTime::from(t);
    format!(
        "{:04}-{:02}-{:02}-{:02}-{:02}-{:02}",
        d.year(),
        u8::from(d.month()),
        d.day(),
        d.hour(),
        d.minute(),
        d.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn pair(cn: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        let cert = params.self_signed(&key).expect("cert");
        (cert.pem(), key.serialize_pem())
    }

    fn pairs_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn file_names_use_the_kubelet_format() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_325_143);
        assert_eq!(timestamp_name(t), "2026-11-22-05-25-43");
        let store = Store::new(Path::new("/x"), "kubelet-server");
        assert!(store.is_pair_name("kubelet-server-2026-11-22-05-25-43.pem"));
        assert!(!store.is_pair_name("kubelet-server-current.pem"));
        assert!(!store.is_pair_name("kubelet-server-updated.pem"));
        assert!(!store.is_pair_name("kubelet-gate-client-2026-11-22-05-25-43.pem"));
        assert!(!store.is_pair_name("kubelet-server-2026-11-22-05-25-43.pem.bak"));
    }

    #[test]
    fn updates_keep_the_current_and_the_previous_pair_only() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::new(dir.path(), "kubelet-server");
        assert!(store.load().expect("load").is_none());
        // Someone else's files stay.
        std::fs::write(dir.path().join("kubelet.crt"), "x").expect("write");
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        for i in 0..4u64 {
            let (cert, key) = pair(&format!("n{i}"));
            store
                .update(cert.as_bytes(), key.as_bytes(), t0 + Duration::from_secs(i))
                .expect("update");
        }
        assert_eq!(
            pairs_in(dir.path()),
            [
                "kubelet-server-2027-01-15-08-00-02.pem",
                "kubelet-server-2027-01-15-08-00-03.pem",
                "kubelet-server-current.pem",
                "kubelet.crt"
            ]
        );
        let target = std::fs::read_link(store.current_path()).expect("link");
        assert_eq!(target, Path::new("kubelet-server-2027-01-15-08-00-03.pem"));
        let current = store.load().expect("load").expect("current");
        assert_eq!(current.common_name(), "n3");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(&target))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn an_interrupted_swap_is_finished_at_load() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::new(dir.path(), "kubelet-gate-client");
        let (cert, key) = pair("system:node:a");
        store
            .update(cert.as_bytes(), key.as_bytes(), SystemTime::now())
            .expect("update");
        let current = store.current_path();
        std::fs::rename(&current, dir.path().join("kubelet-gate-client-updated.pem")).expect("rename");
        assert_eq!(
            store.load().expect("load").expect("recovered").common_name(),
            "system:node:a"
        );
        assert!(current.exists());
    }

    #[test]
    fn a_pair_that_does_not_parse_changes_nothing() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::new(dir.path(), "kubelet-server");
        let (cert, _) = pair("a");
        let (_, other_key) = pair("b");
        assert!(
            store
                .update(cert.as_bytes(), other_key.as_bytes(), SystemTime::now())
                .is_err()
        );
        assert!(pairs_in(dir.path()).is_empty());
    }
}
