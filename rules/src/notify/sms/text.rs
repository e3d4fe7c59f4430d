//! The SMS text: one message where possible. One SMS is 160 GSM-7
//! characters, or 70 as soon as one character is outside that alphabet;
//! when the text does not fit, the middle goes and the link never does.

use crate::notify::{Notice, NoticeKind};

/// The SMS text: `FIRING CRIT rule: service series host value vs threshold link`.
pub fn short_text(notice: &Notice, max_chars: Option<usize>) -> String {
    let kind = match notice.kind {
        NoticeKind::Firing => "FIRING",
        NoticeKind::Repeat => "STILL",
        NoticeKind::Resolved => "RESOLVED",
    };
    let severity = match notice.severity.as_str() {
        "critical" => "CRIT".to_owned(),
        "warning" => "WARN".to_owned(),
        other => other.to_uppercase(),
    };
    let mut head = format!("{kind} {severity} {}:", notice.rule);
    if let Some(short) = crate::incident::notice::short(notice) {
        head = short;
    }
    match notice.alerts.as_slice() {
        _ if crate::incident::notice::short(notice).is_some() => {}
        [] => {}
        [a] => {
            for part in [&a.service, &a.series, &a.host, &a.value] {
                if !part.is_empty() {
                    head.push(' ');
                    head.push_str(part);
                }
            }
            if !a.threshold.is_empty() {
                head.push_str(" vs ");
                head.push_str(&a.threshold);
            }
        }
        [a, rest @ ..] => {
            head.push_str(&format!(" {} series, e.g.", rest.len() + 1));
            for part in [&a.series, &a.host, &a.value] {
                if !part.is_empty() {
                    head.push(' ');
                    head.push_str(part);
                }
            }
        }
    }
    let link = notice
        .alerts
        .iter()
        .map(|a| a.link.as_str())
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let join = |head: &str| {
        if link.is_empty() {
            head.to_owned()
        } else {
            format!("{head} {link}")
        }
    };
    let whole = join(&head);
    let gsm = gsm_len(&whole);
    let limit = max_chars.unwrap_or(if gsm.is_some() { 160 } else { 70 });
    let len = gsm.unwrap_or_else(|| whole.chars().count());
    if len <= limit {
        return whole;
    }
    let link_len = if link.is_empty() {
        0
    } else {
        gsm_len(link).unwrap_or_else(|| link.chars().count()) + 1
    };
    let ellipsis = if gsm.is_some() { ".." } else { "…" };
    let budget = limit.saturating_sub(link_len);
    // Kind, severity and rule stay whole when they leave room for a few
    // characters of the series; the series and value are cut instead.
    let prefix = format!("{kind} {severity} {}:", notice.rule);
    let prefix_len = gsm_len(&prefix).unwrap_or_else(|| prefix.chars().count());
    let shortened = if prefix_len + 10 <= budget && head.starts_with(&prefix) {
        let detail = &head[prefix.len()..];
        format!(
            "{prefix}{}",
            cut_middle(detail, budget - prefix_len, ellipsis)
        )
    } else {
        // A link that alone fills the message still goes out, as a second
        // part, after at least the first words.
        cut_middle(&head, budget.max(12), ellipsis)
    };
    join(&shortened)
}

/// `s` in at most `budget` units (GSM septets when it is GSM text,
/// characters otherwise), the middle replaced by `ellipsis`. The start
/// (kind, severity, rule) is worth more than the end (the value), so the
/// start gets the larger share.
fn cut_middle(s: &str, budget: usize, ellipsis: &str) -> String {
    let cost = |c: char| gsm_char_len(c).unwrap_or(1);
    let total: usize = s.chars().map(cost).sum();
    if total <= budget {
        return s.to_owned();
    }
    let room = budget.saturating_sub(ellipsis.chars().count());
    let tail_room = room * 2 / 5;
    let head_room = room - tail_room;
    let mut head = String::new();
    let mut used = 0;
    for c in s.chars() {
        if used + cost(c) > head_room {
            break;
        }
        used += cost(c);
        head.push(c);
    }
    let mut tail: Vec<char> = Vec::new();
    let mut used = 0;
    for c in s.chars().rev() {
        if used + cost(c) > tail_room {
            break;
        }
        used += cost(c);
        tail.push(c);
    }
    let tail: String = tail.into_iter().rev().collect();
    format!("{}{ellipsis}{}", head.trim_end(), tail.trim_start())
}

/// Septets `s` takes in GSM-7, or `None` if it cannot be sent in GSM-7.
pub fn gsm_len(s: &str) -> Option<usize> {
    s.chars().map(gsm_char_len).sum()
}

fn gsm_char_len(c: char) -> Option<usize> {
    const BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
                         ¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
    const EXTENDED: &str = "^{}\\[~]|€\x0c";
    if BASIC.contains(c) {
        Some(1)
    } else if EXTENDED.contains(c) {
        Some(2)
    } else {
        None
    }
}
