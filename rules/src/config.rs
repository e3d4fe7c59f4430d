//! The `[rules]` section of the `panorama` file: where the rule files are
//! and how notifications link back to the dashboard.
//!
//! ```toml
//! [rules]
//! dir = "rules"                            # relative to the config file
//! dashboard_url = "https://panorama.example"  # links in notifications
//! ```

use std::path::PathBuf;

use panorama_model::{ConfigError, ConfigSource};
use serde::Deserialize;
use toml::Spanned;

/// The section as written (or as `--rules` and `--dashboard-url` give it).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesSection {
    /// The directory of rule files.
    pub dir: PathBuf,
    /// Base URL of the dashboard, for links in notifications.
    pub dashboard_url: Option<Spanned<String>>,
}

/// The checked section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulesConfig {
    /// The rules directory, relative paths taken from the config file's.
    pub dir: PathBuf,
    /// Base URL of the dashboard; `None` links to the collector's own
    /// address.
    pub dashboard_url: Option<String>,
}

impl RulesSection {
    /// Checks the section.
    ///
    /// # Errors
    /// A dashboard URL that is not http(s), at its place in the file.
    pub fn check(self, source: &ConfigSource<'_>) -> Result<RulesConfig, ConfigError> {
        if let Some(u) = &self.dashboard_url
            && !(u.get_ref().starts_with("http://") || u.get_ref().starts_with("https://"))
        {
            return Err(source.invalid(
                u.span().start,
                format!(
                    "{} {:?}: expected http(s)://host:port",
                    source.key("dashboard_url"),
                    u.get_ref()
                ),
            ));
        }
        Ok(RulesConfig {
            dir: source.resolve(self.dir),
            dashboard_url: self.dashboard_url.map(Spanned::into_inner),
        })
    }
}
