//! `authorization.rbac.policyFiles`, reloaded when any of them changes: the files are read
//! together and validated as at start; a set that does not load (a half-written file, a rule
//! the API server would refuse) leaves the previous policy in force. RBAC mode caches no
//! decision, so the next request is judged by the new policy.

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::RbacPolicy;
use crate::reload::{ReloadStats, Source};

pub struct PolicyFiles {
    pub paths: Vec<PathBuf>,
    pub current: Arc<ArcSwap<RbacPolicy>>,
    pub stats: Arc<ReloadStats>,
}

impl Source for PolicyFiles {
    fn what(&self) -> &'static str {
        "RBAC policy"
    }

    fn files(&self) -> Vec<PathBuf> {
        self.paths.clone()
    }

    fn apply(&self, contents: &[Vec<u8>]) -> Result<(), String> {
        // As at start (`RbacPolicy::load` reads each file as UTF-8): a file that is not is refused.
        let sources = self
            .paths
            .iter()
            .zip(contents)
            .map(|(path, bytes)| match std::str::from_utf8(bytes) {
                Ok(text) => Ok((path.display().to_string(), text.to_owned())),
                Err(e) => Err(format!("{}: not UTF-8: {e}", path.display())),
            })
            .collect::<Result<Vec<_>, String>>()?;
        let policy = RbacPolicy::from_sources(&sources).map_err(|e| e.to_string())?;
        for w in policy.warnings() {
            tracing::warn!("{w}");
        }
        self.current.store(Arc::new(policy));
        Ok(())
    }

    fn stats(&self) -> Option<&ReloadStats> {
        Some(&self.stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_is_not_utf8_is_refused_as_at_start() {
        let current = Arc::new(ArcSwap::from_pointee(RbacPolicy::from_sources(&[]).expect("built-ins")));
        let before = current.load_full();
        let files = PolicyFiles {
            paths: vec![PathBuf::from("rbac.yaml")],
            current: current.clone(),
            stats: Arc::new(ReloadStats::default()),
        };
        let err = files.apply(&[b"kind: \xff\n".to_vec()]).expect_err("refused");
        assert!(err.starts_with("rbac.yaml: not UTF-8"), "{err}");
        assert!(Arc::ptr_eq(&before, &current.load_full()), "the previous policy stays");
    }
}
