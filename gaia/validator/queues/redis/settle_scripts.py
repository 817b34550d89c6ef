"""Lua bodies of the steps a lease holder takes: heartbeat, complete, retry, fail, release.

Each is fenced: it acts only if the job is running under the caller's lease token (see ``held``
in the prelude of :mod:`.scripts`), and returns the job's overlay fields after the step. A step
re-sent after a lost reply finds the job already in the step's target status with the same token
and returns it unchanged.
"""

from __future__ import annotations

HEARTBEAT = r"""
-- ARGV[A]: id, ARGV[A+1]: token, ARGV[A+2]: new lease expiry, ARGV[A+3]: progress JSON or ''.
local id, token = ARGV[A], ARGV[A + 1]
local f, err = held(id, token, nil)
if not f then return err end
local expires = ARGV[A + 2]
redis.call('HSET', job_key(id), 'lease_expires_at', expires, 'updated_at', NOW_S)
if ARGV[A + 3] ~= '' then redis.call('HSET', job_key(id), 'progress', ARGV[A + 3]) end
redis.call('ZADD', LEASES, expires, id)
return overlay(id)
"""

COMPLETE = r"""
-- ARGV[A]: id, ARGV[A+1]: token, ARGV[A+2]: result JSON.
local id, token = ARGV[A], ARGV[A + 1]
local f, done = held(id, token, {succeeded = true})
if not f then return done end
if not done then finish(id, f, 'succeeded', {'result', ARGV[A + 2]}) end
return overlay(id)
"""

FAIL = r"""
-- ARGV[A]: id, ARGV[A+1]: token, ARGV[A+2]: error JSON.
local id, token = ARGV[A], ARGV[A + 1]
local f, done = held(id, token, {dead = true})
if not f then return done end
if not done then finish(id, f, 'dead', {'error', ARGV[A + 2]}) end
return overlay(id)
"""

RETRY = r"""
-- ARGV[A]: id, ARGV[A+1]: token, ARGV[A+2]: at (retry no earlier than), ARGV[A+3]: error JSON
-- or '' (keep the last one), ARGV[A+4]: '1' to count the attempt, ARGV[A+5]: error JSON used
-- when no attempt is left and no error was given.
local id, token = ARGV[A], ARGV[A + 1]
local f, done = held(id, token, {retry_scheduled = true, dead = true})
if not f then return done end
if not done then
  local given, counted = ARGV[A + 3], ARGV[A + 4] == '1'
  local attempts = tonumber(f.attempts)
  if not counted then attempts = math.max(0, attempts - 1) end
  if counted and attempts >= tonumber(f.max_attempts) then
    finish(id, f, 'dead', {'error', given ~= '' and given or ARGV[A + 5]})
  else
    local at = ARGV[A + 2]
    local not_before = tonumber(at) > NOW and at or NOW_S
    redis.call('HSET', job_key(id), 'status', 'retry_scheduled', 'attempts', attempts,
               'not_before', not_before, 'updated_at', NOW_S, 'lease_expires_at', '')
    if given ~= '' then redis.call('HSET', job_key(id), 'error', given) end
    reindex(id, f.type, 'running', 'retry_scheduled', f.seq)
    redis.call('ZREM', LEASES, id)
    f.not_before = not_before
    place(id, f)
    wake(f.type, 1)
  end
end
return overlay(id)
"""

RELEASE = r"""
-- ARGV[A]: id, ARGV[A+1]: token. Queued again at once; the attempt is given back.
local id, token = ARGV[A], ARGV[A + 1]
local f, done = held(id, token, {queued = true})
if not f then return done end
if not done then
  if tonumber(f.not_before) > NOW then f.not_before = NOW_S end
  redis.call('HSET', job_key(id), 'status', 'queued',
             'attempts', math.max(0, tonumber(f.attempts) - 1), 'not_before', f.not_before,
             'updated_at', NOW_S, 'lease_expires_at', '', 'worker_id', '')
  reindex(id, f.type, 'running', 'queued', f.seq)
  redis.call('ZREM', LEASES, id)
  place(id, f)
  wake(f.type, 1)
end
return overlay(id)
"""

SETTLE_SCRIPTS: dict[str, str] = {
    "heartbeat": HEARTBEAT,
    "complete": COMPLETE,
    "fail": FAIL,
    "retry": RETRY,
    "release": RELEASE,
}
