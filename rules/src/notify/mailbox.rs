//! The mailbox channel: each notice becomes an `.eml` file in a directory.
//!
//! It needs no server, so `panorama demo` (and a laptop without an SMTP
//! relay) can show exactly the mail an on-duty engineer would get; any mail
//! client opens the files. Files are replaced atomically (through
//! `panorama-durable`, directory fsync included), so a reader never sees
//! half a message and an accepted delivery survives a power cut, and are
//! named by the notice id, so a retried delivery replaces rather than
//! duplicates.

use std::path::PathBuf;

use lettre::message::Mailbox;
use serde::Deserialize;

use super::mail::build_message;
use super::{DeliveryError, Notice, Notifier};
use crate::notify::ChannelError;

/// `[receiver.mailbox]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailboxConfig {
    /// The directory (created if missing).
    pub dir: PathBuf,
    /// The From header (default `Panorama <panorama@localhost>`).
    #[serde(default)]
    pub from: Option<String>,
    /// The To header (default `on-duty@localhost`).
    #[serde(default)]
    pub to: Vec<String>,
}

impl MailboxConfig {
    /// Checks the addresses.
    ///
    /// # Errors
    /// An address that does not parse.
    pub fn validate(&self) -> Result<(), ChannelError> {
        self.addresses().map(|_| ())
    }

    fn addresses(&self) -> Result<(Mailbox, Vec<Mailbox>), ChannelError> {
        let from = self
            .from
            .as_deref()
            .unwrap_or("Panorama <panorama@localhost>")
            .parse::<Mailbox>()
            .map_err(|e| ChannelError::key("from", format!("`from`: {e}")))?;
        let to = if self.to.is_empty() {
            vec![
                "on-duty@localhost"
                    .parse::<Mailbox>()
                    .map_err(ChannelError::table)?,
            ]
        } else {
            self.to
                .iter()
                .map(|t| {
                    t.parse::<Mailbox>()
                        .map_err(|e| ChannelError::key("to", format!("`to` {t:?}: {e}")))
                })
                .collect::<Result<_, _>>()?
        };
        Ok((from, to))
    }
}

/// Writes notices as `.eml` files.
#[derive(Debug)]
pub struct MailboxWriter {
    dir: PathBuf,
    from: Mailbox,
    to: Vec<Mailbox>,
}

impl MailboxWriter {
    /// Creates the directory now, so that an unwritable place is a load error.
    ///
    /// # Errors
    /// Bad addresses or an unwritable directory.
    pub fn new(cfg: MailboxConfig) -> Result<MailboxWriter, ChannelError> {
        let (from, to) = cfg.addresses()?;
        std::fs::create_dir_all(&cfg.dir).map_err(|e| {
            ChannelError::table(format!("mailbox: cannot create {}: {e}", cfg.dir.display()))
        })?;
        Ok(MailboxWriter {
            dir: cfg.dir,
            from,
            to,
        })
    }
}

fn file_name(notice: &Notice) -> String {
    let id: String = notice
        .id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{}-{id}.eml", notice.created_ms)
}

#[async_trait::async_trait]
impl Notifier for MailboxWriter {
    async fn send(&self, notice: &Notice, to: Option<&[String]>) -> Result<(), DeliveryError> {
        let to = match to {
            None => self.to.clone(),
            Some(list) => list
                .iter()
                .map(|t| t.parse::<Mailbox>())
                .collect::<Result<_, _>>()
                .map_err(|e| DeliveryError::Permanent(format!("mailbox: recipient: {e}")))?,
        };
        let message = build_message(&self.from, &to, notice)
            .map_err(|e| DeliveryError::Permanent(e.to_string()))?;
        let bytes = message.formatted();
        let path = self.dir.join(file_name(notice));
        panorama_durable::write_atomic(&path, &bytes)
            .map_err(|e| DeliveryError::Transient(format!("mailbox {}: {e}", path.display())))
    }

    fn kind(&self) -> &'static str {
        "mailbox"
    }
}

impl super::Channel for MailboxConfig {
    const KIND: &'static str = "mailbox";

    fn check(&self) -> Result<(), ChannelError> {
        self.validate()
    }

    fn build(&self) -> Result<std::sync::Arc<dyn super::Notifier>, ChannelError> {
        MailboxWriter::new(self.clone())
            .map(|n| std::sync::Arc::new(n) as std::sync::Arc<dyn super::Notifier>)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::{AlertStatus, NoticeAlert, NoticeKind};

    #[tokio::test]
    async fn a_notice_becomes_one_eml_file_and_a_retry_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let w = MailboxWriter::new(MailboxConfig {
            dir: dir.path().join("mail"),
            from: None,
            to: vec![],
        })
        .unwrap();
        let notice = Notice {
            id: "oncall:pay-errors:1".into(),
            kind: NoticeKind::Firing,
            rule: "pay-errors".into(),
            severity: crate::rule::Severity::Critical,
            condition: "error_ratio > 5%".into(),
            labels: vec![],
            alerts: vec![NoticeAlert {
                status: AlertStatus::Firing,
                layer: Some(panorama_model::Layer::Call),
                service: "pay".into(),
                series: "payment-gateway".into(),
                host: String::new(),
                value: "31%".into(),
                threshold: "5%".into(),
                summary: "payments fail".into(),
                link: "http://127.0.0.1:7070/series?layer=call".into(),
                since_ms: 0,
                acked_by: None,
            }],
            created_ms: 1_795_352_400_000,
        };
        w.send(&notice, None).await.unwrap();
        w.send(&notice, None).await.unwrap();
        let files: Vec<_> = std::fs::read_dir(dir.path().join("mail"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        let text = std::fs::read_to_string(&files[0]).unwrap();
        assert!(
            text.contains("Subject: [FIRING 1] critical pay-errors"),
            "{text}"
        );
        assert!(text.contains("To: on-duty@localhost"), "{text}");
        assert!(text.contains("payment-gateway"));
    }
}
