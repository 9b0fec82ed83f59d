--[[
  Shared helpers, included into scripts by the loader (redisjobs/_scripts.py): result codes,
  orjson string handling, batched HSET, events and queue scores.
]]
local OK, NOOP = 1, 0
local E_NOT_FOUND, E_EXISTS, E_TRANSITION, E_CONFLICT, E_UPLOAD_EXPIRED, E_NOT_OWNER = -1, -2, -3, -4, -5, -6
local E_LEASE_EXPIRED = -7

-- Meta values are orjson-encoded; a status is a JSON string without escapes.
local function json_str(s) return '"' .. s .. '"' end
local function unjson_str(v)
  if not v then return nil end
  if string.sub(v, 1, 1) == '"' then return string.sub(v, 2, -2) end
  return v
end

-- A job's status ("" if it has none), or nil when there is no such job: one HGET, and an EXISTS
-- only when the status field is missing.
local function job_status(job_key)
  local raw = redis.call("HGET", job_key, "status")
  if not raw and redis.call("EXISTS", job_key) == 0 then return nil end
  return unjson_str(raw) or ""
end

-- HSET of field/value pairs taken from ARGV[first..last], in batches (unpack() has a limit).
local function hset_range(key, first, last)
  local i = first
  while i <= last do
    local j = math.min(i + 999, last)
    redis.call("HSET", key, unpack(ARGV, i, j))
    i = j + 1
  end
end

-- Epoch microseconds (an integer's digits, as the client sends them) as epoch seconds with six
-- decimals: text made by slicing, where a number passed to redis.call would be formatted by sprintf.
local function seconds_text(us)
  return string.sub(us, 1, -7) .. "." .. string.sub(us, -6)
end

local function emit(stream, maxlen, jid, op, old, new, actor, time)
  redis.call("XADD", stream, "MAXLEN", "~", maxlen, "*",
    "jid", jid, "op", op, "old", old or "", "new", new or "", "actor", actor, "time", time)
end

-- Queue score: higher priority first, then submit order (exact below 2^53; |priority| < 2^21).
-- As integer text: a number passed to redis.call is formatted as a float (%.17g), slowly.
local function queue_score(priority, seq)
  return string.format("%d", -priority * 4294967296 + (seq % 4294967296))
end

-- The priority a job is queued at, from its "priority" field (orjson): an integer within
-- |priority| < 2^21, as the client checks it; else 0 (the NVFlare adapter keeps any other value as
-- written, and queues the job at 0).
local function queued_priority(raw)
  local p = raw and string.match(raw, "^%-?%d+$") and tonumber(raw)
  if not p or math.abs(p) >= 2097152 then return 0 end
  return p
end

-- Whether a verdict (orjson [approved, note]) approves: the truth of its first element, as Python
-- reads it (set_approval stores a bool there; update_meta stores what it is given).
local function approves(v)
  local x = string.sub(v, 1, 1) == "[" and string.sub(v, 2) or v
  local c, d = string.sub(x, 1, 1), string.sub(x, 2, 2)
  if c == "t" then return true end
  if c == "f" or c == "n" or c == "]" or c == "" then return false end
  if c == '"' then return d ~= '"' end
  if c == "[" then return d ~= "]" end
  if c == "{" then return d ~= "}" end
  local n = tonumber(string.match(x, "^[-+%d.eE]+"))
  return n ~= nil and n ~= 0
end

-- An empty list to loop over where a helper found nothing (none made per call).
local NONE = {}

-- The positions in ARGV of the approval fields among the field, value pairs from ARGV[first]
-- whose verdict differs from the stored one (a field starting with a NUL byte is an approval: see
-- approval_field), in batches of 1,000 (unpack() has a limit); nil when there is no approval field.
local function new_approvals(key, first)
  local found = nil
  for i = first, #ARGV - 1, 2 do
    if string.byte(ARGV[i], 1) == 0 then
      found = found or {}
      found[#found + 1] = i
    end
  end
  if not found then return nil end
  local changed = {}
  for from = 1, #found, 1000 do
    local names = {}
    for n = from, math.min(from + 999, #found) do names[#names + 1] = ARGV[found[n]] end
    local held = redis.call("HMGET", key, unpack(names))
    for n = 1, #names do
      local at = found[from + n - 1]
      if held[n] ~= ARGV[at + 1] then changed[#changed + 1] = at end
    end
  end
  return changed
end

-- Lease expiry in server milliseconds: every process compares against the same clock.
local function server_ms()
  local t = redis.call("TIME")
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Request records make a call that changes things safe to repeat: redis-py sends a command again
-- when its reply was lost to a broken connection or a timeout, though the first run may have
-- happened. The first run records its outcome under the call's random request id, for a while;
-- a repeat finds it and answers as the first run did, changing nothing and emitting no event.
-- Two minutes: far beyond what redis-py's retries of one call take (timeouts times attempts).
-- (Text: a number passed to redis.call is formatted by sprintf on every call.)
local REQUEST_TTL_MS = "120000"
local function replayed(key) return redis.call("GET", key) end
local function remember(key, outcome) redis.call("SET", key, outcome, "PX", REQUEST_TTL_MS) end
