"""Lua functions of the steps a lease holder takes: heartbeat, complete, retry, fail, release.

Each takes a batch of items (one per lease) and is fenced per item: it acts only if the job is
running under the item's lease token (see ``held`` in :mod:`.scripts`); its entry is the job's
new state line and progress (see ``settled``), or a LEASE_LOST error. An item re-sent after a
lost reply finds the job already in the step's target status with the same token, and gets the
state, progress, error and result as stored.
"""

from __future__ import annotations

HEARTBEAT = r"""
-- args[A]: new lease expiry, args[A+1]: number of items; per item: id, token, progress JSON or ''.
local function heartbeat(keys, args)
  begin(keys, args)
  local expires, out = args[A], {}
  for i = 0, tonumber(args[A + 1]) - 1 do
    local o = A + 2 + i * 3
    local id, token = args[o], args[o + 1]
    local s, err = held(id, token, nil)
    if s then
      s.lease_expires_at, s.updated_at = expires, NOW_S
      save(id, s, args[o + 2] ~= '' and {progress = args[o + 2]} or nil)
      redis.call('ZADD', index_key(s.type, 'running'), expires, id)
      out[i + 1] = settled(id, s, false)
    else
      out[i + 1] = err
    end
  end
  return out
end
"""

COMPLETE = r"""
-- args[A]: number of items; per item: id, token, result JSON. The hot path: one read, one
-- write and the expiry per job; the sorted-set moves of the batch are gathered. COMPLETED
-- captures status, attempts .. updated_at (token inside), started_at, seq .. dedupe (type and
-- dedupe inside) and worker_id.
local COMPLETED = '^(%a[%a_]*) (%d+ (%d+) [^ ]+) [^ ]+ ([^ ]*) [^ ]* [^ ]* '
  .. '(%d+ ([^ ]+) %-?%d+ %d+ ([01])) (.*)$'
local function complete(keys, args)
  begin(keys, args)
  local until_s, expire = RETENTION.succeeded[1], RETENTION.succeeded[2]
  local score = until_s ~= '' and until_s or '+inf'
  local out, g = {}, gather()
  for i = 0, tonumber(args[A]) - 1 do
    local o = A + 1 + i * 3
    local id, token = args[o], args[o + 1]
    local key = job_key(id)
    local v = redis.call('HMGET', key, 'state', 'progress')
    local status, head, held_token, started, tail, t, dedupe, worker =
      string.match(v[1] or '', COMPLETED)
    if status == 'running' and held_token == token then
      local state = 'succeeded ' .. head .. ' ' .. NOW_S .. ' ' .. started .. ' ' .. NOW_S
        .. '  ' .. tail .. ' ' .. worker
      redis.call('HSET', key, 'state', state, 'result', args[o + 2])
      if until_s ~= '' then redis.call('EXPIRE', key, expire) end
      later_rem(g, index_key(t, 'running'), id)
      later_add(g, index_key(t, 'succeeded'), score, id)
      if dedupe == '1' then free_dedupe(id) end
      out[i + 1] = {state, v[2]}
    else
      local s, done = held(id, token, {succeeded = true})
      if not s then
        out[i + 1] = done
      elseif done then
        out[i + 1] = settled(id, nil, true)
      else -- running under this token, in a shape COMPLETED does not read: the general way
        finish(id, s, 'succeeded', {result = args[o + 2]})
        out[i + 1] = settled(id, s, false)
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
