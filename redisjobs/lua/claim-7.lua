--[[
  Claim the best queued job(s) (highest priority, then first submitted) into DISPATCHED for an
  owner, with a lease, exactly once across every process.

  Job keys cannot be built in Lua, so the caller passes candidates: the queue's head as the
  previous call showed it. The script claims the queue's current head only, in order, as far as
  the candidates reach; every call also reads the current head for the next one (in the reply, or
  by a ZRANGE the caller sends right after the script: see ARGV[4]), so a process claiming in a
  loop needs one round trip per claim. A repeated call (same request id)
  claims nothing more: it returns the jobs its first run claimed that the owner still holds. The
  record of an owner's last claim is one field of a hash, overwritten by its next claim, so claims
  at any rate keep no more records than there are owners.

  Numbers cross into Redis as strings made once: Lua formats a number argument with sprintf.

  Input:
    KEYS[1] queue zset          queue
    KEYS[2] leases zset         leases
    KEYS[3] owners hash         owners
    KEYS[4] event stream        events
    KEYS[5] status:SUBMITTED
    KEYS[6] status:DISPATCHED
    KEYS[7] claim records hash  claimreq (owner -> its last claim: request id, expiry, stale, ids)
    KEYS[8 ..] the candidates' job hashes, in queue order as last seen

    ARGV[1] owner
    ARGV[2] lease, milliseconds
    ARGV[3] limit: at most this many jobs
    ARGV[4] the last rank of the queue's top to read: limit + window - 1, where window is how many
            ids of the queue's head to return for the next call. With a window of 0 the reply
            carries no head: a caller that sends a ZRANGE of the queue right after the script, in
            the same write, gets the head that way, without Lua turning each id into a string and
            back (about 4k server instructions an id)
    ARGV[5] time (epoch seconds)
    ARGV[6] request id
    ARGV[7] actor
    ARGV[8] event stream cap
    ARGV[9] the job-hash key prefix (a candidate's key is the prefix and its id)
    ARGV[10] "1" if this call may repeat one that ran (redis-py's retry sent it again), else "0"
    ARGV[11] the rank r (1-based) among the candidates of the one job whose hash the caller reads
             itself, by an HGETALL of KEYS[7 + r] sent right after the script in the same write
             (the job it expects to get, with a limit of 1); "0" for none. If the script claims
             that very job, the reply carries 0 in place of its hash: the hash then crosses into
             the reply once, straight from Redis, instead of into Lua and out again (about 29k of
             the server's instructions). A repeat always carries the hashes.
    (The arguments that stay the same from call to call come before ARGV[10]: a client can pack
    them once.)

  Output: one flat array (each nested array costs the server more to convert than its elements)
    {1, expiry_ms, stale, n, jid, fields, ..., head ...}
      expiry_ms: the leases' expiry, server time
      stale: 1 if the queue's head held a job that was not a candidate (call again with `head`)
      n: how many jobs were claimed; then for each, in queue order, its id and its job hash as a
         field/value array (0 for the job named by ARGV[11])
      head: the rest, the queue's first `window` ids after the claim
]]
-- @include "common"

local owner, limit = ARGV[1], tonumber(ARGV[3])
local window = tonumber(ARGV[4]) + 1 - limit

-- A job's key if it is one of the candidates, else nil. Lua strings are interned, so comparing two
-- compares pointers: a scan of a few candidates costs less than indexing them; many are indexed.
local prefix = ARGV[9]
local index = nil
if #KEYS > 7 + 32 then
  index = {}
  for i = 8, #KEYS do index[KEYS[i]] = true end
end
local function candidate(jid)
  local key = prefix .. jid
  if index then return index[key] and key or nil end
  for i = 8, #KEYS do
    if KEYS[i] == key then return key end
  end
  return nil
end

-- Only a repeat can find its record: a first send of a fresh request id need not look.
local prior = ARGV[10] == "1" and redis.call("HGET", KEYS[7], owner)
if prior and string.find(prior, ARGV[6] .. " ", 1, true) == 1 then
  local words = {}
  for word in string.gmatch(prior, "%S+") do words[#words + 1] = word end
  local out = {OK, tonumber(words[2]), tonumber(words[3]), 0}
  for n = 4, #words do
    local jid = words[n]
    local key = candidate(jid)
    if key and redis.call("HGET", KEYS[3], jid) == owner then
      out[#out + 1] = jid
      out[#out + 1] = redis.call("HGETALL", key)
      out[4] = out[4] + 1
    end
  end
  if window > 0 then
    for _, jid in ipairs(redis.call("ZRANGE", KEYS[1], "0", tostring(window - 1))) do out[#out + 1] = jid end
  end
  return out
end

local theirs = KEYS[7 + (tonumber(ARGV[11]) or 0)]  -- (KEYS[7] is no candidate: "0" names none)
local expiry = server_ms() + tonumber(ARGV[2])
local expiry_text = string.format("%d", expiry)
-- One read of the queue's top serves both the claim and the reply's view of the next head.
local top = redis.call("ZRANGE", KEYS[1], "0", ARGV[4])
local out, stale, owned, record = {OK, expiry, 0, 0}, "0", {}, {ARGV[6], expiry_text, "0"}
for n = 1, math.min(limit, #top) do
  local jid = top[n]
  local job_key = candidate(jid)
  if not job_key then stale = "1"; break end
  redis.call("ZREM", KEYS[1], jid)
  redis.call("SMOVE", KEYS[5], KEYS[6], jid)
  redis.call("HSET", job_key, "status", '"DISPATCHED"')
  redis.call("ZADD", KEYS[2], expiry_text, jid)
  emit(KEYS[4], ARGV[8], jid, "claim", "SUBMITTED", "DISPATCHED", ARGV[7], ARGV[5])
  out[#out + 1] = jid
  -- (Lua strings are interned: the comparison compares pointers)
  out[#out + 1] = job_key == theirs and 0 or redis.call("HGETALL", job_key)
  out[4] = n
  owned[#owned + 1] = jid
  owned[#owned + 1] = owner
  record[n + 3] = jid
end
if #owned > 0 then redis.call("HSET", KEYS[3], unpack(owned)) end
record[3], out[3] = stale, tonumber(stale)
redis.call("HSET", KEYS[7], owner, table.concat(record, " "))
for n = out[4] + 1, math.min(#top, out[4] + window) do out[#out + 1] = top[n] end
return out
