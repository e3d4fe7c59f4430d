//! What a call says: severity, service, what is wrong and the value, in
//! words a text-to-speech voice reads well at 3 a.m. No URLs and no raw
//! ids (a voice spelling out a UUID helps nobody), each part short enough
//! for the providers' template variables.

use serde::Deserialize;

use crate::notify::{Notice, NoticeKind};

/// The language of the spoken text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// Mandarin.
    #[default]
    Zh,
    /// English.
    En,
}

/// Longest template variable, in characters: Aliyun's and Tencent's TTS
/// templates both take short variables (Aliyun refuses a `TtsParam` of
/// 250 characters or more in total, Tencent a message above 350).
pub const MAX_VAR_CHARS: usize = 20;

/// The four template variables, in this order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spoken {
    /// `critical` → 严重 / critical.
    pub severity: String,
    /// The service.
    pub service: String,
    /// What is wrong: the rule and the series, made speakable.
    pub what: String,
    /// The value.
    pub value: String,
}

impl Spoken {
    /// The variables for a notice.
    pub fn of(notice: &Notice, lang: Language) -> Spoken {
        let severity = match (notice.severity.as_str(), lang) {
            ("critical", Language::Zh) => "严重".to_owned(),
            ("warning", Language::Zh) => "警告".to_owned(),
            ("info", Language::Zh) => "提示".to_owned(),
            (other, _) => other.to_owned(),
        };
        let firing: Vec<_> = notice
            .alerts
            .iter()
            .filter(|a| a.status != crate::notify::AlertStatus::Resolved)
            .collect();
        let first = firing.first().copied().or(notice.alerts.first());
        let service = first.map(|a| speakable(&a.service)).unwrap_or_default();
        let rule = speakable(&notice.rule);
        let what = match (firing.len(), first) {
            (0 | 1, Some(a)) if !a.series.is_empty() => format!("{rule} {}", speakable(&a.series)),
            (0 | 1, _) => rule,
            (n, _) => match lang {
                Language::Zh => format!("{rule} 共{n}项"),
                Language::En => format!("{rule} on {n} series"),
            },
        };
        let value = first.map(|a| speakable(&a.value)).unwrap_or_default();
        Spoken {
            severity: cut(&severity),
            service: cut(&service),
            what: cut(&what),
            value: cut(&value),
        }
    }

    /// The whole sentence, for a gateway that takes free text.
    pub fn sentence(&self, kind: NoticeKind, lang: Language, ack_key: &str) -> String {
        match (lang, kind) {
            (Language::Zh, NoticeKind::Resolved) => format!(
                "{}告警已恢复，{}，{}。",
                self.severity, self.service, self.what
            ),
            (Language::Zh, _) => format!(
                "{}告警，{}，{}，当前{}。确认请按{ack_key}。",
                self.severity, self.service, self.what, self.value
            ),
            (Language::En, NoticeKind::Resolved) => format!(
                "Resolved {} alert. {}, {}.",
                self.severity, self.service, self.what
            ),
            (Language::En, _) => format!(
                "{} alert. {}, {}, at {}. Press {ack_key} to acknowledge.",
                self.severity, self.service, self.what, self.value
            ),
        }
    }
}

/// `s` without what a voice should not read: URLs, ids (long digit runs,
/// hex, UUIDs), route placeholders; path separators become spaces.
pub fn speakable(s: &str) -> String {
    let mut words = Vec::new();
    for token in s.split_whitespace() {
        if token.contains("://") || token.starts_with("www.") {
            continue;
        }
        for w in token.split(['/', '_', '-', '?', '&', '=']) {
            let digits = w.chars().filter(char::is_ascii_digit).count();
            let hex = w.len() >= 8 && w.chars().all(|c| c.is_ascii_hexdigit());
            let placeholder = w.starts_with(':') || w.starts_with('{') || w.starts_with('<');
            if w.is_empty() || digits >= 5 || hex || placeholder {
                continue;
            }
            words.push(w);
        }
    }
    words.join(" ")
}

fn cut(s: &str) -> String {
    s.chars()
        .take(MAX_VAR_CHARS)
        .collect::<String>()
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::{AlertStatus, NoticeAlert};

    #[test]
    fn urls_and_ids_are_not_spoken() {
        assert_eq!(
            speakable("GET /user/:id/orders/0f3a9c1e77b2 https://x.example.com/a 1795352400000"),
            "GET user orders"
        );
        assert_eq!(speakable("url-error-ratio"), "url error ratio");
    }

    #[test]
    fn the_variables_are_short_and_in_the_language() {
        let n = Notice {
            id: "n".into(),
            kind: NoticeKind::Firing,
            rule: "login-errors".into(),
            severity: crate::rule::Severity::Critical,
            condition: String::new(),
            labels: vec![],
            alerts: vec![NoticeAlert {
                status: AlertStatus::Firing,
                layer: Some(panorama_model::Layer::Url),
                service: "login".into(),
                series: "POST /api/v1/sessions/refresh/with/a/long/tail".into(),
                host: "web1".into(),
                value: "75%".into(),
                threshold: "50%".into(),
                summary: String::new(),
                link: "https://pano.example.com/series?x=1".into(),
                since_ms: 0,
                acked_by: None,
            }],
            created_ms: 0,
        };
        let zh = Spoken::of(&n, Language::Zh);
        assert_eq!(zh.severity, "严重");
        assert!(zh.what.chars().count() <= MAX_VAR_CHARS);
        let s = zh.sentence(NoticeKind::Firing, Language::Zh, "1");
        assert!(s.contains("确认请按1") && !s.contains("http"), "{s}");
        let en = Spoken::of(&n, Language::En).sentence(NoticeKind::Firing, Language::En, "1");
        assert!(
            en.starts_with("critical alert. login, login errors POST"),
            "{en}"
        );
        assert!(en.contains("at 75%"), "{en}");
    }
}
