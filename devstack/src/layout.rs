//! Where the local services keep their files: `<project>/.local/` (ignored by git).

use std::path::{Path, PathBuf};

/// The folders of one project's local services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// The layout of the project rooted at `root` (the folder holding the workspace `Cargo.toml`).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The layout of this source tree: the workspace this crate was built from, or the current
    /// folder when that tree is gone (a binary copied elsewhere).
    pub fn of_this_project() -> Self {
        let built_from = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .map(Path::to_path_buf);
        match built_from {
            Some(root) if root.join("Cargo.toml").is_file() => Self::new(root),
            _ => Self::new(std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."))),
        }
    }

    /// The project root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<project>/.local`: everything the local services write.
    pub fn local_dir(&self) -> PathBuf {
        self.root.join(".local")
    }

    /// The shell file written by `devstack up`.
    pub fn env_file(&self) -> PathBuf {
        self.local_dir().join("devstack.env")
    }

    pub(crate) fn postgres_dir(&self) -> PathBuf {
        self.local_dir().join("pg")
    }

    pub(crate) fn tansu_dir(&self) -> PathBuf {
        self.local_dir().join("tansu")
    }
}
