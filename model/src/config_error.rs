//! The one error type of every configuration check, and where the checked
//! values came from.
//!
//! Each crate reads its own section (the agent its file, the collector, the
//! rules engine and the dashboard their parts of the `panorama` file); they
//! all report through [`ConfigError`], so a user sees one style whatever
//! section is wrong. Reading files is not done here: the model does no I/O,
//! callers read the text and hand it over as a [`ConfigSource`].

use std::path::Path;

use crate::FilePosition;

/// A configuration error, with where it is.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Something in the file is wrong.
    #[error("{at}: {message}")]
    Invalid {
        /// Where.
        at: FilePosition,
        /// What is wrong and what was expected.
        message: String,
    },
    /// A command-line setting is wrong.
    #[error("{0}")]
    Flag(String),
}

/// Where the values being checked came from, so that an error points at
/// what to fix: a byte offset in a file becomes file:line:col; values
/// given as flags have no offset, and their errors name the flag instead.
#[derive(Debug, Clone, Copy)]
pub enum ConfigSource<'a> {
    /// A configuration file and its whole text; the offsets of `toml`'s
    /// spans index into `text`.
    File {
        /// The file, as the user named it.
        path: &'a Path,
        /// Its text.
        text: &'a str,
    },
    /// Command-line flags.
    Flags,
}

impl ConfigSource<'_> {
    /// An error at byte `offset` of the file (ignored for flags).
    pub fn invalid(&self, offset: usize, message: impl Into<String>) -> ConfigError {
        match self {
            ConfigSource::File { path, text } => ConfigError::Invalid {
                at: FilePosition::at(path, text, offset),
                message: message.into(),
            },
            ConfigSource::Flags => ConfigError::Flag(message.into()),
        }
    }

    /// How an error names the setting `key`: `` `time_zone` `` in a file,
    /// `--time-zone` on the command line.
    pub fn key(&self, key: &str) -> String {
        match self {
            ConfigSource::File { .. } => format!("`{key}`"),
            ConfigSource::Flags => format!("--{}", key.replace('_', "-")),
        }
    }

    /// The directory relative paths are taken from: the file's, or the
    /// working directory (`None`) for flags.
    pub fn base_dir(&self) -> Option<&Path> {
        match self {
            ConfigSource::File { path, .. } => Some(path.parent().unwrap_or(Path::new("."))),
            ConfigSource::Flags => None,
        }
    }

    /// `path` taken relative to [`ConfigSource::base_dir`].
    pub fn resolve(&self, path: std::path::PathBuf) -> std::path::PathBuf {
        match self.base_dir() {
            Some(base) if path.is_relative() => base.join(path),
            _ => path,
        }
    }

    /// Whether the values came from flags.
    pub fn is_flags(&self) -> bool {
        matches!(self, ConfigSource::Flags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_give_positions_and_flags_give_names() {
        let text = "a = 1\nb = x\n";
        let file = ConfigSource::File {
            path: Path::new("f.toml"),
            text,
        };
        assert_eq!(
            file.invalid(10, format!("{} bad", file.key("time_zone")))
                .to_string(),
            "f.toml:2:5: `time_zone` bad"
        );
        let flags = ConfigSource::Flags;
        assert_eq!(
            flags
                .invalid(10, format!("{} bad", flags.key("time_zone")))
                .to_string(),
            "--time-zone bad"
        );
        assert_eq!(
            file.resolve("rules".into()),
            Path::new("rules"),
            "a bare file name has an empty parent"
        );
        assert_eq!(
            ConfigSource::File {
                path: Path::new("/etc/p/panorama.toml"),
                text
            }
            .resolve("rules".into()),
            Path::new("/etc/p/rules")
        );
        assert_eq!(flags.resolve("rules".into()), Path::new("rules"));
    }
}
