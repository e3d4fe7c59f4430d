//! Who is on duty: a rotation of people with a fixed handover (every week,
//! say, on Monday at 10:00 local time), and overrides for swaps.
//!
//! The rota is anchored at one handover instant written with its UTC
//! offset, so "Monday 10:00 in Shanghai" needs no time-zone database and
//! cannot drift: handover `k` is `first_handover + k * every`.

use panorama_model::{DAY_MS, HOUR_MS};
use serde::{Deserialize, Serialize};

use crate::notify::ChannelError;

/// One person who can be on duty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Person {
    /// Unique name.
    pub name: String,
    /// Mail address, for mail channels.
    #[serde(default)]
    pub email: Option<String>,
    /// Mobile number, for SMS and for robot @-mentions.
    #[serde(default)]
    pub phone: Option<String>,
    /// Most SMS this person gets per hour; beyond, alerts are folded into
    /// a digest sent when the hour allows.
    #[serde(default)]
    pub sms_per_hour: Option<u32>,
}

/// A swap: `person` is on duty over `[from, until)` whatever the rotation says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Override {
    /// Start, RFC 3339 with offset.
    pub from: String,
    /// End, RFC 3339 with offset.
    pub until: String,
    /// Who.
    pub person: String,
}

/// `[receiver.rota]` as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotaConfig {
    /// The rotation order.
    pub people: Vec<String>,
    /// When `people[0]`'s first turn began: RFC 3339 with offset, such as
    /// `2026-11-02T10:00:00+08:00` (a Monday 10:00 in Shanghai).
    pub first_handover: String,
    /// Length of a turn (default one week).
    #[serde(default)]
    pub every: Option<String>,
    /// Receivers that deliver to the person on duty (a mail receiver gets
    /// their email, an SMS or robot receiver their phone).
    pub via: Vec<String>,
    /// Swaps.
    #[serde(default, rename = "override")]
    pub overrides: Vec<Override>,
}

/// A checked rota.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rota {
    /// The rotation order.
    pub people: Vec<String>,
    /// First handover, Unix ms.
    pub first_ms: i64,
    /// Turn length, ms.
    pub every_ms: i64,
    /// Delivering receivers.
    pub via: Vec<String>,
    /// Swaps, `(from_ms, until_ms, person)`.
    pub overrides: Vec<(i64, i64, String)>,
}

fn instant(s: &str, what: &str) -> Result<i64, ChannelError> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|e| {
            ChannelError::key(
                what,
                format!("`{what}` {s:?}: expected RFC 3339 with an offset, such as 2026-11-02T10:00:00+08:00 ({e})"),
            )
        })
}

impl RotaConfig {
    /// Checks it (people and via receivers are checked against the whole
    /// directory by the loader).
    ///
    /// # Errors
    /// What is wrong.
    pub fn check(&self) -> Result<Rota, ChannelError> {
        if self.people.is_empty() {
            return Err(ChannelError::key(
                "people",
                "`people` must name at least one person",
            ));
        }
        if self.via.is_empty() {
            return Err(ChannelError::key(
                "via",
                "`via` must name at least one receiver that delivers",
            ));
        }
        let first_ms = instant(&self.first_handover, "first_handover")?;
        let every_ms = match &self.every {
            None => 7 * DAY_MS,
            Some(e) => crate::rule::expr::parse_duration(e)
                .map_err(|m| ChannelError::key("every", format!("`every`: {m}")))?,
        };
        if every_ms < HOUR_MS {
            return Err(ChannelError::key("every", "`every` must be at least 1h"));
        }
        let mut overrides = Vec::new();
        for o in &self.overrides {
            let from = instant(&o.from, "override.from")?;
            let until = instant(&o.until, "override.until")?;
            if until <= from {
                return Err(ChannelError::key(
                    "override.until",
                    format!("override for {}: `until` must be after `from`", o.person),
                ));
            }
            overrides.push((from, until, o.person.clone()));
        }
        Ok(Rota {
            people: self.people.clone(),
            first_ms,
            every_ms,
            via: self.via.clone(),
            overrides,
        })
    }
}

impl Rota {
    /// Who is on duty at `at_ms`, and until when (the next handover or the
    /// end of the override).
    pub fn on_duty(&self, at_ms: i64) -> (String, i64) {
        if let Some((_, until, p)) = self
            .overrides
            .iter()
            .find(|(from, until, _)| *from <= at_ms && at_ms < *until)
        {
            return (p.clone(), *until);
        }
        let turn = (at_ms - self.first_ms).div_euclid(self.every_ms);
        let n = self.people.len() as i64;
        let who = self.people[turn.rem_euclid(n) as usize].clone();
        let mut until = self.first_ms + (turn + 1) * self.every_ms;
        // An override starting before the next handover ends this turn early.
        if let Some(next) = self
            .overrides
            .iter()
            .map(|(from, _, _)| *from)
            .filter(|from| *from > at_ms && *from < until)
            .min()
        {
            until = next;
        }
        (who, until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rota() -> Rota {
        RotaConfig {
            people: vec!["ana".into(), "bo".into(), "chen".into()],
            first_handover: "2026-11-02T10:00:00+08:00".into(),
            every: None,
            via: vec!["mail".into()],
            overrides: vec![Override {
                from: "2026-11-20T18:00:00+08:00".into(),
                until: "2026-11-21T09:00:00+08:00".into(),
                person: "ana".into(),
            }],
        }
        .check()
        .unwrap()
    }

    fn at(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn handover_is_exact_and_wraps() {
        let r = rota();
        assert_eq!(r.on_duty(at("2026-11-02T10:00:00+08:00")).0, "ana");
        assert_eq!(r.on_duty(at("2026-11-09T09:59:59+08:00")).0, "ana");
        let (who, until) = r.on_duty(at("2026-11-09T10:00:00+08:00"));
        assert_eq!(who, "bo");
        assert_eq!(until, at("2026-11-16T10:00:00+08:00"));
        assert_eq!(r.on_duty(at("2026-11-23T10:00:00+08:00")).0, "ana", "wraps");
        // Before the first handover the rotation runs backwards.
        assert_eq!(r.on_duty(at("2026-11-01T10:00:00+08:00")).0, "chen");
    }

    #[test]
    fn overrides_win_and_cut_the_turn_short() {
        let r = rota();
        // Chen's week, until ana's swap begins.
        assert_eq!(
            r.on_duty(at("2026-11-20T12:00:00+08:00")),
            ("chen".into(), at("2026-11-20T18:00:00+08:00"))
        );
        assert_eq!(
            r.on_duty(at("2026-11-20T20:00:00+08:00")),
            ("ana".into(), at("2026-11-21T09:00:00+08:00"))
        );
        assert_eq!(
            r.on_duty(at("2026-11-21T10:00:00+08:00")),
            ("chen".into(), at("2026-11-23T10:00:00+08:00"))
        );
    }

    #[test]
    fn bad_rotas_are_refused() {
        let mut c = RotaConfig {
            people: vec!["ana".into()],
            first_handover: "2026-11-02 10:00".into(),
            every: None,
            via: vec!["mail".into()],
            overrides: Vec::new(),
        };
        assert!(c.check().unwrap_err().to_string().contains("RFC 3339"));
        c.first_handover = "2026-11-02T10:00:00+08:00".into();
        c.every = Some("10m".into());
        assert!(c.check().unwrap_err().to_string().contains("at least 1h"));
        c.every = None;
        c.people.clear();
        assert!(c.check().is_err());
    }
}
