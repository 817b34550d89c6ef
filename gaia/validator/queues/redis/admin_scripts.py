"""Lua bodies of the steps taken by id or for the whole queue: cancel, requeue, reap, stats, list.

Prefixed with the prelude of :mod:`.scripts`, which defines the helpers used here.
"""

from __future__ import annotations

CANCEL = r"""
-- ARGV[A]: id. Errors: NOT_FOUND; INVALID_TRANSITION <status> cancelled for a finished job.
local id = ARGV[A]
local f = read(id)
if not f._exists then return redis.error_reply('NOT_FOUND no job with id ' .. id) end
if RESENT and f.status == 'cancelled' then return flat_of(f) end
if not f._sound or not ACTIVE[f.status] then
  return redis.error_reply('INVALID_TRANSITION ' .. tostring(f.status) .. ' cancelled')
end
if CLAIMABLE[f.status] then unplace(id, f) end
finish(id, f, 'cancelled', {})
return flat_of(f)
"""

REQUEUE = r"""
-- ARGV[A]: id. A dead job is queued again with a fresh attempt budget.
-- Errors: NOT_FOUND; INVALID_TRANSITION <status> queued; DEDUPE_HELD <message>.
local id = ARGV[A]
local f = read(id)
if not f._exists then return redis.error_reply('NOT_FOUND no job with id ' .. id) end
if RESENT and ACTIVE[f.status] then return flat_of(f) end
if not f._sound or f.status ~= 'dead' then
  return redis.error_reply('INVALID_TRANSITION ' .. tostring(f.status) .. ' queued')
end
if f.dedupe ~= '' then
  local other = redis.call('HGET', DEDUPE, f.dedupe)
  if other and other ~= id and ACTIVE[redis.call('HGET', job_key(other), 'status')] then
    return redis.error_reply('DEDUPE_HELD job ' .. id .. ' cannot be requeued: dedupe key '
      .. f.dedupe .. ' is held by active job ' .. other)
  end
  redis.call('HSET', DEDUPE, f.dedupe, id)
end
redis.call('PERSIST', job_key(id))
reschedule(id, f, 'queued', {attempts = '0', not_before = NOW_S, finished_at = '',
                             worker_id = ''})
return flat_of(f)
"""

REAP = r"""
-- ARGV[A]: most jobs to handle per set. Running jobs whose lease expired go back to queued,
-- or dead when no attempt is left; finished jobs past retention are deleted.
-- Returns {reclaimed, 1 if a set had more than the limit else 0}.
local limit = tonumber(ARGV[A])
local reclaimed, more = 0, 0
for _, t in ipairs(redis.call('SMEMBERS', TYPES)) do
  local expired = redis.call('ZRANGEBYSCORE', index_key(t, 'running'), '-inf', '(' .. NOW_S,
                             'LIMIT', 0, limit)
  if #expired == limit then more = 1 end
  for _, id in ipairs(expired) do
    local f = read(id)
    if not f._exists or f.status ~= 'running' or f.type ~= t then
      redis.call('ZREM', index_key(t, 'running'), id)
    elseif not f._sound then
      bury(id, t, 'job record is invalid: unreadable fields of a running job')
    else
      local why = cjson.encode({kind = 'lease_expired', message = string.format(
        'lease expired at %.3f while held by worker %s', tonumber(f.lease_expires_at) or 0,
        tostring(f.worker_id))})
      if tonumber(f.attempts) >= tonumber(f.max_attempts) then
        finish(id, f, 'dead', {error = why})
      else
        reschedule(id, f, 'queued', {error = why, worker_id = '',
          not_before = tonumber(f.not_before) > NOW and NOW_S or f.not_before})
      end
      reclaimed = reclaimed + 1
    end
  end
  for s in pairs(TERMINAL) do
    local old = redis.call('ZRANGEBYSCORE', index_key(t, s), '-inf', '(' .. NOW_S,
                           'LIMIT', 0, limit)
    if #old == limit then more = 1 end
    for _, id in ipairs(old) do
      if not ACTIVE[redis.call('HGET', job_key(id), 'status')] then
        redis.call('DEL', job_key(id))
      end
      redis.call('ZREM', index_key(t, s), id)
    end
  end
end
return {reclaimed, more}
"""

STATS = r"""
-- Returns {expired leases, due time of the oldest due job or '', {type, count per status}...}
-- with counts in the order of STATUSES.
local out = {0, ''}
local oldest = nil
for _, t in ipairs(redis.call('SMEMBERS', TYPES)) do
  local row = {t}
  for _, s in ipairs(STATUSES) do row[#row + 1] = redis.call('ZCARD', index_key(t, s)) end
  out[#out + 1] = row
  out[1] = out[1] + redis.call('ZCOUNT', index_key(t, 'running'), '-inf', '(' .. NOW_S)
  local late = redis.call('ZRANGE', delayed_key(t), 0, 0, 'WITHSCORES')
  if late[1] and tonumber(late[2]) <= NOW then
    oldest = math.min(oldest or tonumber(late[2]), tonumber(late[2]))
  end
  -- The earliest due job of each priority level is the first member of its score.
  local head = redis.call('ZRANGE', ready_key(t), 0, 0, 'WITHSCORES')
  while head[1] do
    local due = tonumber(string.sub(head[1], 1, 17)) / 1000000
    oldest = math.min(oldest or due, due)
    head = redis.call('ZRANGEBYSCORE', ready_key(t), '(' .. head[2], '+inf', 'WITHSCORES',
                      'LIMIT', 0, 1)
  end
end
if oldest then out[2] = string.format('%.6f', oldest) end
return out
"""

LIST = r"""
-- ARGV[A]: status or '', ARGV[A+1]: type or '', ARGV[A+2]: limit. Oldest (enqueued) first;
-- running and finished jobs are read in the order of their sets (lease expiry, retention
-- end), `limit` from each set, then merged by enqueue sequence.
local status, t, limit = ARGV[A], ARGV[A + 1], tonumber(ARGV[A + 2])
local types = t ~= '' and {t} or redis.call('SMEMBERS', TYPES)
local statuses = status ~= '' and {status} or STATUSES
local found = {}
for _, jt in ipairs(types) do
  for _, s in ipairs(statuses) do
    local by_seq = CLAIMABLE[s]
    local part = redis.call('ZRANGE', index_key(jt, s), 0, limit - 1, 'WITHSCORES')
    for i = 1, #part, 2 do
      local seq = by_seq and part[i + 1] or redis.call('HGET', job_key(part[i]), 'seq')
      if seq then found[#found + 1] = {tonumber(seq), part[i]} end
    end
  end
end
table.sort(found, function(a, b) return a[1] < b[1] end)
local out = {}
for i = 1, math.min(limit, #found) do
  local record = redis.call('HGETALL', job_key(found[i][2]))
  if #record > 0 then
    out[#out + 1] = found[i][2]
    out[#out + 1] = record
  end
end
return out
"""

ADMIN_SCRIPTS: dict[str, str] = {
    "cancel": CANCEL,
    "requeue": REQUEUE,
    "reap": REAP,
    "stats": STATS,
    "list": LIST,
}
