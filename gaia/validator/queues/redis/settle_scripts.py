"""Lua functions of the steps a lease holder takes: heartbeat, complete, retry, fail, release.

Each takes a batch of items (one per lease) and is fenced per item: it acts only if the job is
running under the item's lease token (see ``held`` in :mod:`.scripts`; complete compares the
start of the state line); its entry is the job's new state line and progress (see
``settled``), or a LEASE_LOST error. An item re-sent after a
lost reply finds the job already in the step's target status with the same token, and gets the
state, progress, error and result as stored.
"""

from __future__ import annotations

HEARTBEAT = r"""
-- args[A]: new lease expiry, args[A+1]: it in us, args[A+2]: number of items; per item: id,
-- token, progress JSON or ''.
local function heartbeat(keys, args)
  begin(keys, args)
  local expires, out = args[A], {}
  for i = 0, tonumber(args[A + 2]) - 1 do
    local o = A + 3 + i * 3
    local id, token = args[o], args[o + 1]
    local s, err = held(id, token, nil)
    if s then
      s.lease_expires_at, s.updated_at = expires, NOW_S
      save(id, s, args[o + 2] ~= '' and {progress = args[o + 2]} or nil)
      redis.call('ZADD', index_key(s.type, 'running'), args[A + 1], id)
      out[i + 1] = settled(id, s, false)
    else
      out[i + 1] = err
    end
  end
  return out
end
"""

COMPLETE = r"""
-- args[A]: number of items; per item: id, the state line the lease holder's job must start
-- with ('running <attempts> <lease_token> '), the job's type, '1' if it has a dedupe key,
-- result JSON. The hot path compares that start, keeps the line up to worker_id (three plain
-- finds further), writes finished_at and updated_at after it, and files the job: two calls of
-- its own per job; its entry is {false, progress}. Anything else (a lost lease, a re-send) goes
-- the general way.
local function complete(keys, args)
  begin(keys, args)
  local score = RETENTION.succeeded ~= '' and RETENTION.succeeded or '+inf'
  local out, g = {}, gather()
  for i = 0, tonumber(args[A]) - 1 do
    local o = A + 1 + i * 5
    local id, expected, t = args[o], args[o + 1], args[o + 2]
    local key = job_key(id)
    local v = redis.call('HMGET', key, 'state', 'progress')
    local old, kept = v[1], nil
    if old and string.sub(old, 1, #expected) == expected then
      kept = string.find(old, ' ', #expected + 1, true) -- after not_before
      kept = kept and string.find(old, ' ', kept + 1, true) -- after started_at
      kept = kept and string.find(old, ' ', kept + 1, true) -- after worker_id
    end
    if kept then
      redis.call('HSET', key, 'state',
                 'succeeded' .. string.sub(old, 8, kept) .. NOW_S .. ' ' .. NOW_S .. ' ',
                 'result', args[o + 4])
      later_rem(g, set_key(t, 'running'), id)
      later_add(g, set_key(t, 'succeeded'), score, id)
      if args[o + 3] == '1' then free_dedupe(id) end
      out[i + 1] = {false, v[2]}
    else
      local token = string.match(expected, '^running %d+ (%d+) ') or '?'
      local s, done = held(id, token, {succeeded = true})
      if not s then
        out[i + 1] = done
      elseif done then
        out[i + 1] = settled(id, nil, true)
      else -- running under this token, in a shape the holder did not expect: the general way
        finish(id, s, 'succeeded', {result = args[o + 4]})
        out[i + 1] = settled(id, s, true)
      end
    end
  end
  flush(g)
  return out
end
"""

FAIL = r"""
-- args[A]: number of items; per item: id, token, error JSON.
local function fail_one(args, o)
  local id, token = args[o], args[o + 1]
  local s, done = held(id, token, {dead = true})
  if not s then return done end
  if done then return settled(id, nil, true) end
  finish(id, s, 'dead', {error = args[o + 2]})
  return settled(id, s, true)
end
local function fail(keys, args) return each(keys, args, 3, fail_one) end
"""

RETRY = r"""
-- args[A]: number of items; per item: id, token, at (retry no earlier than), error JSON or ''
-- (keep the last one), '1' to count the attempt, error JSON used when no attempt is left and
-- no error was given. The entry carries the error as stored.
local function retry_one(args, o)
  local id, token = args[o], args[o + 1]
  local s, done = held(id, token, {retry_scheduled = true, dead = true})
  if not s then return done end
  if done then return settled(id, nil, true) end
  local given, counted = args[o + 3], args[o + 4] == '1'
  local attempts = tonumber(s.attempts)
  if not counted then attempts = math.max(0, attempts - 1) end
  if counted and attempts >= tonumber(s.max_attempts) then
    finish(id, s, 'dead', {error = given ~= '' and given or args[o + 5]})
  else
    local at = args[o + 2]
    s.attempts, s.not_before = tostring(attempts), tonumber(at) > NOW and at or NOW_S
    reschedule(id, s, 'retry_scheduled', given ~= '' and {error = given} or nil)
  end
  return settled(id, s, true)
end
local function retry(keys, args) return each(keys, args, 6, retry_one) end
"""

RELEASE = r"""
-- args[A]: number of items; per item: id, token. Queued again at once; the attempt is given
-- back.
local function release_one(args, o)
  local id, token = args[o], args[o + 1]
  local s, done = held(id, token, {queued = true})
  if not s then return done end
  if done then return settled(id, nil, true) end
  s.attempts = tostring(math.max(0, tonumber(s.attempts) - 1))
  s.worker_id = ''
  if tonumber(s.not_before) > NOW then s.not_before = NOW_S end
  reschedule(id, s, 'queued', nil)
  return settled(id, s, false)
end
local function release(keys, args) return each(keys, args, 2, release_one) end
"""

SETTLE_FUNCTIONS: dict[str, str] = {
    "heartbeat": HEARTBEAT,
    "complete": COMPLETE,
    "fail": FAIL,
    "retry": RETRY,
    "release": RELEASE,
}
"""Step name -> Lua code defining ``local function <step>(keys, args)``."""
