//! What leaves the rules engine: one [`Notice`] per receiver and group of
//! alerts, and the channels that deliver it.
//!
//! A notice is self-contained (it carries the rendered values, not
//! references into the engine's state) because it is stored in the outbox
//! before any channel sees it and may be delivered after a restart, when
//! the rule that produced it may have changed.

pub mod dingtalk;
mod error;
pub mod feishu;
pub(crate) mod http;
pub mod mail;
pub mod mailbox;
pub mod sms;
pub mod template;
pub mod voice;
pub mod webhook;
pub mod wecom;

use std::sync::Arc;

use panorama_model::Layer;
use serde::{Deserialize, Serialize};

use crate::rule::Severity;
pub use error::ChannelError;

/// One kind of channel: the table `[receiver.<KIND>]` it reads and the
/// client it builds. A new channel is one file implementing this for its
/// config type, plus one line in the registration list below.
pub trait Channel: serde::de::DeserializeOwned + Clone + std::fmt::Debug + Send + Sync {
    /// The table name under `[receiver]`, also the channel's kind.
    const KIND: &'static str;

    /// Checks what can be checked without the network or the environment.
    ///
    /// # Errors
    /// What is wrong, naming the key.
    fn check(&self) -> Result<(), ChannelError>;

    /// A client for it, reading secrets now.
    ///
    /// # Errors
    /// What is missing.
    fn build(&self) -> Result<Arc<dyn Notifier>, ChannelError>;
}

/// Declares every channel once: the [`ChannelConfig`] variant, its config
/// type and its doc. `KINDS`, `parse`, `kind` and `build` follow from it.
macro_rules! channels {
    ($($(#[doc = $doc:literal])* $variant:ident($ty:ty),)*) => {
        /// A receiver's channel, checked: what `[receiver.<kind>]` held.
        #[derive(Debug, Clone)]
        pub enum ChannelConfig {
            $($(#[doc = $doc])* $variant(Box<$ty>),)*
        }

        impl ChannelConfig {
            /// The table names a receiver may carry, one of them.
            pub const KINDS: &'static [&'static str] = &[$(<$ty as Channel>::KIND),*];

            /// Reads and checks the `[receiver.<kind>]` table.
            ///
            /// # Errors
            /// Unknown kind, unknown or missing keys, bad values; the message says
            /// what was expected.
            pub fn parse(kind: &str, table: toml::Table) -> Result<ChannelConfig, ChannelError> {
                $(
                    if kind == <$ty as Channel>::KIND {
                        let c: $ty = toml::Value::Table(table)
                            .try_into()
                            .map_err(|e: toml::de::Error| ChannelError::table(e.message().trim()))?;
                        c.check()?;
                        return Ok(ChannelConfig::$variant(Box::new(c)));
                    }
                )*
                Err(ChannelError::table(format!(
                    "unknown channel `{kind}`; expected one of {}",
                    Self::KINDS.join(", ")
                )))
            }

            /// The channel's kind.
            pub fn kind(&self) -> &'static str {
                match self {
                    $(ChannelConfig::$variant(_) => <$ty as Channel>::KIND,)*
                }
            }

            /// A client for it. Done at load time, so that a missing password
            /// variable or CA file is a load error, not a failed page at 3 a.m.
            ///
            /// # Errors
            /// What is missing.
            pub fn build(&self) -> Result<Arc<dyn Notifier>, ChannelError> {
                match self {
                    $(ChannelConfig::$variant(c) => c.build(),)*
                }
            }
        }
    };
}

channels! {
    /// `[receiver.mail]`: SMTP.
    Mail(mail::MailConfig),
    /// `[receiver.sms]`: Aliyun SMS or an HTTP gateway.
    Sms(sms::SmsConfig),
    /// `[receiver.dingtalk]`: a DingTalk group robot.
    DingTalk(dingtalk::DingTalkConfig),
    /// `[receiver.wecom]`: a WeCom group robot.
    WeCom(wecom::WeComConfig),
    /// `[receiver.feishu]`: a Feishu (Lark) custom robot.
    Feishu(feishu::FeishuConfig),
    /// `[receiver.voice]`: a phone call, acknowledged by keypress.
    Voice(voice::VoiceConfig),
    /// `[receiver.webhook]`: JSON to any URL.
    Webhook(webhook::WebhookConfig),
    /// `[receiver.mailbox]`: `.eml` files in a directory.
    Mailbox(mailbox::MailboxConfig),
}

/// Why a delivery failed, sorted for the outbox: transient failures are
/// retried with backoff, permanent ones are given up on at once and
/// reported (a retry cannot help a refused signature or a 4xx from a robot
/// that says the token is wrong).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// Worth retrying: connection refused, timeout, 5xx, rate limited.
    #[error("{0}")]
    Transient(String),
    /// Not worth retrying.
    #[error("{0}")]
    Permanent(String),
}

impl DeliveryError {
    /// True when retrying cannot help.
    pub fn is_permanent(&self) -> bool {
        matches!(self, DeliveryError::Permanent(_))
    }
}

/// One way of delivering notices: mail, SMS, a chat robot, a webhook.
/// Every channel has the same shape so that the outbox, retries and the
/// history treat them alike.
#[async_trait::async_trait]
pub trait Notifier: Send + Sync {
    /// Delivers one notice. `to` replaces the configured recipients when
    /// given (mail addresses, phone numbers or robot @-mentions, as the
    /// channel understands them): a rota resolves who is on duty.
    async fn send(&self, notice: &Notice, to: Option<&[String]>) -> Result<(), DeliveryError>;

    /// `mail`, `sms`, `dingtalk`, `wecom`, `feishu`, `webhook`, …
    fn kind(&self) -> &'static str;

    /// The voice channel behind this notifier, for call receipts.
    fn voice(&self) -> Option<&voice::Voice> {
        None
    }
}

/// Why a notice goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    /// Alerts started firing (or lost their data while firing).
    Firing,
    /// Still firing after the receiver's repeat interval.
    Repeat,
    /// Every alert in the notice recovered.
    Resolved,
}

impl NoticeKind {
    /// Upper-case word for subjects: `FIRING`, `REPEAT`, `RESOLVED`.
    pub fn word(self) -> &'static str {
        match self {
            NoticeKind::Firing => "FIRING",
            NoticeKind::Repeat => "REPEAT",
            NoticeKind::Resolved => "RESOLVED",
        }
    }
}

/// Where one alert of a notice is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    /// The condition holds.
    Firing,
    /// Was firing; the data stopped. Not a recovery.
    NoData,
    /// Recovered.
    Resolved,
}

impl AlertStatus {
    /// Lower-case word for bodies.
    pub fn word(self) -> &'static str {
        match self {
            AlertStatus::Firing => "firing",
            AlertStatus::NoData => "no data",
            AlertStatus::Resolved => "resolved",
        }
    }
}

/// One alert inside a notice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoticeAlert {
    /// Where it is.
    pub status: AlertStatus,
    /// The layer it lives in; `None` for a digest's lines, which stand for
    /// held-back notices rather than series.
    #[serde(with = "layer_or_empty")]
    pub layer: Option<Layer>,
    /// Service.
    pub service: String,
    /// Series name, or empty when the rule groups by host or service.
    pub series: String,
    /// Host, or empty when the rule does not group by host.
    pub host: String,
    /// The value that breached (or the latest), already formatted with its unit.
    pub value: String,
    /// The threshold, formatted, or empty.
    pub threshold: String,
    /// The rule's summary annotation, rendered for this alert.
    pub summary: String,
    /// Absolute dashboard URL of the series at the alert's minute.
    pub link: String,
    /// When the episode began, Unix ms.
    pub since_ms: i64,
    /// Who acknowledged it, if anyone.
    pub acked_by: Option<String>,
}

/// `NoticeAlert::layer` on the wire and in the outbox: the layer's name, or
/// the empty string a digest's lines have always carried, so outboxes and
/// webhook payloads written before the field was typed still read.
mod layer_or_empty {
    use panorama_model::Layer;
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub(super) fn serialize<S: Serializer>(layer: &Option<Layer>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(layer.map_or("", Layer::as_str))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Layer>, D::Error> {
        let name = String::deserialize(d)?;
        if name.is_empty() {
            return Ok(None);
        }
        name.parse().map(Some).map_err(D::Error::custom)
    }
}

/// One message to one receiver: a group of alerts of one rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    /// Deterministic id (also the outbox id and the mail's Message-ID local part).
    pub id: String,
    /// Why it goes out.
    pub kind: NoticeKind,
    /// The rule's name.
    pub rule: String,
    /// The rule's severity.
    pub severity: Severity,
    /// The rule's condition as written, for the reader.
    pub condition: String,
    /// Rule labels plus the group's labels.
    pub labels: Vec<(String, String)>,
    /// The alerts, firing first.
    pub alerts: Vec<NoticeAlert>,
    /// When it was decided, Unix ms.
    pub created_ms: i64,
}

impl NoticeAlert {
    /// The layer's name, empty for a digest's lines.
    pub fn layer_name(&self) -> &'static str {
        self.layer.map_or("", Layer::as_str)
    }
}

impl Notice {
    /// Alerts firing (or without data) in this notice.
    pub fn firing(&self) -> usize {
        self.alerts
            .iter()
            .filter(|a| a.status != AlertStatus::Resolved)
            .count()
    }

    /// A one-line title: `[FIRING 3] critical url-error-ratio: login POST /pay 12.5% > 5%`.
    /// With one alert it names the series, value and threshold; with many,
    /// how many series.
    pub fn title(&self) -> String {
        if let Some(t) = crate::incident::notice::headline(self) {
            return t;
        }
        let head = format!(
            "[{} {}] {} {}",
            self.kind.word(),
            self.alerts.len(),
            self.severity,
            self.rule
        );
        match self.alerts.as_slice() {
            [a] => {
                let what = [
                    a.layer_name(),
                    a.service.as_str(),
                    a.series.as_str(),
                    a.host.as_str(),
                ]
                .iter()
                .filter(|s| !s.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join(" ");
                if a.threshold.is_empty() {
                    format!("{head}: {what} {} ({})", a.value, a.status.word())
                } else {
                    format!(
                        "{head}: {what} {} vs {} ({})",
                        a.value,
                        a.threshold,
                        a.status.word()
                    )
                }
            }
            many => format!("{head}: {} series", many.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Outboxes written before the layer was typed hold `""` for a digest's
    /// lines and a layer's name otherwise; both must still load, and write
    /// back the same way.
    #[test]
    fn layer_reads_and_writes_as_before() {
        let line = |layer: &str| {
            format!(
                r#"{{"status":"firing","layer":"{layer}","service":"s","series":"x","host":"",
                "value":"1","threshold":"","summary":"","link":"","since_ms":0,"acked_by":null}}"#
            )
        };
        let digest: NoticeAlert = serde_json::from_str(&line("")).expect("digest line");
        assert_eq!(digest.layer, None);
        assert_eq!(digest.layer_name(), "");
        let url: NoticeAlert = serde_json::from_str(&line("url")).expect("url line");
        assert_eq!(url.layer, Some(Layer::Url));
        let back = serde_json::to_value(&digest).expect("serialize");
        assert_eq!(back["layer"], "");
        assert_eq!(
            serde_json::to_value(&url).expect("serialize")["layer"],
            "url"
        );
        let bad = serde_json::from_str::<NoticeAlert>(&line("network"));
        assert!(
            bad.is_err(),
            "an unknown layer is an error, not a silent default"
        );
    }
}
