"""The queue's Lua code: one Redis Functions library, each lifecycle step one atomic function.

The library (``FUNCTION LOAD``, Redis >= 7.0) is the shared code below, defined once at load,
plus the step functions of :mod:`.intake_scripts`, :mod:`.settle_scripts` and
:mod:`.admin_scripts`. Its name carries a hash of its text (:data:`LIBRARY`), so processes
running different versions of this code can share a server: each calls its own functions.

Every function is called with one key, the queue's key prefix ``gaia:{queue}:`` (which routes the
call to the queue's slot on a cluster), and a common header of arguments, then its own from
``args[A]`` on:

    args[1] now (client clock, exact float text)
    args[2] '1' when re-sent after a lost reply (the step may already be applied)
    args[3] now in whole microseconds
    args[4] now + result_ttl (us)
    args[5] now + dead_ttl (us)    ('' = keep until requeued)

Finished jobs are filed under their retention end; the reaper deletes them (there is no
EXPIRE backstop: a redis.call costs about as much as the rest of a step's work).

Sorted sets scored by a lease expiry or a retention end hold whole microseconds: integer
scores are stored as integers, so inserting into a small set compares numbers instead of
parsing every member's score text again.

Batched functions (enqueue, claim, and the settling steps) take several independent items in
one call and reply with one entry per item; an item that is refused gets an error entry and
changes nothing, the others go on. Functions never format floats (Lua's ``tostring`` keeps 14
digits, and formatting is slow): every time is computed by the client and copied verbatim.
Errors are replies whose first word is a code (see :mod:`.connection`).
"""

from __future__ import annotations

import hashlib

from gaia.validator.queues.redis.admin_scripts import ADMIN_FUNCTIONS
from gaia.validator.queues.redis.intake_scripts import INTAKE_FUNCTIONS
from gaia.validator.queues.redis.keys import STORED_FORMAT
from gaia.validator.queues.redis.settle_scripts import SETTLE_FUNCTIONS

SHARED = r"""
-- State of the call in progress, set by begin(). The library's code runs once, at load; its
-- functions run one at a time, so these upvalues belong to the running call.
local P, NOW_S, NOW, NOW_US, RESENT, DEDUPE, TYPES, SEQ, WAKE_ALL
local RETENTION = {}
local NAMES = {} -- the call's set keys by type and set (see set_key)
local A = 6
local FORMAT = '@FORMAT@'
local STATUSES = {'queued', 'running', 'succeeded', 'retry_scheduled', 'dead', 'cancelled'}
local TERMINAL = {succeeded = true, dead = true, cancelled = true}
local CLAIMABLE = {queued = true, retry_scheduled = true}
local ACTIVE = {queued = true, running = true, retry_scheduled = true}
local WAKE_CAP = 64
local BULK = 4000 -- values per variadic command (Lua's unpack stops near 8000)

local function begin(keys, args)
  P = keys[1]
  NOW_S = args[1]
  NOW = tonumber(NOW_S)
  RESENT = args[2] == '1'
  NOW_US = args[3]
  RETENTION.succeeded, RETENTION.cancelled, RETENTION.dead = args[4], args[4], args[5]
  DEDUPE, TYPES, SEQ, WAKE_ALL = P .. 'dedupe', P .. 'types', P .. 'seq', P .. 'wake'
  NAMES = {}
end

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

-- index_key(t, s), or the ready / delayed set of t for s = 'ready' / 'delayed', made once per
-- call and type (the hot loops would otherwise join the same name for every job).
local function set_key(t, s)
  local of = NAMES[t]
  if not of then of = {}; NAMES[t] = of end
  local key = of[s]
  if not key then
    if s == 'ready' or s == 'delayed' then key = P .. s .. ':' .. t else key = index_key(t, s) end
    of[s] = key
  end
  return key
end

-- `command key v1 v2 ...` over the values of `list`, in slices of at most BULK values.
local function bulk(command, key, list)
  local n = #list
  for i = 1, n, BULK do redis.call(command, key, unpack(list, i, math.min(i + BULK - 1, n))) end
end

-- Sorted-set writes gathered during a call, sent as one ZREM / ZADD per key at its end. Safe
-- because a call moves each job at most once.
local function gather() return {rem = {}, add = {}} end
local function later_rem(g, key, member)
  local list = g.rem[key]
  if not list then list = {}; g.rem[key] = list end
  list[#list + 1] = member
end
local function later_add(g, key, score, member)
  local list = g.add[key]
  if not list then list = {}; g.add[key] = list end
  list[#list + 1] = score
  list[#list + 1] = member
end
local function flush(g)
  for key, list in pairs(g.rem) do bulk('ZREM', key, list) end
  for key, list in pairs(g.add) do bulk('ZADD', key, list) end
end

-- A job's small fields are two lines of space-separated text (records.py documents them):
-- `state`, what a run changes: status attempts lease_token not_before started_at worker_id
-- finished_at updated_at lease_expires_at (times exact float text, '' = null; worker_id with
-- its spaces escaped by the client, so no field holds a space); and `info`, fixed at enqueue:
-- type seq priority max_attempts dedupe (1 when the job holds the key in its `dedupe` field).
local STATE = '^(%a[%a_]*) (%d+) (%d+) ([^ ]+) ([^ ]*) ([^ ]*) ([^ ]*) ([^ ]+) ([^ ]*)$'
local INFO = '^([^ ]+) (%d+) (%-?%d+) (%d+) ([01])$'

-- The fields of the two lines as a table; nil when either does not parse.
local function parse(state, info)
  if not state or not info then return nil end
  local status, attempts, token, not_before, started_at, worker, finished_at, updated_at,
        expires = string.match(state, STATE)
  local t, seq, priority, max_attempts, dedupe = string.match(info, INFO)
  if not (status and t and (ACTIVE[status] or TERMINAL[status]) and tonumber(not_before)) then
    return nil
  end
  return {status = status, attempts = attempts, lease_token = token, not_before = not_before,
          updated_at = updated_at, started_at = started_at, finished_at = finished_at,
          lease_expires_at = expires, worker_id = worker, type = t, seq = seq,
          priority = priority, max_attempts = max_attempts, dedupe = dedupe}
end

local function state_text(s)
  return s.status .. ' ' .. s.attempts .. ' ' .. s.lease_token .. ' ' .. s.not_before .. ' '
    .. s.started_at .. ' ' .. s.worker_id .. ' ' .. s.finished_at .. ' ' .. s.updated_at .. ' '
    .. s.lease_expires_at
end

local function info_text(s)
  return s.type .. ' ' .. s.seq .. ' ' .. s.priority .. ' ' .. s.max_attempts .. ' ' .. s.dedupe
end

-- The whole record: its hash fields, `s` its parsed lines (nil when unreadable), `_exists`.
local function read(id)
  local flat = redis.call('HGETALL', job_key(id))
  local r = {_exists = #flat > 0}
  for i = 1, #flat, 2 do r[flat[i]] = flat[i + 1] end
  r.s = parse(r.state, r.info)
  return r
end

-- The parsed lines of job `id` (nil when it is missing or unreadable).
local function job_of(id)
  local lines = redis.call('HMGET', job_key(id), 'state', 'info')
  return parse(lines[1], lines[2])
end

-- The status of job `id` (nil when it is missing or unreadable).
local function status_of(id)
  return string.match(redis.call('HGET', job_key(id), 'state') or '', '^(%a[%a_]*) ')
end

-- Write the state line of `s` and the other `fields` (name -> value) of job `id`.
local function save(id, s, fields)
  local args = {'state', state_text(s)}
  for k, v in pairs(fields or {}) do args[#args + 1] = k; args[#args + 1] = v end
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

local function place(id, s)
  if tonumber(s.not_before) <= NOW then
    redis.call('ZADD', ready_key(s.type), negated(s.priority),
               order_member(s.not_before, s.seq, id))
  else
    redis.call('ZADD', delayed_key(s.type), s.not_before, id)
  end
end

local function unplace(id, s)
  redis.call('ZREM', delayed_key(s.type), id)
  redis.call('ZREM', ready_key(s.type), order_member(s.not_before, s.seq, id))
end

-- Up to n wake-up tokens for claimers of type t and for claimers of every type.
local function wake(t, n)
  for _, key in ipairs({wake_key(t), WAKE_ALL}) do
    local tokens = {}
    for _ = 1, math.min(n, WAKE_CAP - redis.call('LLEN', key)) do tokens[#tokens + 1] = '1' end
    if #tokens > 0 then redis.call('LPUSH', key, unpack(tokens)) end
  end
end

-- Give up the dedupe key that job `id` holds (its `dedupe` field), if it still holds it.
local function free_dedupe(id)
  local dedupe = redis.call('HGET', job_key(id), 'dedupe')
  if dedupe and redis.call('HGET', DEDUPE, dedupe) == id then redis.call('HDEL', DEDUPE, dedupe) end
end

-- File a terminal job under done:<type>:<status>, scored by the end of its retention.
local function keep(id, t, status)
  local until_us = RETENTION[status]
  redis.call('ZADD', index_key(t, status), until_us ~= '' and until_us or '+inf', id)
end

-- Move a job in state s to a terminal status, writing `fields` too.
local function finish(id, s, to, fields)
  local from = s.status
  s.status, s.updated_at, s.finished_at, s.lease_expires_at = to, NOW_S, NOW_S, ''
  redis.call('ZREM', index_key(s.type, from), id)
  save(id, s, fields)
  keep(id, s.type, to)
  if s.dedupe == '1' then free_dedupe(id) end
end

-- Make a job in state s claimable again (queued or retry_scheduled), writing `fields` too.
local function reschedule(id, s, to, fields)
  local from = s.status
  s.status, s.updated_at, s.lease_expires_at = to, NOW_S, ''
  redis.call('ZREM', index_key(s.type, from), id)
  save(id, s, fields)
  redis.call('ZADD', index_key(s.type, to), s.seq, id)
  place(id, s)
  wake(s.type, 1)
end

-- Dead-letter an undecodable record: keep its bytes in corrupt_spec / corrupt_state, write a
-- decodable stub.
local function bury(id, t, message)
  local r = read(id)
  if r.spec then redis.call('HSET', job_key(id), 'corrupt_spec', r.spec) end
  if r.state then redis.call('HSET', job_key(id), 'corrupt_state', r.state) end
  if r.info then redis.call('HSET', job_key(id), 'corrupt_info', r.info) end
  for _, status in ipairs(STATUSES) do redis.call('ZREM', index_key(t, status), id) end
  redis.call('ZREM', delayed_key(t), id)
  if r.dedupe then free_dedupe(id) end
  local old = r.s or {}
  local s = {status = 'dead', attempts = old.attempts or '0', lease_token = old.lease_token or '0',
             not_before = NOW_S, updated_at = NOW_S, started_at = '', finished_at = NOW_S,
             lease_expires_at = '', worker_id = '', type = t,
             seq = old.seq or tostring(redis.call('INCR', SEQ)), priority = '0',
             max_attempts = '1', dedupe = '0'}
  local stub = '{"id":' .. cjson.encode(id) .. ',"payload":{},"metadata":{},"timeout":300,'
    .. '"memory_mb":0,"correlation_id":' .. cjson.encode(id) .. ',"created_at":' .. NOW_S .. '}'
  redis.call('HDEL', job_key(id), 'dedupe')
  save(id, s, {spec = stub, info = info_text(s), result = '', progress = '',
               error = cjson.encode({message = message, kind = 'corrupt_record'})})
  keep(id, t, 'dead')
end

local function lease_lost(id, token, exists, status, held_token)
  if not exists then
    return redis.error_reply('LEASE_LOST job ' .. id .. ' no longer exists')
  end
  return redis.error_reply('LEASE_LOST job ' .. id .. ': lease token ' .. token
    .. ' is stale (job is ' .. tostring(status) .. ', token ' .. tostring(held_token) .. ')')
end

-- The state of job `id` if `token` holds its lease; with `done` (statuses a re-sent step may
-- have produced already), also the state when the job is there with the same token, and true
-- as second value. Otherwise nil and a LEASE_LOST error.
local function held(id, token, done)
  local lines = redis.call('HMGET', job_key(id), 'state', 'info')
  local s = parse(lines[1], lines[2])
  if s and s.lease_token == token then
    if s.status == 'running' then return s, false end
    if RESENT and done and done[s.status] then return s, true end
  end
  local exists = lines[1] ~= false or redis.call('EXISTS', job_key(id)) == 1
  return nil, lease_lost(id, token, exists, s and s.status, s and s.lease_token)
end

-- A settling step's entry: the new state and progress; with `whole`, also error and result.
local function settled(id, s, whole)
  local names = whole and {'progress', 'error', 'result'} or {'progress'}
  local values = redis.call('HMGET', job_key(id), unpack(names))
  return {s and state_text(s) or redis.call('HGET', job_key(id), 'state'), unpack(values)}
end

-- Run `one(o)` for each of the args[A] items of `width` arguments starting at args[A + 1];
-- replies with their entries. `one` returns a table, or an error reply for a refused item.
local function each(keys, args, width, one)
  begin(keys, args)
  local out = {}
  for i = 0, tonumber(args[A]) - 1 do out[i + 1] = one(args, A + 1 + i * width) end
  return out
end
"""


def _library_text() -> tuple[str, str]:
    bodies = {**INTAKE_FUNCTIONS, **SETTLE_FUNCTIONS, **ADMIN_FUNCTIONS}
    code = SHARED.replace("@FORMAT@", STORED_FORMAT) + "".join(bodies.values())
    tag = hashlib.sha1(code.encode(), usedforsecurity=False).hexdigest()[:12]
    registered = "".join(
        f"redis.register_function('gaia_{tag}_{name}', {name})\n" for name in bodies
    )
    return f"#!lua name=gaia_{tag}\n{code}\n{registered}", tag


LIBRARY_TEXT, LIBRARY_TAG = _library_text()
LIBRARY = f"gaia_{LIBRARY_TAG}"
"""The library's name; its functions are ``<LIBRARY>_<step>``."""
STEPS = (*INTAKE_FUNCTIONS, *SETTLE_FUNCTIONS, *ADMIN_FUNCTIONS)


def function_name(step: str) -> str:
    """The registered name of the function of ``step``."""
    if step not in STEPS:
        raise KeyError(f"no queue function for step {step!r}")
    return f"{LIBRARY}_{step}"
