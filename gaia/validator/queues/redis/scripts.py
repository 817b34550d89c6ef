"""The Lua scripts of the Redis queue: each lifecycle step is one atomic script.

Every script is ``PRELUDE`` + its body. ``ARGV`` starts with a common header, then the script's
own arguments from ``ARGV[A]`` on:

    ARGV[1] key prefix (``gaia:{queue}:``)   ARGV[2] now (client clock, exact float text)
    ARGV[3] '1' when re-sent after a lost reply (the step may already be applied)
    ARGV[4] now + result_ttl  ARGV[5] its EXPIRE seconds
    ARGV[6] now + dead_ttl    ARGV[7] its EXPIRE seconds   ('' = keep until requeued)

Scripts never format floats (Lua's ``tostring`` keeps 14 digits, and formatting is slow): every
time is computed by the client and copied verbatim from the arguments. Settling steps return
only the overlay fields they changed (see ``changed``) rather than the whole hash. Errors
are replies whose first word is a code (see :mod:`.connection`); a script returns an error only
before its first write, so a refused step changes nothing.
"""

from __future__ import annotations

from gaia.validator.queues.redis.admin_scripts import ADMIN_SCRIPTS
from gaia.validator.queues.redis.records import OVERLAY
from gaia.validator.queues.redis.settle_scripts import SETTLE_SCRIPTS

PRELUDE_TEMPLATE = r"""
local P = ARGV[1]
local NOW_S = ARGV[2]
local NOW = tonumber(NOW_S)
local RESENT = ARGV[3] == '1'
local RETENTION = {succeeded = {ARGV[4], ARGV[5]}, cancelled = {ARGV[4], ARGV[5]},
                   dead = {ARGV[6], ARGV[7]}}
local A = 8
local OVERLAY = {@OVERLAY@}
local STATUSES = {'queued', 'running', 'succeeded', 'retry_scheduled', 'dead', 'cancelled'}
local TERMINAL = {succeeded = true, dead = true, cancelled = true}
local CLAIMABLE = {queued = true, retry_scheduled = true}
local ACTIVE = {queued = true, running = true, retry_scheduled = true}
local WAKE_CAP = 64
local DEDUPE, TYPES, SEQ, WAKE_ALL = P .. 'dedupe', P .. 'types', P .. 'seq', P .. 'wake'

local function job_key(id) return P .. 'job:' .. id end
local function ready_key(t) return P .. 'ready:' .. t end
local function delayed_key(t) return P .. 'delayed:' .. t end
local function wake_key(t) return P .. 'wake:' .. t end
-- The sorted set that lists the jobs of type t in status s (see keys.py).
local function index_key(t, s)
  if s == 'running' then return P .. 'leases:' .. t end
  if TERMINAL[s] then return P .. 'done:' .. t .. ':' .. s end
  return P .. 'idx:' .. t .. ':' .. s
end

-- The whole record as a table of fields; meta entries start with '_'. A record is sound when
-- every field a step relies on is readable, so no step can fail half-way through.
-- `names`: read only these fields (the first must be 'status'); nil: the whole record.
local function read(id, names)
  local f
  if names then
    local values = redis.call('HMGET', job_key(id), unpack(names))
    f = {_exists = values[1] ~= false or redis.call('EXISTS', job_key(id)) == 1}
    for i, name in ipairs(names) do
      if values[i] then f[name] = values[i] end
    end
  else
    local flat = redis.call('HGETALL', job_key(id))
    f = {_exists = #flat > 0}
    for i = 1, #flat, 2 do f[flat[i]] = flat[i + 1] end
  end
  f._sound = f.type ~= nil and (ACTIVE[f.status] or TERMINAL[f.status]) ~= nil
  for _, name in ipairs({'seq', 'priority', 'not_before', 'attempts', 'max_attempts',
                         'lease_token'}) do
    if not tonumber(f[name]) then f._sound = false end
  end
  if f.dedupe == nil then f.dedupe = '' end
  return f
end

local function flat_of(f)
  local out = {}
  for k, v in pairs(f) do
    if string.sub(k, 1, 1) ~= '_' then out[#out + 1] = k; out[#out + 1] = v end
  end
  return out
end

-- A settling step's reply: name/value pairs of what it changed, and of the fields a
-- heartbeat may have moved since the caller's copy; `changes` nil: every overlay field.
local VOLATILE = {'progress', 'lease_expires_at', 'updated_at'}
local function changed(f, changes)
  local out, seen = {}, {}
  for k, v in pairs(changes or {}) do
    out[#out + 1] = k
    out[#out + 1] = v
    seen[k] = true
  end
  for _, k in ipairs(changes and VOLATILE or OVERLAY) do
    if not seen[k] and f[k] then
      out[#out + 1] = k
      out[#out + 1] = f[k]
    end
  end
  return out
end

local function update(id, f, changes)
  local args = {}
  for k, v in pairs(changes) do
    args[#args + 1] = k
    args[#args + 1] = v
    f[k] = v
  end
  redis.call('HSET', job_key(id), unpack(args))
end

-- Ready order: score -priority; equal scores sort by member: due time (us), then sequence.
local function order_member(not_before, seq, id)
  local micros = math.floor(tonumber(not_before) * 1000000)
  micros = math.max(0, math.min(micros, 9.9e16))
  return string.format('%017d:%015d:', micros, tonumber(seq)) .. id
end
local MEMBER_ID_AT = 35

local function negated(number)
  if string.sub(number, 1, 1) == '-' then return string.sub(number, 2) end
  return '-' .. number
end

local function place(id, f)
  if tonumber(f.not_before) <= NOW then
    redis.call('ZADD', ready_key(f.type), negated(f.priority),
               order_member(f.not_before, f.seq, id))
  else
    redis.call('ZADD', delayed_key(f.type), f.not_before, id)
  end
end

local function unplace(id, f)
  redis.call('ZREM', delayed_key(f.type), id)
  redis.call('ZREM', ready_key(f.type), order_member(f.not_before, f.seq, id))
end

local function wake(t, n)
  for _, key in ipairs({wake_key(t), WAKE_ALL}) do
    local room = WAKE_CAP - redis.call('LLEN', key)
    for _ = 1, math.min(n, room) do redis.call('LPUSH', key, '1') end
  end
end

local function free_dedupe(id, dedupe)
  if dedupe ~= '' and redis.call('HGET', DEDUPE, dedupe) == id then
    redis.call('HDEL', DEDUPE, dedupe)
  end
end

-- File a terminal job under done:<type>:<status>, scored by the end of its retention.
local function keep(id, t, status)
  local until_s, expire = RETENTION[status][1], RETENTION[status][2]
  redis.call('ZADD', index_key(t, status), until_s ~= '' and until_s or '+inf', id)
  if until_s ~= '' then redis.call('EXPIRE', job_key(id), expire) end
end

-- Move a job to a terminal status, setting `changes` too.
local function finish(id, f, to, changes)
  changes.status, changes.updated_at = to, NOW_S
  changes.finished_at, changes.lease_expires_at = NOW_S, ''
  redis.call('ZREM', index_key(f.type, f.status), id)
  update(id, f, changes)
  keep(id, f.type, to)
  free_dedupe(id, f.dedupe)
end

-- Make a job claimable again (queued or retry_scheduled), setting `changes` too.
local function reschedule(id, f, to, changes)
  changes.status, changes.updated_at, changes.lease_expires_at = to, NOW_S, ''
  redis.call('ZREM', index_key(f.type, f.status), id)
  update(id, f, changes)
  redis.call('ZADD', index_key(f.type, to), f.seq, id)
  place(id, f)
  wake(f.type, 1)
end

-- Dead-letter an undecodable record: keep its bytes in corrupt_spec, write a decodable stub.
local function bury(id, t, message)
  local f = read(id)
  if f.spec then redis.call('HSET', job_key(id), 'corrupt_spec', f.spec) end
  for _, s in ipairs(STATUSES) do redis.call('ZREM', index_key(t, s), id) end
  redis.call('ZREM', delayed_key(t), id)
  free_dedupe(id, f.dedupe)
  local seq = tonumber(f.seq) or redis.call('INCR', SEQ)
  local stub = '{"id":' .. cjson.encode(id) .. ',"type":' .. cjson.encode(t)
    .. ',"payload":{},"metadata":{},"timeout":300,"memory_mb":0,"correlation_id":'
    .. cjson.encode(id) .. ',"created_at":' .. NOW_S .. '}'
  redis.call('HSET', job_key(id), 'spec', stub, 'type', t, 'status', 'dead', 'priority', '0',
             'max_attempts', '1', 'attempts', tostring(math.floor(tonumber(f.attempts) or 0)),
             'lease_token', tostring(math.floor(tonumber(f.lease_token) or 0)),
             'not_before', NOW_S, 'dedupe', '', 'seq', seq, 'updated_at', NOW_S,
             'finished_at', NOW_S, 'started_at', '', 'lease_expires_at', '', 'worker_id', '',
             'result', '', 'progress', '',
             'error', cjson.encode({message = message, kind = 'corrupt_record'}))
  keep(id, t, 'dead')
end

local function lease_lost(id, token, f)
  if not f._exists then
    return redis.error_reply('LEASE_LOST job ' .. id .. ' no longer exists')
  end
  return redis.error_reply('LEASE_LOST job ' .. id .. ': lease token ' .. token
    .. ' is stale (job is ' .. tostring(f.status) .. ', token ' .. tostring(f.lease_token) .. ')')
end

-- The job if `token` holds its lease; with `done` (statuses a re-sent step may have produced
-- already), also the job when it is there with the same token, and true as second value.
-- Reads only what a settling step needs (not the spec, result or error).
local HELD_FIELDS = {'status', 'type', 'seq', 'priority', 'not_before', 'attempts',
                     'max_attempts', 'lease_token', 'dedupe', 'lease_expires_at', 'worker_id',
                     'progress', 'updated_at'}
local function held(id, token, done)
  local f = read(id, HELD_FIELDS)
  if f._sound and tonumber(f.lease_token) == tonumber(token) then
    if f.status == 'running' then return f, false end
    if RESENT and done and done[f.status] then return f, true end
  end
  return nil, lease_lost(id, token, f)
end
"""

PRELUDE = PRELUDE_TEMPLATE.replace("@OVERLAY@", ", ".join(f"'{name}'" for name in OVERLAY))

ENQUEUE = r"""
-- ARGV[A]: number of jobs; then per job: id, type, priority, max_attempts, dedupe ('' = none),
-- attempts, lease_token, not_before, spec. Returns per job 0 (stored as given) or the active
-- job (HGETALL) that holds its dedupe key.
local n = tonumber(ARGV[A])
local FIELDS_PER_JOB = 9
if not RESENT then
  local keys = {}
  for i = 0, n - 1 do keys[#keys + 1] = job_key(ARGV[A + 1 + i * FIELDS_PER_JOB]) end
  if redis.call('EXISTS', unpack(keys)) > 0 then
    for i = 1, n do
      if redis.call('EXISTS', keys[i]) == 1 then
        return redis.error_reply('DUPLICATE_ID a job with id ' .. ARGV[A + 1 + (i - 1) *
          FIELDS_PER_JOB] .. ' already exists')
      end
    end
  end
end
local first_seq = redis.call('INCRBY', SEQ, n) - n + 1
local out, woken = {}, {}
for i = 0, n - 1 do
  local o = A + 1 + i * FIELDS_PER_JOB
  local id, t, dedupe = ARGV[o], ARGV[o + 1], ARGV[o + 4]
  local holder = false
  if dedupe ~= '' then
    local other = redis.call('HGET', DEDUPE, dedupe)
    if other and ACTIVE[redis.call('HGET', job_key(other), 'status')] then holder = other end
  end
  if not holder and RESENT and redis.call('EXISTS', job_key(id)) == 1 then holder = id end
  if holder then
    out[#out + 1] = redis.call('HGETALL', job_key(holder))
  else
    local f = {type = t, priority = ARGV[o + 2], not_before = ARGV[o + 7], seq = first_seq + i}
    if dedupe ~= '' then redis.call('HSET', DEDUPE, dedupe, id) end
    redis.call('HSET', job_key(id), 'spec', ARGV[o + 8], 'type', t, 'status', 'queued',
               'priority', f.priority, 'max_attempts', ARGV[o + 3], 'dedupe', dedupe,
               'attempts', ARGV[o + 5], 'lease_token', ARGV[o + 6], 'not_before', f.not_before,
               'seq', f.seq)
    redis.call('ZADD', index_key(t, 'queued'), f.seq, id)
    place(id, f)
    woken[t] = (woken[t] or 0) + 1
    out[#out + 1] = 0
  end
end
for t, count in pairs(woken) do
  redis.call('SADD', TYPES, t)
  wake(t, count)
end
return out
"""

CLAIM = r"""
-- ARGV[A]: lease expiry time, ARGV[A+1]: n, the most jobs to claim, ARGV[A+2..A+1+n]: the
-- worker id each of the n jobs is claimed for, in order, then the job types (none = every type).
-- Returns {next due time of a delayed job or '', id, fields, id, fields, ...}.
local expires, want = ARGV[A], tonumber(ARGV[A + 1])
local types = {}
for i = A + 2 + want, #ARGV do types[#types + 1] = ARGV[i] end
local every = #types == 0
if every then types = redis.call('SMEMBERS', TYPES) end

local function corrupt(f)
  return 'job record is invalid: unreadable fields (status ' .. tostring(f.status)
    .. ', type ' .. tostring(f.type) .. ')'
end

for _, t in ipairs(types) do
  local due = redis.call('ZRANGEBYSCORE', delayed_key(t), '-inf', NOW_S, 'LIMIT', 0, 1000)
  for _, id in ipairs(due) do
    redis.call('ZREM', delayed_key(t), id)
    local f = read(id)
    if f._sound and f.type == t and CLAIMABLE[f.status] then
      redis.call('ZADD', ready_key(t), negated(f.priority), order_member(f.not_before, f.seq, id))
    elseif f._exists and not (f._sound and f.type == t) then
      bury(id, t, corrupt(f))
    end
  end
end

local out = {''}
local claimed = 0

-- Take the job behind ready member `member` of type t, if it is still claimable.
local function take(t, member)
  local id = string.sub(member, MEMBER_ID_AT)
  local f = read(id)
  if f._sound and f.type == t and CLAIMABLE[f.status] then
    redis.call('ZREM', index_key(t, f.status), id)
    update(id, f, {status = 'running', attempts = tostring(tonumber(f.attempts) + 1),
                   lease_token = tostring(tonumber(f.lease_token) + 1),
                   lease_expires_at = expires, worker_id = ARGV[A + 2 + claimed],
                   started_at = NOW_S,
                   updated_at = NOW_S, progress = ''})
    redis.call('ZADD', index_key(t, 'running'), expires, id)
    out[#out + 1] = id
    out[#out + 1] = flat_of(f)
    claimed = claimed + 1
  elseif f._exists and not (f._sound and f.type == t) then
    bury(id, t, corrupt(f))
  end
end

if #types == 1 then
  -- One type: pop the best members directly.
  local t = types[1]
  while claimed < want do
    local popped = redis.call('ZPOPMIN', ready_key(t), want - claimed)
    if #popped == 0 then break end
    for i = 1, #popped, 2 do take(t, popped[i]) end
  end
else
  -- Several types: compare the heads of their ready sets for each job.
  while claimed < want do
    local best_t, best_m, best_s = nil, nil, nil
    for _, t in ipairs(types) do
      local head = redis.call('ZRANGE', ready_key(t), 0, 0, 'WITHSCORES')
      if head[1] then
        local s = tonumber(head[2])
        if best_t == nil or s < best_s or (s == best_s and head[1] < best_m) then
          best_t, best_m, best_s = t, head[1], s
        end
      end
    end
    if best_t == nil then break end
    redis.call('ZREM', ready_key(best_t), best_m)
    take(best_t, best_m)
  end
end

if claimed > 0 then
  -- More due work left: pass a wake-up on to another waiting claimer.
  local more = false
  for _, t in ipairs(types) do
    if redis.call('EXISTS', ready_key(t)) == 1 then
      more = true
      if redis.call('LLEN', wake_key(t)) == 0 then redis.call('LPUSH', wake_key(t), '1') end
    end
  end
  if more and redis.call('LLEN', WAKE_ALL) == 0 then redis.call('LPUSH', WAKE_ALL, '1') end
else
  -- Nothing due for these types: pending wake-ups for them are stale.
  local next_due = nil
  for _, t in ipairs(types) do
    redis.call('DEL', wake_key(t))
    local head = redis.call('ZRANGE', delayed_key(t), 0, 0, 'WITHSCORES')
    if head[1] and (next_due == nil or tonumber(head[2]) < tonumber(next_due)) then
      next_due = head[2]
    end
  end
  if every then redis.call('DEL', WAKE_ALL) end
  out[1] = next_due or ''
end
return out
"""

BURY = r"""
-- ARGV[A]: job id, ARGV[A+1]: lease token, ARGV[A+2]: why the client could not decode it.
local id, token = ARGV[A], ARGV[A + 1]
local f = read(id)
if f.status ~= 'running' or tonumber(f.lease_token) ~= tonumber(token) or not f.type then
  return lease_lost(id, token, f)
end
bury(id, f.type, ARGV[A + 2])
return redis.call('HGETALL', job_key(id))
"""

SCRIPTS: dict[str, str] = {
    name: PRELUDE + body
    for name, body in {
        "enqueue": ENQUEUE,
        "claim": CLAIM,
        "bury": BURY,
        **SETTLE_SCRIPTS,
        **ADMIN_SCRIPTS,
    }.items()
}
