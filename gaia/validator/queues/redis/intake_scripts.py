"""Lua functions by which jobs enter the queue and go to workers: enqueue, claim, bury.

Part of the library assembled in :mod:`.scripts`, whose shared code defines the helpers used
here. Enqueue and claim are the hot paths: they read and write only the fields they need and
gather their sorted-set writes into one variadic command per key.
"""

from __future__ import annotations

ENQUEUE = r"""
-- args[A]: number of groups; each group: its number of jobs n, then per job: id, type,
-- ready score (-priority), due time in whole microseconds (clamped as by order_member), dedupe
-- key ('' = none), spec, state line, and the info line after its type and seq (priority
-- max_attempts dedupe). The seq (15 digits, so it is also the order member's) is the only
-- number formatted here; due-ness compares digit strings.
-- A group is all or nothing: when one of its ids exists already (and the call is not a
-- re-send) its entry is a DUPLICATE_ID error and none of its jobs is stored. Otherwise its
-- entry lists per job 0 (stored as given) or the active job (HGETALL) that holds its dedupe key
-- (or, when re-sent, the job the first send stored).
local ENQUEUE_WIDTH = 8

-- The group's job keys, and a DUPLICATE_ID error if one of them exists (unless re-sent).
local function refuse_existing(args, first, n)
  local keys = {}
  for i = 0, n - 1 do keys[i + 1] = job_key(args[first + i * ENQUEUE_WIDTH]) end
  if RESENT then return keys, nil end
  local found = 0
  for i = 1, n, BULK do
    found = found + redis.call('EXISTS', unpack(keys, i, math.min(i + BULK - 1, n)))
  end
  if found == 0 then return keys, nil end
  for i = 1, n do
    if redis.call('EXISTS', keys[i]) == 1 then
      return keys, redis.error_reply('DUPLICATE_ID a job with id '
        .. args[first + (i - 1) * ENQUEUE_WIDTH] .. ' already exists')
    end
  end
  return keys, nil
end

-- The active job holding `dedupe`, or false.
local function holder_of(dedupe)
  local other = redis.call('HGET', DEDUPE, dedupe)
  return other and ACTIVE[status_of(other)] and other or false
end

local function store_group(args, first, n, g, woken)
  local keys, refused = refuse_existing(args, first, n)
  if refused then return refused end
  local seq = redis.call('INCRBY', SEQ, n) - n
  local entries = {}
  for i = 0, n - 1 do
    local o = first + i * ENQUEUE_WIDTH
    local id, t, score, due_us, dedupe = args[o], args[o + 1], args[o + 2], args[o + 3],
                                        args[o + 4]
    seq = seq + 1
    local holder = dedupe ~= '' and holder_of(dedupe)
    local key = keys[i + 1]
    if not holder and RESENT and redis.call('EXISTS', key) == 1 then holder = id end
    if holder then
      entries[i + 1] = redis.call('HGETALL', job_key(holder))
    else
      local seq_s = string.format('%015d', seq)
      local info = t .. ' ' .. seq_s .. ' ' .. args[o + 7]
      if dedupe ~= '' then
        redis.call('HSET', DEDUPE, dedupe, id)
        redis.call('HSET', key, 'spec', args[o + 5], 'state', args[o + 6], 'info', info,
                   'dedupe', dedupe)
      else
        redis.call('HSET', key, 'spec', args[o + 5], 'state', args[o + 6], 'info', info)
      end
      later_add(g, set_key(t, 'queued'), seq_s, id)
      if #due_us < #NOW_US or (#due_us == #NOW_US and due_us <= NOW_US) then
        later_add(g, set_key(t, 'ready'), score,
                  string.rep('0', 17 - #due_us) .. due_us .. ':' .. seq_s .. ':' .. id)
      else -- delayed: scored by not_before as written in the state line
        later_add(g, delayed_key(t), string.match(args[o + 6], '^[^ ]+ [^ ]+ [^ ]+ ([^ ]+)'), id)
      end
      woken[t] = (woken[t] or 0) + 1
      entries[i + 1] = 0
    end
  end
  return entries
end

local function stored(g, woken)
  flush(g)
  for t, count in pairs(woken) do
    redis.call('SADD', TYPES, t)
    wake(t, count)
  end
end

local function enqueue(keys, args)
  begin(keys, args)
  local out, g, woken = {}, gather(), {}
  local o = A + 1
  for group = 1, tonumber(args[A]) do
    local n = tonumber(args[o])
    out[group] = store_group(args, o + 1, n, g, woken)
    o = o + 1 + n * ENQUEUE_WIDTH
  end
  stored(g, woken)
  return out
end

"""

ENQUEUE_PART = r"""
-- One part of a batch too large for one call, sent in order right after the one before (the
-- client does not wait for a reply in between). args[A]: 'first', 'next' or 'last';
-- args[A+1]: the batch's token; args[A+2]: m, then (first part) the ids of the whole batch;
-- then one group as for enqueue. The first part refuses the whole batch when one of its ids
-- exists already, and otherwise marks the batch as accepted; the other parts run only while
-- the mark is there (BATCH_REFUSED otherwise), so a refused batch stores nothing; a part
-- refused on its own (an id stored meanwhile) and the last remove the mark (which expires in
-- an hour if the batch never ends). Reply: {entry}.
local function enqueue_part(keys, args)
  begin(keys, args)
  local part, mark, m = args[A], P .. 'batch:' .. args[A + 1], tonumber(args[A + 2])
  if part == 'first' then
    if not RESENT then
      local ids = {}
      for i = 1, m do ids[i] = job_key(args[A + 2 + i]) end
      local found = 0
      for i = 1, m, BULK do
        found = found + redis.call('EXISTS', unpack(ids, i, math.min(i + BULK - 1, m)))
      end
      for i = 1, found > 0 and m or 0 do
        if redis.call('EXISTS', ids[i]) == 1 then
          return {redis.error_reply('DUPLICATE_ID a job with id ' .. args[A + 2 + i]
            .. ' already exists')}
        end
      end
    end
    redis.call('SET', mark, '1', 'EX', '3600')
  elseif redis.call('EXISTS', mark) == 0 then
    return {redis.error_reply('BATCH_REFUSED an earlier part of this batch was refused')}
  end
  local o = A + 3 + m
  local g, woken = gather(), {}
  local out = {store_group(args, o + 1, tonumber(args[o]), g, woken)}
  stored(g, woken)
  if part == 'last' or out[1].err then redis.call('DEL', mark) end
  return out
end
"""

CLAIM = r"""
-- args[A]: lease expiry, args[A+1]: it in us, args[A+2]: number of job types (0: every type),
-- the types, then the number of requests and per request: worker id (spaces escaped), most
-- jobs wanted, and a condition: a job id and the start its state line must have ('' '': none;
-- complete_and_claim asks for the job it completes right after to be still held, so a
-- request whose completion will be refused claims nothing). Requests are served in order.
-- Reply: per request {next due time of a delayed job or '' (set only when nothing at all was
-- claimed), then per claimed job: id, spec, new state, error (false when unset), info}.
local CLAIMED = '^(%a[%a_]*) (%d+) (%d+) ([^ ]+) [^ ]* [^ ]* ([^ ]*) '

local function corrupt(state, info)
  return 'job record is invalid: unreadable state ' .. string.format('%q', tostring(state))
    .. ' or info ' .. string.format('%q', tostring(info))
end

-- Due delayed and retry-scheduled jobs join their ready sets.
local function promote(types)
  for _, t in ipairs(types) do
    local due = redis.call('ZRANGEBYSCORE', delayed_key(t), '-inf', NOW_S, 'LIMIT', 0, 1000)
    if #due > 0 then bulk('ZREM', delayed_key(t), due) end
    for _, id in ipairs(due) do
      local lines = redis.call('HMGET', job_key(id), 'state', 'info')
      local s = parse(lines[1], lines[2])
      if s and s.type == t and CLAIMABLE[s.status] then
        redis.call('ZADD', ready_key(t), negated(s.priority), order_member(s.not_before, s.seq, id))
      elseif redis.call('EXISTS', job_key(id)) == 1 and not (s and s.type == t) then
        bury(id, t, corrupt(lines[1], lines[2]))
      end
    end
  end
end

-- Claim the job behind ready member `member` of type t for `worker`, appending it to `entry`;
-- true if claimed. A record that cannot be claimed safely is dead-lettered. The new state keeps
-- not_before and finished_at of the old one (CLAIMED reads status, attempts, lease_token,
-- not_before and finished_at, the start of the line); the info line must start with t.
local function take(t, member, worker, expires, entry, g)
  local id = string.sub(member, MEMBER_ID_AT)
  local key = job_key(id)
  local v = redis.call('HMGET', key, 'state', 'spec', 'error', 'info')
  local status, attempts, token, not_before, finished = string.match(v[1] or '', CLAIMED)
  local info = v[4]
  if CLAIMABLE[status] and v[2] and info and string.sub(info, 1, #t + 1) == t .. ' ' then
    local state = 'running ' .. string.format('%d', attempts + 1) .. ' '
      .. string.format('%d', token + 1) .. ' ' .. not_before .. ' ' .. NOW_S .. ' ' .. worker
      .. ' ' .. finished .. ' ' .. NOW_S .. ' ' .. expires[1]
    redis.call('HSET', key, 'state', state, 'progress', '')
    later_rem(g, set_key(t, status), id)
    later_add(g, set_key(t, 'running'), expires[2], id)
    local n = #entry
    entry[n + 1], entry[n + 2], entry[n + 3], entry[n + 4], entry[n + 5] =
      id, v[2], state, v[3], info
    return true
  end
  if v[1] or v[2] or redis.call('EXISTS', key) == 1 then bury(id, t, corrupt(v[1], info)) end
  return false
end

-- Where the next due job comes from: next_due(source, n) gives its type and ready member, or
-- nil; n is how many more jobs the call wants. One type: a window of the n best members (ZRANGE,
-- no scores to format), removed as far as it was used before the next window and at the end
-- (done(source)); several types: the best of their heads, one at a time.
local WINDOW = 1000
local function source_of(types)
  return {types = types, buffer = {}, at = 1}
end

local function used(source)
  if source.at > 1 then
    bulk('ZREM', ready_key(source.types[1]), {unpack(source.buffer, 1, source.at - 1)})
  end
end

local function next_due(source, n)
  local types = source.types
  if #types == 1 then
    if source.at > #source.buffer then
      used(source)
      local last = string.format('%d', math.min(n, WINDOW) - 1)
      source.buffer = redis.call('ZRANGE', ready_key(types[1]), '0', last)
      source.at = 1
      if #source.buffer == 0 then return nil end
    end
    source.at = source.at + 1
    return types[1], source.buffer[source.at - 1]
  end
  local best_t, best_m, best_s = nil, nil, nil
  for _, t in ipairs(types) do
    local head = redis.call('ZRANGE', ready_key(t), '0', '0', 'WITHSCORES')
    if head[1] then
      local s = tonumber(head[2])
      if best_t == nil or s < best_s or (s == best_s and head[1] < best_m) then
        best_t, best_m, best_s = t, head[1], s
      end
    end
  end
  if best_t then redis.call('ZREM', ready_key(best_t), best_m) end
  return best_t, best_m
end

-- Pass a wake-up on when due work is left; when nothing was claimed, drop the stale
-- wake-ups and tell every request when the next delayed job is due.
local function after_claim(types, every, claimed, out)
  if claimed > 0 then
    local more = false
    for _, t in ipairs(types) do
      if redis.call('EXISTS', ready_key(t)) == 1 then
        more = true
        if redis.call('LLEN', wake_key(t)) == 0 then redis.call('LPUSH', wake_key(t), '1') end
      end
    end
    if more and redis.call('LLEN', WAKE_ALL) == 0 then redis.call('LPUSH', WAKE_ALL, '1') end
    return
  end
  local due = nil
  for _, t in ipairs(types) do
    redis.call('DEL', wake_key(t))
    local head = redis.call('ZRANGE', delayed_key(t), 0, 0, 'WITHSCORES')
    if head[1] and (due == nil or tonumber(head[2]) < tonumber(due)) then due = head[2] end
  end
  if every then redis.call('DEL', WAKE_ALL) end
  for _, entry in ipairs(out) do entry[1] = due or '' end
end

local function claim(keys, args)
  begin(keys, args)
  local expires, ntypes = {args[A], args[A + 1]}, tonumber(args[A + 2])
  local types = {}
  for i = 1, ntypes do types[i] = args[A + 2 + i] end
  local every = ntypes == 0
  if every then types = redis.call('SMEMBERS', TYPES) end
  promote(types)
  local o = A + 3 + ntypes
  local requests, wanted = tonumber(args[o]), 0
  for r = 1, requests do
    local at = o + 4 * r - 3
    local cond = args[at + 2]
    if cond ~= '' then
      local state = redis.call('HGET', job_key(cond), 'state') or ''
      if string.sub(state, 1, #args[at + 3]) ~= args[at + 3] then args[at + 1] = '0' end
    end
    wanted = wanted + tonumber(args[at + 1])
  end
  local out, g, claimed = {}, gather(), 0
  local source = source_of(types)
  for r = 1, requests do
    local worker, want = args[o + 4 * r - 3], tonumber(args[o + 4 * r - 2])
    local entry, got = {''}, 0
    while got < want do
      local t, member = next_due(source, wanted - claimed)
      if not t then break end
      if take(t, member, worker, expires, entry, g) then
        got, claimed = got + 1, claimed + 1
      end
    end
    out[r] = entry
  end
  used(source)
  flush(g)
  after_claim(types, every, claimed, out)
  return out
end
"""

BURY = r"""
-- args[A]: job id, args[A+1]: lease token, args[A+2]: why the client could not decode it.
local function bury_job(keys, args)
  begin(keys, args)
  local id, token = args[A], args[A + 1]
  local r = read(id)
  local s = r.s
  if not s or s.status ~= 'running' or s.lease_token ~= token then
    return lease_lost(id, token, r._exists, s and s.status, s and s.lease_token)
  end
  bury(id, s.type, args[A + 2])
  return redis.call('HGETALL', job_key(id))
end
"""

INTAKE_FUNCTIONS: dict[str, str] = {
    "enqueue": ENQUEUE,
    "enqueue_part": ENQUEUE_PART,  # uses store_group and stored, defined by ENQUEUE
    "claim": CLAIM,
    "bury_job": BURY,
}
"""Step name -> Lua code defining ``local function <step>(keys, args)``."""
