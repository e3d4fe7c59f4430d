//! Failed logins, counted so that guessing passwords gets slow.
//!
//! Three counters, each over a sliding window, each locking with a doubling
//! duration when it fills:
//! - per user *and* address: the tight one (5 failures). Someone guessing
//!   one user's password from one place is stopped after five tries, and
//!   nobody else is affected, the real user included.
//! - per address (20 failures, any users): one place trying many users.
//! - per user (50 failures, any addresses): many places trying one user.
//!   This lock applies only to addresses that have not logged in as that
//!   user before, so a distributed attack cannot lock the real user out of
//!   the browser they use every day.
//!
//! A locked request is refused before the password is checked, so refused
//! guesses cost no argon2 time and tell nothing. Time is passed in (Unix
//! ms) so the tests need no clock. Maps are pruned of idle entries, so a
//! flood of made-up user names cannot grow them without bound.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::time::Duration;

/// Limits of the three counters.
#[derive(Debug, Clone)]
pub struct ThrottlePolicy {
    /// The sliding window failures are counted over.
    pub window: Duration,
    /// Failures of one user from one address before a lock.
    pub per_user_and_address: usize,
    /// Failures from one address before a lock.
    pub per_address: usize,
    /// Failures of one user from anywhere before addresses unknown for the
    /// user are locked.
    pub per_user: usize,
    /// The first lock; each further one doubles, up to `max_lock`.
    pub first_lock: Duration,
    /// The longest lock.
    pub max_lock: Duration,
}

impl Default for ThrottlePolicy {
    /// 5 / 20 / 50 failures in 5 minutes; locks of 1 minute doubling up to 1 hour.
    fn default() -> ThrottlePolicy {
        ThrottlePolicy {
            window: Duration::from_secs(300),
            per_user_and_address: 5,
            per_address: 20,
            per_user: 50,
            first_lock: Duration::from_secs(60),
            max_lock: Duration::from_secs(3600),
        }
    }
}

#[derive(Debug, Default)]
struct Counter {
    fails: VecDeque<i64>,
    strikes: u32,
    locked_until: i64,
    last_ms: i64,
}

impl Counter {
    fn retry_after(&self, now: i64) -> Option<i64> {
        (self.locked_until > now).then(|| self.locked_until - now)
    }

    /// Counts a failure; true when it locked.
    fn fail(&mut self, now: i64, limit: usize, p: &ThrottlePolicy) -> bool {
        let window = p.window.as_millis() as i64;
        // A quiet hour forgives earlier locks.
        if now - self.last_ms > 12 * window {
            self.strikes = 0;
        }
        self.last_ms = now;
        while self.fails.front().is_some_and(|&t| now - t >= window) {
            self.fails.pop_front();
        }
        self.fails.push_back(now);
        if self.fails.len() < limit {
            return false;
        }
        self.fails.clear();
        let lock = p
            .first_lock
            .saturating_mul(1 << self.strikes.min(16))
            .min(p.max_lock);
        self.strikes += 1;
        self.locked_until = now + lock.as_millis() as i64;
        true
    }

    fn idle(&self, now: i64, window: i64) -> bool {
        self.locked_until <= now && now - self.last_ms > 12 * window
    }
}

#[derive(Debug, Default)]
struct State {
    pair: HashMap<(String, IpAddr), Counter>,
    addr: HashMap<IpAddr, Counter>,
    user: HashMap<String, Counter>,
    known: HashMap<String, HashSet<IpAddr>>,
}

/// Which counter refused a login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locked {
    /// This user from this address.
    UserAtAddress,
    /// This address, whatever the user.
    Address,
    /// This user, from an address it never logged in from.
    User,
}

impl Locked {
    /// For the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Locked::UserAtAddress => "user_and_address",
            Locked::Address => "address",
            Locked::User => "user",
        }
    }
}

/// The login throttle.
#[derive(Debug, Default)]
pub struct Throttle {
    policy: ThrottlePolicy,
    state: Mutex<State>,
}

/// An address for requests whose peer is unknown (tests without a socket).
fn key(addr: Option<IpAddr>) -> IpAddr {
    addr.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

const MAX_ENTRIES: usize = 10_000;

impl Throttle {
    /// A throttle with these limits.
    pub fn new(policy: ThrottlePolicy) -> Throttle {
        Throttle {
            policy,
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `Err` with the wait and the counter when this login may not be tried now.
    ///
    /// # Errors
    /// The login is locked out for the returned time.
    pub fn check(
        &self,
        user: &str,
        addr: Option<IpAddr>,
        now_ms: i64,
    ) -> Result<(), (Duration, Locked)> {
        let a = key(addr);
        let st = self.lock();
        let ms = |v: i64| Duration::from_millis(v.max(0) as u64);
        if let Some(w) = st
            .pair
            .get(&(user.to_owned(), a))
            .and_then(|c| c.retry_after(now_ms))
        {
            return Err((ms(w), Locked::UserAtAddress));
        }
        if let Some(w) = st.addr.get(&a).and_then(|c| c.retry_after(now_ms)) {
            return Err((ms(w), Locked::Address));
        }
        let known = st.known.get(user).is_some_and(|k| k.contains(&a));
        if !known && let Some(w) = st.user.get(user).and_then(|c| c.retry_after(now_ms)) {
            return Err((ms(w), Locked::User));
        }
        Ok(())
    }

    /// Counts a failed login.
    pub fn failed(&self, user: &str, addr: Option<IpAddr>, now_ms: i64) {
        let a = key(addr);
        let p = self.policy.clone();
        let mut st = self.lock();
        let st = &mut *st;
        let window = p.window.as_millis() as i64;
        if st.pair.len() + st.addr.len() + st.user.len() > MAX_ENTRIES {
            st.pair.retain(|_, c| !c.idle(now_ms, window));
            st.addr.retain(|_, c| !c.idle(now_ms, window));
            st.user.retain(|_, c| !c.idle(now_ms, window));
        }
        st.pair
            .entry((user.to_owned(), a))
            .or_default()
            .fail(now_ms, p.per_user_and_address, &p);
        st.addr
            .entry(a)
            .or_default()
            .fail(now_ms, p.per_address, &p);
        st.user
            .entry(user.to_owned())
            .or_default()
            .fail(now_ms, p.per_user, &p);
    }

    /// Forgets this pair's failures and remembers the address as the user's.
    pub fn succeeded(&self, user: &str, addr: Option<IpAddr>) {
        let a = key(addr);
        let mut st = self.lock();
        st.pair.remove(&(user.to_owned(), a));
        let known = st.known.entry(user.to_owned()).or_default();
        if known.len() < 64 {
            known.insert(a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn five_failures_lock_the_pair_and_locks_double() {
        let t = Throttle::default();
        let (a, other) = (ip("10.0.0.9"), ip("10.0.0.1"));
        for i in 0..4 {
            t.failed("ana", a, i);
            assert!(t.check("ana", a, i).is_ok(), "failure {i}");
        }
        t.failed("ana", a, 5);
        let (wait, why) = t.check("ana", a, 6).unwrap_err();
        assert_eq!(why, Locked::UserAtAddress);
        assert!(wait <= Duration::from_secs(60) && wait > Duration::from_secs(59));
        assert!(
            t.check("ana", other, 6).is_ok(),
            "the real user elsewhere is not locked"
        );
        assert!(
            t.check("bob", a, 6).is_ok(),
            "another user from there is not locked"
        );
        assert!(t.check("ana", a, 60_006).is_ok(), "the lock ends");
        for i in 0..5 {
            t.failed("ana", a, 61_000 + i);
        }
        let (wait, _) = t.check("ana", a, 61_005).unwrap_err();
        assert!(wait > Duration::from_secs(119), "doubled: {wait:?}");
    }

    #[test]
    fn one_address_trying_many_users_is_locked() {
        let t = Throttle::default();
        let a = ip("192.0.2.7");
        for i in 0..20 {
            t.failed(&format!("user{i}"), a, i);
        }
        assert_eq!(t.check("ana", a, 30).unwrap_err().1, Locked::Address);
        assert!(t.check("ana", ip("192.0.2.8"), 30).is_ok());
    }

    #[test]
    fn a_distributed_attack_does_not_lock_the_user_out_of_a_known_address() {
        let t = Throttle::default();
        let home = ip("10.1.1.1");
        t.succeeded("ana", home);
        for i in 0..50 {
            t.failed("ana", ip(&format!("203.0.113.{i}")), 1000 + i);
        }
        assert_eq!(
            t.check("ana", ip("198.51.100.1"), 2000).unwrap_err().1,
            Locked::User,
            "a new address is locked for ana"
        );
        assert!(
            t.check("ana", home, 2000).is_ok(),
            "ana's own address is not"
        );
    }
}
