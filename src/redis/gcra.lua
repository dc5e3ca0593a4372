-- tollgate's GCRA next to its data: the steps of src/bucket/gcra.rs (grant,
-- refund, rescale, defer, available) on Redis's own clock (TIME), for every
-- limit of one source in one atomic call. One difference: the deferral
-- floor is kept beside the tat, so that neither a policy change nor a
-- refund lowers a deferral.
--
-- Times and durations are pairs (whole seconds, nanoseconds 0..1e9-1): Lua
-- numbers are doubles, exact only below 2^53, and nanoseconds since 1970
-- are about 1.7e18. Every step below is therefore exact, as in Rust.
--
-- Far ahead, everything saturates: a wait (take's longest wait, defer's
-- wait) at MAX_WAIT_S seconds (100 years of 365.25 days), and every time
-- the script computes, stores or reads at MAX_TIME_S (2^33 s after 1970,
-- in the year 2242). Both are exact in a double, and a time below
-- MAX_TIME_S in nanoseconds fits a u64 with room to spare, so Rust reads
-- every reply (src/redis/script.rs saturates at the same two caps).
--
-- KEYS: one per limit of the source (they share a hash tag, so one slot).
-- ARGV[1]: the operation: take | takes | refund | defer | sync | peek | charge
-- ARGV[2], ARGV[3]: its argument, a pair (take: the longest wait; refund:
--   the reservation's slot; defer: the wait from now; charge: how long ago
--   the first token charged was taken; else unused)
-- Then, per limit: the params id, interval (s, ns), tau (s, ns), interval
--   as a float, capacity; and for take and charge the cost (s, ns), for refund the
--   tat after the reservation (s, ns), its cost (s, ns), policy version and
--   the tat it found (s, ns).
-- takes: its argument is the number of requests (s; ns 0); after every
--   limit's params come the requests, each its longest wait (s, ns) and
--   per limit its cost (s, ns).
--
-- A key holds "tat_s tat_ns floor_s floor_ns version horizon_s horizon_ns
-- params_id": the theoretical arrival time, the deferral floor, the policy
-- version, the latest slot a take of several limits chose (see rescale),
-- and the params the tat was computed under (keys written before the
-- horizon was kept lack it: read as 0). A missing key is a full bucket.
-- Keys expire when the bucket is full again (never before a deferral ends).
-- A refused call writes nothing.

local E = 1000000000
local MAX_WAIT_S = 3155760000
local MAX_TIME_S = 8589934592

-- min(t, MAX_TIME)
local function cap(s, n)
  if s >= MAX_TIME_S then return MAX_TIME_S, 0 end
  return s, n
end

-- min(a + b, MAX_TIME)
local function add(as, an, bs, bn)
  local s, n = as + bs, an + bn
  if n >= E then s, n = s + 1, n - E end
  return cap(s, n)
end

-- max(a - b, 0)
local function sub(as, an, bs, bn)
  local s, n = as - bs, an - bn
  if n < 0 then s, n = s - 1, n + E end
  if s < 0 then return 0, 0 end
  return s, n
end

local function lt(as, an, bs, bn)
  return as < bs or (as == bs and an < bn)
end

local function max(as, an, bs, bn)
  if lt(as, an, bs, bn) then return bs, bn end
  return as, an
end

local function float(s, n)
  return s * E + n
end

local t = redis.call('TIME')
local now_s, now_n = tonumber(t[1]), tonumber(t[2]) * 1000

local op = ARGV[1]
local arg_s, arg_n = tonumber(ARGV[3 - 1]), tonumber(ARGV[3])
if op == 'refund' then
  arg_s, arg_n = cap(arg_s, arg_n)
elseif arg_s >= MAX_WAIT_S then
  arg_s, arg_n = MAX_WAIT_S, 0
end
local stride = 7
if op == 'take' or op == 'charge' then stride = 9 elseif op == 'refund' then stride = 14 end

-- The params of limit i, as the caller sends them.
local function params(i)
  local b = 3 + (i - 1) * stride
  local p = {
    id = ARGV[b + 1],
    iv_s = tonumber(ARGV[b + 2]), iv_n = tonumber(ARGV[b + 3]),
    tau_s = tonumber(ARGV[b + 4]), tau_n = tonumber(ARGV[b + 5]),
    ivf = tonumber(ARGV[b + 6]), cap = tonumber(ARGV[b + 7]),
  }
  p.unlimited = p.iv_s == 0 and p.iv_n == 0
  return p, b + 7
end

-- The params encoded in a params id ("iv_s:iv_n:tau_s:tau_n:ivf:cap").
local function parse_id(id)
  local a, b, c, d, e, f = string.match(id, '^(%d+):(%d+):(%d+):(%d+):([^:]+):([^:]+)$')
  local p = {
    id = id, iv_s = tonumber(a), iv_n = tonumber(b), tau_s = tonumber(c),
    tau_n = tonumber(d), ivf = tonumber(e), cap = tonumber(f),
  }
  p.unlimited = p.iv_s == 0 and p.iv_n == 0
  return p
end

-- gcra::available, at time (as, an)
local function available_at(p, ts, tn, as, an)
  if p.unlimited then
    if lt(as, an, ts, tn) then return 0 end
    return math.huge
  end
  local hs, hn = add(as, an, p.tau_s, p.tau_n)
  local rs, rn = sub(hs, hn, ts, tn)
  return math.min(float(rs, rn) / p.ivf, p.cap)
end

local function available(p, ts, tn)
  return available_at(p, ts, tn, now_s, now_n)
end

-- gcra::defer
local function defer(p, ts, tn, us, un)
  if p.unlimited then return max(ts, tn, us, un) end
  local cs, cn = p.iv_s, p.iv_n
  if lt(p.tau_s, p.tau_n, cs, cn) then cs, cn = p.tau_s, p.tau_n end
  local gs, gn = add(us, un, p.tau_s, p.tau_n)
  gs, gn = sub(gs, gn, cs, cn)
  return max(ts, tn, gs, gn)
end

-- gcra::rescale, from time (rs, rn): now, or for a faster rate the latest
-- slot a take of several limits chose (a limit gathers tokens until then
-- for that take; counted from now, a faster rate would gather them again).
local function rescale(old, new, ts, tn, rs, rn)
  if new.unlimited then return now_s, now_n end
  if old.unlimited then
    if lt(now_s, now_n, ts, tn) then return defer(new, now_s, now_n, ts, tn) end
    return now_s, now_n
  end
  local ls, ln = sub(ts, tn, old.tau_s, old.tau_n)
  if lt(rs, rn, ls, ln) then return add(ls, ln, new.tau_s, new.tau_n) end
  local tokens = math.min(available_at(old, ts, tn, rs, rn), new.cap)
  local k = math.floor(tokens * new.ivf)
  local ks = math.floor(k / E)
  local kn = k - ks * E
  if lt(new.tau_s, new.tau_n, ks, kn) then ks, kn = new.tau_s, new.tau_n end
  local hs, hn = add(rs, rn, new.tau_s, new.tau_n)
  return sub(hs, hn, ks, kn)
end

-- A limit's state under the caller's params p: rescaled (and its version
-- bumped) when it was computed under other params. Nothing is written here.
local function load(key, p)
  local st = { ts = 0, tn = 0, fs = 0, fn = 0, ver = 0, hs = 0, hn = 0, dirty = false }
  local v = redis.call('GET', key)
  if not v then return st end
  local ts, tn, fs, fn, ver, hs, hn, id =
    string.match(v, '^(%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%S+)$')
  if not ts then
    hs, hn = '0', '0'
    ts, tn, fs, fn, ver, id = string.match(v, '^(%d+) (%d+) (%d+) (%d+) (%d+) (%S+)$')
  end
  if not ts then return st end
  -- Capped as read: a key written before times were capped may hold more.
  st.ts, st.tn = cap(tonumber(ts), tonumber(tn))
  st.fs, st.fn = cap(tonumber(fs), tonumber(fn))
  st.hs, st.hn = cap(tonumber(hs), tonumber(hn))
  st.ver = tonumber(ver)
  if id ~= p.id then
    local old = parse_id(id)
    local rs, rn = now_s, now_n
    if not old.unlimited and not p.unlimited and lt(p.iv_s, p.iv_n, old.iv_s, old.iv_n) then
      rs, rn = max(now_s, now_n, st.hs, st.hn)
    end
    st.ts, st.tn = rescale(old, p, st.ts, st.tn, rs, rn)
    -- No policy change lowers a deferral.
    if lt(now_s, now_n, st.fs, st.fn) then
      st.ts, st.tn = defer(p, st.ts, st.tn, st.fs, st.fn)
    end
    st.ver = st.ver + 1
    st.dirty = true
  end
  return st
end

local function save(key, p, st)
  local us, un = max(st.ts, st.tn, st.fs, st.fn)
  local ms = 1
  if lt(now_s, now_n, us, un) then
    -- Exact (below 2^43 ms) and written as an integer, never as 1e+14.
    local ds, dn = sub(us, un, now_s, now_n)
    ms = math.max(1, ds * 1000 + math.ceil(dn / 1000000))
  end
  local v = string.format('%d %d %d %d %d %d %d %s', st.ts, st.tn, st.fs, st.fn, st.ver,
    st.hs, st.hn, p.id)
  redis.call('SET', key, v, 'PX', string.format('%d', ms))
end

local n = #KEYS
local ps, sts = {}, {}
for i = 1, n do
  ps[i] = params(i)
  sts[i] = load(KEYS[i], ps[i])
end

-- The slot a take of costs (per limit, {s, ns}) gets now: the latest
-- among the limits.
local function slot_of(costs)
  local ss, sn = now_s, now_n
  for i = 1, n do
    local p, st = ps[i], sts[i]
    local gs, gn
    if p.unlimited then
      gs, gn = max(st.ts, st.tn, now_s, now_n)
    else
      local ms, mn = max(st.ts, st.tn, now_s, now_n)
      local es, en = add(ms, mn, costs[i][1], costs[i][2])
      gs, gn = sub(es, en, p.tau_s, p.tau_n)
    end
    ss, sn = max(ss, sn, gs, gn)
  end
  return ss, sn
end

-- Every limit takes its cost at the slot (ss, sn); the tickets go to out.
local function take_at(costs, ss, sn, out)
  for i = 1, n do
    local p, st = ps[i], sts[i]
    local bs, bn = st.ts, st.tn
    if not p.unlimited then
      local ms, mn = max(st.ts, st.tn, ss, sn)
      st.ts, st.tn = add(ms, mn, costs[i][1], costs[i][2])
      if n > 1 then
        -- Taken at a slot the limits chose together: remember it.
        st.hs, st.hn = max(st.hs, st.hn, ss, sn)
      end
      st.dirty = true
    end
    out[#out + 1] = st.ver
    out[#out + 1] = st.ts
    out[#out + 1] = st.tn
    out[#out + 1] = bs
    out[#out + 1] = bn
  end
end

local function save_dirty()
  for i = 1, n do
    if sts[i].dirty then save(KEYS[i], ps[i], sts[i]) end
  end
end

if op == 'take' then
  -- The latest slot among the limits, then every limit takes at that slot.
  local costs = {}
  for i = 1, n do
    local b = 3 + (i - 1) * stride + 7
    costs[i] = { tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2]) }
  end
  local ss, sn = slot_of(costs)
  local ws, wn = sub(ss, sn, now_s, now_n)
  if lt(arg_s, arg_n, ws, wn) then
    return { 0, now_s, now_n, ss, sn }
  end
  local out = { 1, now_s, now_n, ss, sn }
  take_at(costs, ss, sn, out)
  save_dirty()
  return out
elseif op == 'takes' then
  -- Several requests in their order, each served exactly as take would
  -- serve it alone at this now: granted at its slot, or refused beyond its
  -- longest wait (taking nothing). Per request: 1 or 0, its slot, and when
  -- granted its tickets.
  local out = { 1, now_s, now_n }
  local b = 3 + n * stride
  for _ = 1, arg_s do
    local ls, ln = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2])
    if ls >= MAX_WAIT_S then ls, ln = MAX_WAIT_S, 0 end
    local costs = {}
    for i = 1, n do
      costs[i] = { tonumber(ARGV[b + 1 + 2 * i]), tonumber(ARGV[b + 2 + 2 * i]) }
    end
    b = b + 2 + 2 * n
    local ss, sn = slot_of(costs)
    local ws, wn = sub(ss, sn, now_s, now_n)
    local granted = not lt(ls, ln, ws, wn)
    out[#out + 1] = granted and 1 or 0
    out[#out + 1] = ss
    out[#out + 1] = sn
    if granted then take_at(costs, ss, sn, out) end
  end
  save_dirty()
  return out
elseif op == 'refund' then
  -- gcra::refund for every limit or for none: nothing once the slot has
  -- come, and nothing if any limit that took tokens has moved on (a later
  -- reservation, a deferral, a policy change). All or none, so a caller
  -- that hears "nothing came back" may still send at the slot in every
  -- limit's schedule.
  if not lt(now_s, now_n, arg_s, arg_n) then
    return { 0, now_s, now_n }
  end
  local args = {}
  for i = 1, n do
    local p, st = ps[i], sts[i]
    local b = 3 + (i - 1) * stride + 7
    local a = {
      as = tonumber(ARGV[b + 1]), an = tonumber(ARGV[b + 2]),
      cs = tonumber(ARGV[b + 3]), cn = tonumber(ARGV[b + 4]),
      ver = tonumber(ARGV[b + 5]),
      bs = tonumber(ARGV[b + 6]), bn = tonumber(ARGV[b + 7]),
    }
    -- A limit that took nothing has nothing to give back either way.
    a.took = not p.unlimited and (a.cs > 0 or a.cn > 0)
    if a.took and not (st.ver == a.ver and st.ts == a.as and st.tn == a.an) then
      local out = { 1, now_s, now_n }
      for _ = 1, n do out[#out + 1] = 0 end
      return out
    end
    args[i] = a
  end
  local out = { 1, now_s, now_n }
  for i = 1, n do
    local p, st, a = ps[i], sts[i], args[i]
    local back = 0
    if a.took then
      -- Back to what the reservation found: as if it had never been made.
      st.ts, st.tn = a.bs, a.bn
      -- A deferral made since stays a floor.
      if lt(now_s, now_n, st.fs, st.fn) then
        st.ts, st.tn = defer(p, st.ts, st.tn, st.fs, st.fn)
      end
      save(KEYS[i], p, st)
      back = 1
    end
    out[#out + 1] = back
  end
  return out
elseif op == 'defer' then
  local us, un = add(now_s, now_n, arg_s, arg_n)
  for i = 1, n do
    local p, st = ps[i], sts[i]
    st.ts, st.tn = defer(p, st.ts, st.tn, us, un)
    st.fs, st.fn = max(st.fs, st.fn, us, un)
    save(KEYS[i], p, st)
  end
  return { 1, now_s, now_n, us, un }
elseif op == 'charge' then
  -- What a process's local fallback admitted while Redis failed, charged
  -- as if taken when its first token was: every limit takes its cost at
  -- the later of its tat and then, and nothing is refused. The quota
  -- Redis left unused since then pays for it first.
  local fs_, fn_ = sub(now_s, now_n, arg_s, arg_n)
  for i = 1, n do
    local p, st = ps[i], sts[i]
    local b = 3 + (i - 1) * stride + 7
    local cs, cn = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2])
    if not p.unlimited and (cs > 0 or cn > 0) then
      local ms, mn = max(st.ts, st.tn, fs_, fn_)
      st.ts, st.tn = add(ms, mn, cs, cn)
      st.dirty = true
    end
    if st.dirty then save(KEYS[i], p, st) end
  end
  return { 1, now_s, now_n }
elseif op == 'sync' then
  for i = 1, n do
    if sts[i].dirty then save(KEYS[i], ps[i], sts[i]) end
  end
  return { 1, now_s, now_n }
elseif op == 'peek' then
  local tokens = math.huge
  for i = 1, n do
    tokens = math.min(tokens, available(ps[i], sts[i].ts, sts[i].tn))
  end
  return { 1, now_s, now_n, string.format('%.17g', tokens) }
end
return redis.error_reply('tollgate: unknown operation ' .. tostring(op))
