"""Lua functions of the steps taken by id or for the whole queue: cancel, requeue, reap, stats,
list, and the stored-format check made when a queue is opened.

Part of the library assembled in :mod:`.scripts`, whose shared code defines the helpers used here.
"""

from __future__ import annotations

CANCEL = r"""
-- args[A]: id. Errors: NOT_FOUND; INVALID_TRANSITION <status> cancelled for a finished job.
-- Reply: the record (HGETALL).
local function cancel(keys, args)
  begin(keys, args)
  local id = args[A]
  local r = read(id)
  if not r._exists then return redis.error_reply('NOT_FOUND no job with id ' .. id) end
  local s = r.s
  if RESENT and s and s.status == 'cancelled' then return redis.call('HGETALL', job_key(id)) end
  if not s or not ACTIVE[s.status] then
    return redis.error_reply('INVALID_TRANSITION ' .. tostring(s and s.status) .. ' cancelled')
  end
  if CLAIMABLE[s.status] then unplace(id, s) end
  finish(id, s, 'cancelled', nil)
  return redis.call('HGETALL', job_key(id))
end
"""

REQUEUE = r"""
-- args[A]: id. A dead job is queued again with a fresh attempt budget.
-- Errors: NOT_FOUND; INVALID_TRANSITION <status> queued; DEDUPE_HELD <message>.
-- Reply: the record (HGETALL).
local function requeue(keys, args)
  begin(keys, args)
  local id = args[A]
  local r = read(id)
  if not r._exists then return redis.error_reply('NOT_FOUND no job with id ' .. id) end
  local s = r.s
  if RESENT and s and ACTIVE[s.status] then return redis.call('HGETALL', job_key(id)) end
  if not s or s.status ~= 'dead' then
    return redis.error_reply('INVALID_TRANSITION ' .. tostring(s and s.status) .. ' queued')
  end
  if r.dedupe then
    local other = redis.call('HGET', DEDUPE, r.dedupe)
    if other and other ~= id then
      if ACTIVE[status_of(other)] then
        return redis.error_reply('DEDUPE_HELD job ' .. id .. ' cannot be requeued: dedupe key '
          .. r.dedupe .. ' is held by active job ' .. other)
      end
    end
    redis.call('HSET', DEDUPE, r.dedupe, id)
  end
  s.attempts, s.not_before, s.finished_at, s.worker_id = '0', NOW_S, '', ''
  reschedule(id, s, 'queued', nil)
  return redis.call('HGETALL', job_key(id))
end
"""

REAP = r"""
-- args[A]: most jobs to handle per set. Running jobs whose lease expired go back to queued,
-- or dead when no attempt is left; finished jobs past retention are deleted.
-- Returns {reclaimed, 1 if a set had more than the limit else 0}.
local function reap(keys, args)
  begin(keys, args)
  local limit = tonumber(args[A])
  local reclaimed, more = 0, 0
  for _, t in ipairs(redis.call('SMEMBERS', TYPES)) do
    local expired = redis.call('ZRANGEBYSCORE', index_key(t, 'running'), '-inf', '(' .. NOW_US,
                               'LIMIT', '0', args[A])
    if #expired == limit then more = 1 end
    for _, id in ipairs(expired) do
      local s = job_of(id)
      if not s and redis.call('EXISTS', job_key(id)) == 1 then
        bury(id, t, 'job record is invalid: unreadable state of a running job')
      elseif not s or s.status ~= 'running' or s.type ~= t then
        redis.call('ZREM', index_key(t, 'running'), id)
      else
        local why = cjson.encode({kind = 'lease_expired', message = string.format(
          'lease expired at %.3f while held by worker %s', tonumber(s.lease_expires_at) or 0,
          s.worker_id)})
        if tonumber(s.attempts) >= tonumber(s.max_attempts) then
          finish(id, s, 'dead', {error = why})
        else
          s.worker_id = ''
          if tonumber(s.not_before) > NOW then s.not_before = NOW_S end
          reschedule(id, s, 'queued', {error = why})
        end
        reclaimed = reclaimed + 1
      end
    end
    for status in pairs(TERMINAL) do
      local old = redis.call('ZRANGEBYSCORE', index_key(t, status), '-inf', '(' .. NOW_US,
                             'LIMIT', '0', args[A])
      if #old == limit then more = 1 end
      for _, id in ipairs(old) do
        if not ACTIVE[status_of(id)] then redis.call('DEL', job_key(id)) end
        redis.call('ZREM', index_key(t, status), id)
      end
    end
  end
  return {reclaimed, more}
end
"""

STATS = r"""
-- Returns {expired leases, due time of the oldest due job or '', {type, count per status}...}
-- with counts in the order of STATUSES.
local function stats(keys, args)
  begin(keys, args)
  local out = {0, ''}
  local oldest = nil
  for _, t in ipairs(redis.call('SMEMBERS', TYPES)) do
    local row = {t}
    for _, status in ipairs(STATUSES) do
      row[#row + 1] = redis.call('ZCARD', index_key(t, status))
    end
    out[#out + 1] = row
    out[1] = out[1] + redis.call('ZCOUNT', index_key(t, 'running'), '-inf', '(' .. NOW_US)
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
end
"""

LIST = r"""
-- args[A]: status or '', args[A+1]: type or '', args[A+2]: limit. Oldest (enqueued) first;
-- running and finished jobs are read in the order of their sets (lease expiry, retention
-- end), `limit` from each set, then merged by enqueue sequence. Reply: id, record, ...
local function list(keys, args)
  begin(keys, args)
  local status, t, limit = args[A], args[A + 1], tonumber(args[A + 2])
  local types = t ~= '' and {t} or redis.call('SMEMBERS', TYPES)
  local statuses = status ~= '' and {status} or STATUSES
  local found = {}
  for _, jt in ipairs(types) do
    for _, st in ipairs(statuses) do
      local by_seq = CLAIMABLE[st]
      local part = redis.call('ZRANGE', index_key(jt, st), 0, limit - 1, 'WITHSCORES')
      for i = 1, #part, 2 do
        local seq = part[i + 1]
        if not by_seq then
          seq = string.match(redis.call('HGET', job_key(part[i]), 'info') or '', '^[^ ]+ (%d+) ')
        end
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
end
"""

CHECK_FORMAT = r"""
-- The stored format of the queue: set on a new queue; FORMAT <stored> error for another one
-- (FORMAT 1: the keys of the first format, which had no format key).
local function check_format(keys, args)
  begin(keys, args)
  local stored = redis.call('GET', P .. 'format')
  if stored == FORMAT then return FORMAT end
  if stored then return redis.error_reply('FORMAT ' .. stored) end
  if redis.call('EXISTS', SEQ, TYPES, DEDUPE) > 0 then return redis.error_reply('FORMAT 1') end
  redis.call('SET', P .. 'format', FORMAT)
  return FORMAT
end
"""

ADMIN_FUNCTIONS: dict[str, str] = {
    "cancel": CANCEL,
    "requeue": REQUEUE,
    "reap": REAP,
    "stats": STATS,
    "list": LIST,
    "check_format": CHECK_FORMAT,
}
"""Step name -> Lua code defining ``local function <step>(keys, args)``."""
