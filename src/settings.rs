//! Where the studio keeps its own files: the demo project and the last opened project.
//!
//! The folder is `$DTGAN_STUDIO_HOME` when set, else the platform's data folder
//! (`~/.local/share/dtgan-studio` on Linux).

use std::path::{Path, PathBuf};

use crate::fsutil::write_atomic;

/// Environment variable that overrides the studio's data folder.
pub const HOME_ENV: &str = "DTGAN_STUDIO_HOME";

/// The studio's data folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The folder.
    pub home: PathBuf,
}

impl Settings {
    /// The data folder from the environment, or `None` when the platform has none.
    pub fn from_env() -> Option<Self> {
        match std::env::var_os(HOME_ENV) {
            Some(home) if !home.is_empty() => Some(Self { home: home.into() }),
            _ => dirs::data_dir().map(|d| Self {
                home: d.join("dtgan-studio"),
            }),
        }
    }

    /// Where the demo project is made on first start.
    pub fn demo_dir(&self) -> PathBuf {
        self.home.join("demo")
    }

    fn last_project_file(&self) -> PathBuf {
        self.home.join("last_project")
    }

    /// The project opened last, if it still exists.
    pub fn last_project(&self) -> Option<PathBuf> {
        let text = std::fs::read_to_string(self.last_project_file()).ok()?;
        let path = PathBuf::from(text.trim_end_matches('\n'));
        path.join(crate::project::MANIFEST_FILE)
            .is_file()
            .then_some(path)
    }

    /// Records `root` as the project to open next time.
    pub fn remember_project(&self, root: &Path) -> std::io::Result<()> {
        let abs = std::path::absolute(root)?;
        let mut text = abs.to_string_lossy().into_owned();
        text.push('\n');
        write_atomic(&self.last_project_file(), text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_only_existing_projects() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Settings {
            home: dir.path().join("home"),
        };
        assert_eq!(s.last_project(), None);
        let proj = crate::project::Project::open_or_create(dir.path().join("p")).expect("create");
        s.remember_project(&proj.root).expect("remember");
        assert_eq!(s.last_project(), Some(proj.root.clone()));
        std::fs::remove_file(proj.manifest_path()).expect("rm");
        assert_eq!(s.last_project(), None);
    }
}
