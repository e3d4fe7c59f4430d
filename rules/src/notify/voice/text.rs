//! What a call says: severity, service, what is wrong and the value, in
//! words a text-to-speech voice reads well at 3 a.m. No URLs and no raw
//! ids (a voice spelling out a UUID helps nobody), each part short enough
//! for the providers' template variables. An incident's call says what its
//! SMS says: the probable cause and how many effects, nothing of the
//! effects themselves.

use serde::Deserialize;

use crate::notify::{Notice, NoticeAlert, NoticeKind};

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
    /// The value; for an incident, the cause's value and the number of
    /// effects.
    pub value: String,
    /// This is an incident's call: `what` is its probable cause.
    pub incident: bool,
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
        if let Some((cause, effects)) = crate::incident::notice::cause_and_effects(notice) {
            return Spoken::of_incident(notice, lang, severity, cause, effects);
        }
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
            incident: false,
        }
    }

    /// An incident's variables: the cause's service, its series (or host,
    /// or rule) as what is wrong, and its value with the count of effects,
    /// which is kept whole when the value is cut.
    fn of_incident(
        notice: &Notice,
        lang: Language,
        severity: String,
        cause: &NoticeAlert,
        effects: usize,
    ) -> Spoken {
        let name = [&cause.series, &cause.host, &notice.rule]
            .into_iter()
            .find(|s| !s.is_empty())
            .map_or_else(String::new, |s| speakable(s));
        let what = if crate::incident::notice::cause_changed(notice) {
            match lang {
                // Read after 原因 / cause: "the cause is now …".
                Language::Zh => format!("现为{name}"),
                Language::En => format!("now {name}"),
            }
        } else {
            name
        };
        let (sep, count) = match lang {
            Language::Zh => ("，", format!("影响{effects}项")),
            Language::En => (
                ", ",
                format!(
                    "{effects} effect{}",
                    crate::incident::notice::plural(effects)
                ),
            ),
        };
        let room = MAX_VAR_CHARS.saturating_sub(sep.chars().count() + count.chars().count());
        let value = match cut_to(&speakable(&cause.value), room) {
            v if v.is_empty() => count,
            v => format!("{v}{sep}{count}"),
        };
        Spoken {
            severity: cut(&severity),
            service: cut(&speakable(&cause.service)),
            what: cut(&what),
            value,
            incident: true,
        }
    }

    /// The whole sentence, for a gateway that takes free text.
    pub fn sentence(&self, kind: NoticeKind, lang: Language, ack_key: &str) -> String {
        if self.incident {
            return self.incident_sentence(kind, lang, ack_key);
        }
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

    fn incident_sentence(&self, kind: NoticeKind, lang: Language, ack_key: &str) -> String {
        match (lang, kind) {
            (Language::Zh, NoticeKind::Resolved) => format!(
                "{}故障已恢复，{}，原因{}。",
                self.severity, self.service, self.what
            ),
            (Language::Zh, _) => format!(
                "{}故障，{}，原因{}，当前{}。确认请按{ack_key}。",
                self.severity, self.service, self.what, self.value
            ),
            (Language::En, NoticeKind::Resolved) => format!(
                "Resolved {} incident. {}, cause {}.",
                self.severity, self.service, self.what
            ),
            (Language::En, _) => format!(
                "{} incident. {}, cause {}, at {}. Press {ack_key} to acknowledge.",
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
    cut_to(s, MAX_VAR_CHARS)
}

fn cut_to(s: &str, chars: usize) -> String {
    s.chars().take(chars).collect::<String>().trim().to_owned()
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

    fn incident_notice(cause_changed: bool) -> Notice {
        let line = |layer: panorama_model::Layer, series: &str, value: &str| NoticeAlert {
            status: AlertStatus::Firing,
            layer: Some(layer),
            service: "game".into(),
            series: series.into(),
            host: String::new(),
            value: value.into(),
            threshold: String::new(),
            summary: String::new(),
            link: String::new(),
            since_ms: 0,
            acked_by: None,
        };
        let mut labels = vec![(crate::incident::notice::LABEL.into(), "2".into())];
        if cause_changed {
            labels.push((crate::incident::notice::CAUSE_LABEL.into(), "now".into()));
        }
        Notice {
            id: "voice:incident-2:1".into(),
            kind: NoticeKind::Firing,
            rule: "sessions-redis-down".into(),
            severity: crate::rule::Severity::Critical,
            condition: String::new(),
            labels,
            alerts: vec![
                line(panorama_model::Layer::Component, "redis@sessions ping", "7"),
                line(panorama_model::Layer::Call, "redis:sessions", "100%"),
                line(panorama_model::Layer::Url, "POST /api/login", "99%"),
            ],
            created_ms: 0,
        }
    }

    #[test]
    fn an_incident_call_names_the_cause_and_counts_the_effects_like_its_sms() {
        let n = incident_notice(false);
        let sms = crate::incident::notice::short(&n).unwrap();
        assert_eq!(
            sms,
            "FIRING incident 2: cause game redis@sessions ping 7, 2 effects"
        );
        let en = Spoken::of(&n, Language::En);
        assert_eq!(
            en,
            Spoken {
                severity: "critical".into(),
                service: "game".into(),
                what: "redis@sessions ping".into(),
                value: "7, 2 effects".into(),
                incident: true,
            }
        );
        assert_eq!(
            en.sentence(NoticeKind::Firing, Language::En, "1"),
            "critical incident. game, cause redis@sessions ping, at 7, 2 effects. Press 1 to acknowledge."
        );
        // Nothing of the effects themselves is read out.
        let all = format!("{en:?}");
        assert!(
            !all.contains("login") && !all.contains("redis:sessions"),
            "{all}"
        );
        let zh = Spoken::of(&n, Language::Zh);
        assert_eq!(zh.value, "7，影响2项");
        assert_eq!(
            zh.sentence(NoticeKind::Firing, Language::Zh, "1"),
            "严重故障，game，原因redis@sessions ping，当前7，影响2项。确认请按1。"
        );
    }

    #[test]
    fn a_changed_cause_is_said_and_a_long_value_never_cuts_the_count() {
        let mut n = incident_notice(true);
        n.alerts[0].value = "123456789 slow queries and more".into();
        let en = Spoken::of(&n, Language::En);
        assert_eq!(en.what, "now redis@sessions p");
        assert!(en.value.ends_with(", 2 effects"), "{}", en.value);
        assert!(en.value.chars().count() <= MAX_VAR_CHARS, "{}", en.value);
        assert!(
            en.sentence(NoticeKind::Firing, Language::En, "1")
                .contains("cause now redis"),
        );
        let zh = Spoken::of(&n, Language::Zh);
        assert!(zh.what.starts_with("现为redis"), "{}", zh.what);
        assert!(zh.value.ends_with("影响2项"), "{}", zh.value);
        // An incident of one effect.
        n.alerts.truncate(2);
        assert!(Spoken::of(&n, Language::En).value.ends_with(", 1 effect"));
    }
}
