//! The IETF fields, every revision still met: `RateLimit` and
//! `RateLimit-Policy` (structured fields, RFC 9651, parsed with `sfv`), and
//! the limit lists of the older drafts that Envoy and Docker Hub also write.
//! A window may be written `w=` or, as some servers spell it, `window=`.
//!
//! A field that does not follow its grammar is ignored entirely, as the
//! draft requires: nothing of a malformed field is half-applied.

use std::time::{Duration, SystemTime};

use sfv::{BareItem, Dictionary, List, ListEntry, Parameters, Parser};

use super::values::{count, epoch_or_delta};
use super::{Reading, ServerQuota};

/// One member of a `RateLimit-Policy` list.
struct Policy {
    name: Option<String>,
    quota: f64,
    requests: bool,
    window: Option<Duration>,
}

/// What a well-formed `RateLimit-Policy` field announced.
pub(super) struct Policies {
    members: Vec<Policy>,
    /// The request quotas with a window, in the order announced.
    pub quotas: Vec<ServerQuota>,
}

impl Policies {
    fn named(&self, name: &str) -> Option<&Policy> {
        self.members
            .iter()
            .find(|p| p.name.as_deref() == Some(name))
    }
}

fn param<'p>(params: &'p Parameters, key: &str) -> Option<&'p BareItem> {
    params
        .iter()
        .find(|(k, _)| k.as_str() == key)
        .map(|(_, v)| v)
}

/// An optional non-negative integer parameter; `Err` when it is present
/// and anything else.
fn integer(params: &Parameters, key: &str) -> Result<Option<i64>, ()> {
    match param(params, key) {
        None => Ok(None),
        Some(BareItem::Integer(i)) if i64::from(*i) >= 0 => Ok(Some(i64::from(*i))),
        Some(_) => Err(()),
    }
}

/// The window parameter: `w`, or `window` as some servers write it.
fn window(params: &Parameters) -> Result<Option<i64>, ()> {
    match integer(params, "w")? {
        Some(w) => Ok(Some(w)),
        None => integer(params, "window"),
    }
}

/// A policy name: a String (draft -09 on) or a Token (draft -08).
fn name(item: &BareItem) -> Option<&str> {
    match item {
        BareItem::String(s) => Some(s.as_str()),
        BareItem::Token(t) => Some(t.as_str()),
        _ => None,
    }
}

fn seconds(n: i64) -> Duration {
    Duration::from_secs(n.unsigned_abs())
}

/// `RateLimit-Policy`: `"burst";q=100;w=60, "daily";q=1000;w=86400`
/// (drafts -09 to -11), `burst;q=100;w=60` (-08), `10;w=1, 50;w=60` (-05
/// to -07). `q` is required (the bare integer in the older form), `w` is a
/// window of at least a second, `qu` a unit (`requests` by default); `pk`
/// and unknown parameters are ignored.
pub(super) fn policies(v: &str) -> Option<Policies> {
    let list: List = Parser::new(v).parse().ok()?;
    if list.is_empty() {
        return None;
    }
    let mut out = Policies {
        members: Vec::with_capacity(list.len()),
        quotas: Vec::new(),
    };
    for entry in &list {
        let ListEntry::Item(item) = entry else {
            return None;
        };
        let params = &item.params;
        let quota = match &item.bare_item {
            BareItem::Integer(i) => Some(i64::from(*i)).filter(|q| *q >= 0)?,
            bare => {
                name(bare)?;
                integer(params, "q").ok()??
            }
        };
        let window = window(params).ok()?;
        if window == Some(0) {
            return None; // a window of no time has no rate
        }
        let requests = match param(params, "qu") {
            None => true,
            Some(BareItem::String(u)) => u.as_str() == "requests",
            Some(BareItem::Token(u)) => u.as_str() == "requests",
            Some(_) => return None,
        };
        if let (true, Some(w)) = (requests, window) {
            if let Some(q) = ServerQuota::checked(quota as f64, seconds(w)) {
                out.quotas.push(q);
            }
        }
        out.members.push(Policy {
            name: name(&item.bare_item).map(str::to_owned),
            quota: quota as f64,
            requests,
            window: window.map(seconds),
        });
    }
    Some(out)
}

/// A remaining count: `48`, `598.0`, or one list item with a window,
/// `76;w=21600` (Docker Hub), which is the window the count belongs to.
pub(super) fn remaining_item(v: &str) -> Option<(f64, Option<Duration>)> {
    if let Some(n) = count(v) {
        return Some((n, None));
    }
    let list: List = Parser::new(v).parse().ok()?;
    let [ListEntry::Item(item)] = list.as_slice() else {
        return None;
    };
    let n = match &item.bare_item {
        BareItem::Integer(i) if i64::from(*i) >= 0 => i64::from(*i) as f64,
        BareItem::Decimal(d) if f64::from(*d) >= 0.0 => f64::from(*d),
        _ => return None,
    };
    match window(&item.params) {
        Ok(Some(0)) | Err(()) => None,
        Ok(w) => Some((n, w.map(seconds))),
    }
}

/// `RateLimit`: `"default";r=50;t=30` (drafts -08 to -11; `r` the quota
/// available, `t` the seconds until it is restored), or the dictionary
/// `limit=100, remaining=50, reset=30` of draft -07. Members whose policy
/// counts something other than requests are skipped; the limit of a member
/// is its policy's `q`.
pub(super) fn ratelimit(v: &str, policies: Option<&Policies>, now: SystemTime) -> Option<Reading> {
    let reset = |t: i64| epoch_or_delta(seconds(t), now);
    // A dictionary's `key=value` is never a valid list, so a field that
    // parses as a list is the newer form, and only then is it read so.
    let Ok(list) = Parser::new(v).parse::<List>() else {
        return dictionary(v, reset);
    };
    if list.is_empty() {
        return None;
    }
    let mut reading = Reading::default();
    for entry in &list {
        let ListEntry::Item(item) = entry else {
            return None;
        };
        let name = name(&item.bare_item)?;
        let remaining = integer(&item.params, "r").ok()??;
        let t = integer(&item.params, "t").ok()?;
        let policy = policies.and_then(|p| p.named(name));
        if policy.is_some_and(|p| !p.requests) {
            continue; // bytes or concurrency do not pace requests
        }
        reading.merge(Reading {
            remaining: Some(remaining as f64),
            limit: policy.map(|p| p.quota),
            reset_after: t.map(reset),
            window: policy.and_then(|p| p.window),
        });
    }
    Some(reading)
}

fn dictionary(v: &str, reset: impl Fn(i64) -> Duration) -> Option<Reading> {
    let dict: Dictionary = Parser::new(v).parse().ok()?;
    let mut reading = Reading::default();
    for (key, entry) in &dict {
        let ListEntry::Item(item) = entry else {
            return None;
        };
        let n = match (key.as_str(), &item.bare_item) {
            ("limit" | "remaining" | "reset", BareItem::Integer(n)) if i64::from(*n) >= 0 => {
                i64::from(*n)
            }
            ("limit" | "remaining" | "reset", _) => return None,
            _ => continue,
        };
        match key.as_str() {
            "limit" => reading.limit = Some(n as f64),
            "remaining" => reading.remaining = Some(n as f64),
            _ => reading.reset_after = Some(reset(n)),
        }
    }
    (!reading.is_empty()).then_some(reading)
}

/// A limit field: `5000`, `598.0`, or the list of drafts -01 to -06 and
/// Envoy, `10, 10;w=1;name="per-ip", 1000;w=3600`, whose first member is
/// the limit now and whose members with a `w` are quota policies.
pub(super) fn limit_list(v: &str) -> Option<(f64, Vec<ServerQuota>)> {
    if let Some(n) = count(v) {
        return Some((n, Vec::new()));
    }
    let list: List = Parser::new(v).parse().ok()?;
    let mut limit = None;
    let mut quotas = Vec::new();
    for entry in &list {
        let ListEntry::Item(item) = entry else {
            return None;
        };
        let n = match &item.bare_item {
            BareItem::Integer(i) => i64::from(*i) as f64,
            BareItem::Decimal(d) => f64::from(*d),
            _ => return None,
        };
        if n < 0.0 {
            return None;
        }
        limit.get_or_insert(n);
        match window(&item.params) {
            Ok(Some(0)) | Err(()) => return None,
            Ok(Some(w)) => quotas.extend(ServerQuota::checked(n, seconds(w))),
            Ok(None) => {}
        }
    }
    Some((limit?, quotas))
}
