//! The wire between Rust and `gcra.lua`: the arguments of each operation and
//! the replies, with every time split into (seconds, nanoseconds) so that
//! the script's double-precision numbers hold them exactly.

use std::time::Duration;

use ::redis::{Cmd, Value};

use crate::bucket::Params;
use crate::clock::{duration_nanos, Timestamp};
use crate::{Error, Policy};

/// The script, loaded once per server and called by `EVALSHA`.
pub(super) const SOURCE: &str = include_str!("gcra.lua");

const E: u64 = 1_000_000_000;

/// The longest wait the script is asked for (take's longest wait, a
/// deferral): 100 years of 365.25 days. Longer ones saturate to it, here
/// and in `gcra.lua`.
pub(super) const MAX_WAIT: Duration = Duration::from_secs(MAX_WAIT_S);
const MAX_WAIT_S: u64 = 3_155_760_000;

/// The latest time the script computes, stores or answers: 2^33 s after
/// 1970 (in the year 2242). Later times saturate to it, here and in
/// `gcra.lua`; in nanoseconds it fits a `u64` with room to spare.
pub(super) const MAX_TIME: Timestamp = Timestamp::from_nanos(MAX_TIME_S * E);
const MAX_TIME_S: u64 = 1 << 33;

fn pair(ns: u64) -> (u64, u64) {
    (ns / E, ns % E)
}

/// One limit as the script reads it, encoded once per policy.
#[derive(Clone, Debug)]
pub(super) struct Limit {
    pub policy: Policy,
    pub params: Params,
    /// Names the params in the stored state, so a change is seen by every
    /// process: `interval_s:interval_ns:tau_s:tau_ns:interval_f64:capacity`.
    id: String,
    interval: (u64, u64),
    tau: (u64, u64),
    interval_f: String,
    capacity: String,
}

impl Limit {
    pub(super) fn new(policy: Policy) -> Limit {
        let params = Params::from_policy(&policy);
        let interval = pair(params.interval);
        let tau = pair(params.tau);
        // Rust prints the shortest decimal that reads back as the same
        // double, never in exponent form; Lua's `tonumber` reads it exactly.
        let interval_f = format!("{}", params.interval as f64);
        let capacity = if params.is_unlimited() {
            "0".to_string()
        } else {
            format!("{}", params.capacity)
        };
        let id = format!(
            "{}:{}:{}:{}:{interval_f}:{capacity}",
            interval.0, interval.1, tau.0, tau.1
        );
        Limit {
            policy,
            params,
            id,
            interval,
            tau,
            interval_f,
            capacity,
        }
    }

    fn push(&self, cmd: &mut Cmd) {
        cmd.arg(&self.id)
            .arg(self.interval.0)
            .arg(self.interval.1)
            .arg(self.tau.0)
            .arg(self.tau.1)
            .arg(&self.interval_f)
            .arg(&self.capacity);
    }
}

/// The keys and limits of a bucket, as every call sends them; replaced
/// whole when its policies change.
pub(super) struct LimitSet {
    pub keys: Vec<String>,
    pub limits: Vec<Limit>,
}

impl LimitSet {
    /// What each limit takes for a request that weighs `weight(i)` in
    /// limit `i`.
    pub(super) fn costs(&self, weight: impl Fn(usize) -> f64) -> Result<Vec<u64>, Error> {
        self.limits
            .iter()
            .enumerate()
            .map(|(i, l)| l.params.cost(weight(i)))
            .collect()
    }

    /// What `tokens[i]` tokens of limit `i` cost, in nanoseconds, never
    /// refused (a debt may exceed the capacity): rounded up, saturating.
    pub(super) fn debt_costs(&self, tokens: &[f64]) -> Vec<u64> {
        self.limits
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let t = tokens.get(i).copied().unwrap_or(0.0);
                if l.params.is_unlimited() {
                    return 0;
                }
                // `as` saturates: NaN or less is 0, infinite is u64::MAX.
                (t * l.params.interval as f64).ceil() as u64
            })
            .collect()
    }

    /// Tokens that `cost` nanoseconds stand for in limit `i`, as
    /// [`Reservation::cancel`](crate::Reservation::cancel) reports them.
    pub(super) fn tokens(&self, i: usize, cost: u64) -> f64 {
        let interval = self.limits[i].params.interval;
        if interval == 0 {
            0.0
        } else {
            cost as f64 / interval as f64
        }
    }
}

/// What a reservation took from one limit in Redis: enough to give it back
/// if nothing was taken after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct RemoteTicket {
    pub tat_after: u64,
    /// The tat the reservation found: a refund restores it.
    pub tat_before: u64,
    pub cost: u64,
    pub version: u64,
}

/// One request of a [`Op::Takes`]: its longest wait (nanoseconds) and
/// what it costs in each limit.
#[derive(Clone, Debug)]
pub(super) struct TakeRequest {
    pub max_wait: u64,
    pub costs: Vec<u64>,
}

/// One call of the script.
pub(super) enum Op<'a> {
    /// Take `costs` (one per limit) at the latest slot among the limits,
    /// if it comes within `max_wait` nanoseconds.
    Take { max_wait: u64, costs: &'a [u64] },
    /// Several takes in their order, each served as `Take` would serve it
    /// alone at the same now.
    Takes { requests: &'a [TakeRequest] },
    /// Give back what tickets of a reservation for `slot` may give back.
    Refund {
        slot: u64,
        tickets: &'a [RemoteTicket],
    },
    /// Defer every limit until Redis's now plus `wait` nanoseconds.
    Defer { wait: u64 },
    /// Rescale stored state to the caller's params, keeping the level.
    Sync,
    /// Charge `costs` (one per limit) as if taken `since` nanoseconds ago,
    /// never refusing: what a local fallback admitted while Redis failed.
    Charge { since: u64, costs: &'a [u64] },
    /// Tokens available now in the tightest limit.
    Peek,
}

impl Op<'_> {
    fn name(&self) -> &'static str {
        match self {
            Op::Take { .. } => "take",
            Op::Takes { .. } => "takes",
            Op::Refund { .. } => "refund",
            Op::Defer { .. } => "defer",
            Op::Sync => "sync",
            Op::Charge { .. } => "charge",
            Op::Peek => "peek",
        }
    }
}

/// The operation's argument, saturated as the script saturates it.
fn argument(op: &Op<'_>) -> u64 {
    let max_wait = duration_nanos(MAX_WAIT);
    match op {
        Op::Take { max_wait: w, .. } => (*w).min(max_wait),
        // The number of requests, in whole "seconds".
        Op::Takes { requests } => requests.len() as u64 * E,
        Op::Refund { slot, .. } => (*slot).min(MAX_TIME.as_nanos()),
        Op::Defer { wait } => (*wait).min(max_wait),
        Op::Charge { since, .. } => (*since).min(max_wait),
        Op::Sync | Op::Peek => 0,
    }
}

/// The call of `op` on `keys` (one per limit): `name` is `EVALSHA` with the
/// script's SHA1, or `EVAL` with its source. The first key names the
/// slot a cluster sends it to.
pub(super) fn command(
    name: &str,
    script: &str,
    keys: &[String],
    limits: &[Limit],
    op: &Op<'_>,
) -> Cmd {
    let mut cmd = ::redis::cmd(name);
    cmd.arg(script).arg(keys.len());
    for key in keys {
        cmd.arg(key);
    }
    let (s, n) = pair(argument(op));
    cmd.arg(op.name()).arg(s).arg(n);
    for (i, limit) in limits.iter().enumerate() {
        limit.push(&mut cmd);
        match op {
            Op::Take { costs, .. } | Op::Charge { costs, .. } => {
                let (s, n) = pair(costs[i]);
                cmd.arg(s).arg(n);
            }
            Op::Refund { tickets, .. } => {
                let t = tickets[i];
                let (ts, tn) = pair(t.tat_after);
                let (cs, cn) = pair(t.cost);
                let (bs, bn) = pair(t.tat_before);
                cmd.arg(ts)
                    .arg(tn)
                    .arg(cs)
                    .arg(cn)
                    .arg(t.version)
                    .arg(bs)
                    .arg(bn);
            }
            Op::Takes { .. } | Op::Defer { .. } | Op::Sync | Op::Peek => {}
        }
    }
    if let Op::Takes { requests } = op {
        let longest = duration_nanos(MAX_WAIT);
        for r in *requests {
            let (s, n) = pair(r.max_wait.min(longest));
            cmd.arg(s).arg(n);
            for &cost in &r.costs {
                let (s, n) = pair(cost);
                cmd.arg(s).arg(n);
            }
        }
    }
    cmd
}

/// What `take` answered.
#[derive(Debug)]
pub(super) enum Taken {
    /// Every limit took its tokens for `slot`.
    Granted {
        now: Timestamp,
        slot: Timestamp,
        tickets: Vec<RemoteTicket>,
    },
    /// The slot lies beyond the longest wait; nothing was taken.
    Refused { now: Timestamp, slot: Timestamp },
}

fn malformed(what: &str, reply: &Value) -> Error {
    Error::store(format!(
        "unexpected reply to the tollgate script's {what}: {reply:?}"
    ))
}

fn items<'v>(what: &str, reply: &'v Value, min_len: usize) -> Result<&'v [Value], Error> {
    match reply {
        Value::Array(items) if items.len() >= min_len => Ok(items),
        other => Err(malformed(what, other)),
    }
}

fn int(what: &str, reply: &Value, v: &Value) -> Result<u64, Error> {
    match v {
        Value::Int(i) if *i >= 0 => Ok(*i as u64),
        _ => Err(malformed(what, reply)),
    }
}

/// A time, saturating at [`MAX_TIME`] as the script does.
fn time(what: &str, reply: &Value, s: &Value, n: &Value) -> Result<Timestamp, Error> {
    let s = int(what, reply, s)?;
    let n = int(what, reply, n)?;
    if s >= MAX_TIME_S || n >= E {
        return Ok(MAX_TIME);
    }
    Ok(Timestamp::from_nanos(s * E + n))
}

/// Decodes the reply to `take` with `costs` asked for. Once Redis's now is
/// read, a slot or ticket that does not decode is a refusal for the
/// longest wait, never a store error: a store error would fail open (or
/// say Redis is down) for a bucket Redis holds shut.
pub(super) fn taken(reply: &Value, costs: &[u64]) -> Result<Taken, Error> {
    let v = items("take", reply, 3)?;
    let now = time("take", reply, &v[1], &v[2])?;
    Ok(granted(reply, v, costs).unwrap_or(Taken::Refused {
        now,
        slot: now + MAX_WAIT,
    }))
}

fn granted(reply: &Value, v: &[Value], costs: &[u64]) -> Option<Taken> {
    let now = time("take", reply, &v[1], &v[2]).ok()?;
    let slot = time("take", reply, v.get(3)?, v.get(4)?).ok()?;
    if int("take", reply, &v[0]).ok()? == 0 {
        return Some(Taken::Refused { now, slot });
    }
    if v.len() != 5 + 5 * costs.len() {
        return None;
    }
    let tickets = costs
        .iter()
        .zip(v[5..].chunks_exact(5))
        .map(|(&cost, t)| {
            Ok(RemoteTicket {
                version: int("take", reply, &t[0])?,
                tat_after: time("take", reply, &t[1], &t[2])?.as_nanos(),
                tat_before: time("take", reply, &t[3], &t[4])?.as_nanos(),
                cost,
            })
        })
        .collect::<Result<_, Error>>()
        .ok()?;
    Some(Taken::Granted { now, slot, tickets })
}

/// Decodes the reply to `takes` with `requests` asked for: each request's
/// answer, in order. As for `take`, once Redis's now is read, an answer
/// that does not decode (and every one after it) is a refusal for the
/// longest wait.
pub(super) fn takens(reply: &Value, requests: &[TakeRequest]) -> Result<Vec<Taken>, Error> {
    let v = items("takes", reply, 3)?;
    let now = time("takes", reply, &v[1], &v[2])?;
    let mut rest = &v[3..];
    let mut out = Vec::with_capacity(requests.len());
    for r in requests {
        match one_of_takes(reply, now, rest, &r.costs) {
            Some((taken, used)) => {
                out.push(taken);
                rest = &rest[used..];
            }
            None => {
                out.push(Taken::Refused {
                    now,
                    slot: now + MAX_WAIT,
                });
                rest = &[];
            }
        }
    }
    Ok(out)
}

/// One request's answer at the head of `v`, and how many items it used.
fn one_of_takes(
    reply: &Value,
    now: Timestamp,
    v: &[Value],
    costs: &[u64],
) -> Option<(Taken, usize)> {
    let head = v.get(..3)?;
    let slot = time("takes", reply, &head[1], &head[2]).ok()?;
    if int("takes", reply, &head[0]).ok()? == 0 {
        return Some((Taken::Refused { now, slot }, 3));
    }
    let used = 3 + 5 * costs.len();
    let tickets = costs
        .iter()
        .zip(v.get(3..used)?.chunks_exact(5))
        .map(|(&cost, t)| {
            Some(RemoteTicket {
                version: int("takes", reply, &t[0]).ok()?,
                tat_after: time("takes", reply, &t[1], &t[2]).ok()?.as_nanos(),
                tat_before: time("takes", reply, &t[3], &t[4]).ok()?.as_nanos(),
                cost,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some((Taken::Granted { now, slot, tickets }, used))
}

/// Decodes the reply to `refund`: per limit, whether it gave back.
pub(super) fn refunded(reply: &Value) -> Result<Vec<bool>, Error> {
    let v = items("refund", reply, 3)?;
    v[3..]
        .iter()
        .map(|b| Ok(int("refund", reply, b)? == 1))
        .collect()
}

/// Decodes Redis's now from any reply (items 1 and 2).
pub(super) fn now(what: &str, reply: &Value) -> Result<Timestamp, Error> {
    let v = items(what, reply, 3)?;
    time(what, reply, &v[1], &v[2])
}

/// Decodes the reply to `peek`: tokens available in the tightest limit.
pub(super) fn tokens(reply: &Value) -> Result<f64, Error> {
    let v = items("peek", reply, 4)?;
    match &v[3] {
        Value::BulkString(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
            .ok_or_else(|| malformed("peek", reply)),
        _ => Err(malformed("peek", reply)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn times_split_into_exact_pairs() {
        assert_eq!(
            pair(1_700_000_000_123_456_789),
            (1_700_000_000, 123_456_789)
        );
        assert_eq!(pair(999_999_999), (0, 999_999_999));
        // Both halves stay far below 2^53, where doubles are exact.
        let (s, n) = pair(u64::MAX);
        assert!(s < 1 << 53 && n < 1 << 53);
    }

    #[test]
    fn params_id_names_every_number_the_script_uses() {
        let l = Limit::new("3/s burst 3".parse().unwrap());
        assert_eq!(l.id, "0:333333334:1:2:333333334:3");
        let u = Limit::new(Policy::unlimited());
        assert_eq!(u.id, "0:0:0:0:0:0");
    }

    #[test]
    fn a_granted_take_decodes_one_ticket_per_limit() {
        let reply = Value::Array(vec![
            Value::Int(1),
            Value::Int(1_700_000_000),
            Value::Int(5_000),
            Value::Int(1_700_000_001),
            Value::Int(0),
            Value::Int(7),
            Value::Int(1_700_000_001),
            Value::Int(500),
            Value::Int(1_700_000_000),
            Value::Int(900),
        ]);
        match taken(&reply, &[42]).unwrap() {
            Taken::Granted { now, slot, tickets } => {
                assert_eq!(now.as_nanos(), 1_700_000_000_000_005_000);
                assert_eq!(slot.as_nanos(), 1_700_000_001_000_000_000);
                assert_eq!(
                    tickets,
                    vec![RemoteTicket {
                        tat_after: 1_700_000_001_000_000_500,
                        tat_before: 1_700_000_000_000_000_900,
                        cost: 42,
                        version: 7
                    }]
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            taken(&Value::Array(vec![Value::Int(1)]), &[1]),
            Err(e) if e.kind() == ErrorKind::Store
        ));
    }

    #[test]
    fn takes_decode_each_answer_in_order() {
        let requests = [
            TakeRequest {
                max_wait: 0,
                costs: vec![42],
            },
            TakeRequest {
                max_wait: u64::MAX,
                costs: vec![42],
            },
            TakeRequest {
                max_wait: u64::MAX,
                costs: vec![42],
            },
        ];
        let int = |i: i64| Value::Int(i);
        let mut reply = vec![int(1), int(1_700_000_000), int(5)];
        // Refused until 1 s later; granted at that slot; then garbage.
        reply.extend([int(0), int(1_700_000_001), int(0)]);
        reply.extend([int(1), int(1_700_000_001), int(0)]);
        reply.extend([
            int(3),
            int(1_700_000_001),
            int(9),
            int(1_700_000_000),
            int(7),
        ]);
        reply.extend([int(1), Value::Nil]);
        let taken = takens(&Value::Array(reply), &requests).unwrap();
        let now = Timestamp::from_nanos(1_700_000_000_000_000_005);
        let slot = Timestamp::from_nanos(1_700_000_001_000_000_000);
        assert!(matches!(taken[0], Taken::Refused { now: n, slot: s } if n == now && s == slot));
        match &taken[1] {
            Taken::Granted {
                now: n,
                slot: s,
                tickets,
            } => {
                assert_eq!((*n, *s), (now, slot));
                assert_eq!(
                    tickets,
                    &[RemoteTicket {
                        version: 3,
                        tat_after: 1_700_000_001_000_000_009,
                        tat_before: 1_700_000_000_000_000_007,
                        cost: 42,
                    }]
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(taken[2], Taken::Refused { slot: s, .. } if s == now + MAX_WAIT));
        // The count goes in the argument's seconds.
        let op = Op::Takes {
            requests: &requests,
        };
        assert_eq!(pair(argument(&op)), (3, 0));
    }

    #[test]
    fn far_times_saturate_and_a_slot_that_does_not_decode_refuses() {
        let now = || [Value::Int(1_700_000_000), Value::Int(0)];
        // 10^11 s after 1970 (10^20 ns, past u64::MAX): the latest time.
        let mut far = vec![Value::Int(0)];
        far.extend(now());
        far.extend([Value::Int(100_000_000_000), Value::Int(0)]);
        match taken(&Value::Array(far), &[1]).unwrap() {
            Taken::Refused { slot, .. } => assert_eq!(slot, MAX_TIME),
            other => panic!("{other:?}"),
        }
        // A granted take whose slot is not a time at all: a refusal.
        let mut bad = vec![Value::Int(1)];
        bad.extend(now());
        bad.extend([Value::Int(-1), Value::Nil]);
        match taken(&Value::Array(bad), &[1]).unwrap() {
            Taken::Refused { now, slot } => assert_eq!(slot, now + MAX_WAIT),
            other => panic!("{other:?}"),
        }
        // Waits saturate before they are sent.
        let max_wait = duration_nanos(MAX_WAIT);
        assert_eq!(argument(&Op::Defer { wait: u64::MAX }), max_wait);
        let take = Op::Take {
            max_wait: u64::MAX,
            costs: &[1],
        };
        assert_eq!(argument(&take), max_wait);
        assert_eq!(pair(max_wait), (3_155_760_000, 0));
        // Every time the cap allows fits a u64 in nanoseconds.
        assert!(MAX_TIME
            .as_nanos()
            .checked_add(duration_nanos(MAX_WAIT))
            .is_some());
    }
}
