"""Lua bodies of the steps a lease holder takes: heartbeat, complete, retry, fail, release.

Each is fenced: it acts only if the job is running under the caller's lease token (see ``held``
in the prelude of :mod:`.scripts`), and returns the fields it changed (see ``changed``). A step
re-sent after a lost reply finds the job already in the step's target status with the same token
and returns it unchanged.
"""

from __future__ import annotations

HEARTBEAT = r"""
-- ARGV[A]: id, ARGV[A+1]: token, ARGV[A+2]: new lease expiry, ARGV[A+3]: progress JSON or ''.
local id, token = ARGV[A], ARGV[A + 1]
local f, err = held(id, token, nil)
if not f then return err end
local changes = {lease_expires_at = ARGV[A + 2], updated_at = NOW_S}
if ARGV[A + 3] ~= '' then changes.progress = ARGV[A + 3] end
update(id, f, changes)
redis.call('ZADD', index_key(f.type, 'running'), ARGV[A + 2], id)
return changed(f, changes)
"""

COMPLETE = r"""
-- ARGV[A]: id, ARGV[A+1]: token, ARGV[A+2]: result JSON.
local id, token = ARGV[A], ARGV[A + 1]
local f, done = held(id, token, {succeeded = true})
if not f then return done end
if done then return changed(read(id), nil) end
local changes = {result = ARGV[A + 2]}
finish(id, f, 'succeeded', changes)
return changed(f, changes)
"""

FAIL = r"""
-- ARGV[A]: id, ARGV[A+1]: token, ARGV[A+2]: error JSON.
local id, token = ARGV[A], ARGV[A + 1]
local f, done = held(id, token, {dead = true})
if not f then return done end
if done then return changed(read(id), nil) end
local changes = {error = ARGV[A + 2]}
finish(id, f, 'dead', changes)
return changed(f, changes)
"""

RETRY = r"""
-- ARGV[A]: id, ARGV[A+1]: token, ARGV[A+2]: at (retry no earlier than), ARGV[A+3]: error JSON
-- or '' (keep the last one), ARGV[A+4]: '1' to count the attempt, ARGV[A+5]: error JSON used
-- when no attempt is left and no error was given.
local id, token = ARGV[A], ARGV[A + 1]
local f, done = held(id, token, {retry_scheduled = true, dead = true})
if not f then return done end
if done then return changed(read(id), nil) end
local given, counted = ARGV[A + 3], ARGV[A + 4] == '1'
local attempts = tonumber(f.attempts)
if not counted then attempts = math.max(0, attempts - 1) end
local changes
if counted and attempts >= tonumber(f.max_attempts) then
  changes = {error = given ~= '' and given or ARGV[A + 5]}
  finish(id, f, 'dead', changes)
else
  local at = ARGV[A + 2]
  changes = {attempts = tostring(attempts), not_before = tonumber(at) > NOW and at or NOW_S}
  if given ~= '' then changes.error = given end
  reschedule(id, f, 'retry_scheduled', changes)
end
return changed(f, changes)
"""

RELEASE = r"""
-- ARGV[A]: id, ARGV[A+1]: token. Queued again at once; the attempt is given back.
local id, token = ARGV[A], ARGV[A + 1]
local f, done = held(id, token, {queued = true})
if not f then return done end
if done then return changed(read(id), nil) end
local changes = {attempts = tostring(math.max(0, tonumber(f.attempts) - 1)), worker_id = '',
                 not_before = tonumber(f.not_before) > NOW and NOW_S or f.not_before}
reschedule(id, f, 'queued', changes)
return changed(f, changes)
"""

SETTLE_SCRIPTS: dict[str, str] = {
    "heartbeat": HEARTBEAT,
    "complete": COMPLETE,
    "fail": FAIL,
    "retry": RETRY,
    "release": RELEASE,
}
