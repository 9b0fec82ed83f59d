--[[
  Claim the best queued job(s) (highest priority, then first submitted) into DISPATCHED for an
  owner, with a lease, exactly once across every process.

  Job keys cannot be built in Lua, so the caller passes candidates: the queue's head as the
  previous call's reply showed it. The script claims the queue's current head only, in order,
  as far as the candidates reach; every reply carries the current head for the next call, so a
  process claiming in a loop needs one round trip per claim. A repeated call (same request id)
  claims nothing more: it returns the jobs its first run claimed that the owner still holds. The
  record of an owner's last claim is one field of a hash, overwritten by its next claim, so claims
  at any rate keep no more records than there are owners.

  Input:
    KEYS[1] queue zset          queue
    KEYS[2] leases zset         leases
    KEYS[3] owners hash         owners
    KEYS[4] event stream        events
    KEYS[5] all jobs zset       jobs
    KEYS[6] status:SUBMITTED
    KEYS[7] status:DISPATCHED
    KEYS[8] claim records hash  claimreq (owner -> its last claim: request id, expiry, stale, ids)
    KEYS[9 ..] the candidates' job hashes, in queue order as last seen

    ARGV[1] owner
    ARGV[2] lease, milliseconds
    ARGV[3] limit: at most this many jobs
    ARGV[4] window: how many ids of the queue's head to return for the next call
    ARGV[5] actor
    ARGV[6] event stream cap
    ARGV[7] time (epoch seconds)
    ARGV[8] length of the job-hash key prefix (a candidate's id is its key after the prefix)
    ARGV[9] request id

  Output:
    {1, claimed, head, expiry_ms, stale}
      claimed: {jid, job hash field/value array} per claimed job, in queue order
      head: the queue's first `window` ids after the claim
      expiry_ms: the leases' expiry, server time
      stale: 1 if the queue's head held a job that was not a candidate (call again with `head`)
]]
-- @include "common"

local owner, limit, window = ARGV[1], tonumber(ARGV[3]), tonumber(ARGV[4])
local expiry = server_ms() + tonumber(ARGV[2])

local index, skip = {}, tonumber(ARGV[8]) + 1
for i = 9, #KEYS do index[string.sub(KEYS[i], skip)] = i end

local prior = redis.call("HGET", KEYS[8], owner)
local words = {}
if prior then
  for word in string.gmatch(prior, "%S+") do words[#words + 1] = word end
end
if words[1] == ARGV[9] then
  local claimed = {}
  for n = 4, #words do
    local jid = words[n]
    if index[jid] and redis.call("HGET", KEYS[3], jid) == owner then
      claimed[#claimed + 1] = {jid, redis.call("HGETALL", KEYS[index[jid]])}
    end
  end
  return {OK, claimed, redis.call("ZRANGE", KEYS[1], 0, window - 1), tonumber(words[2]), tonumber(words[3])}
end

-- One read of the queue's top serves both the claim and the reply's view of the next head.
local top = redis.call("ZRANGE", KEYS[1], 0, limit + window - 1)
local claimed, stale = {}, 0
for n = 1, math.min(limit, #top) do
  local jid = top[n]
  local i = index[jid]
  if not i then stale = 1; break end
  local job_key = KEYS[i]
  redis.call("ZREM", KEYS[1], jid)
  redis.call("SMOVE", KEYS[6], KEYS[7], jid)
  redis.call("HSET", job_key, "status", json_str("DISPATCHED"))
  redis.call("ZADD", KEYS[2], expiry, jid)
  redis.call("HSET", KEYS[3], jid, owner)
  emit(KEYS[4], ARGV[6], jid, "claim", "SUBMITTED", "DISPATCHED", ARGV[5], ARGV[7])
  claimed[#claimed + 1] = {jid, redis.call("HGETALL", job_key)}
end
local record = {ARGV[9], expiry, stale}
for n = 1, #claimed do record[n + 3] = claimed[n][1] end
redis.call("HSET", KEYS[8], owner, table.concat(record, " "))
local head = {}
for n = #claimed + 1, math.min(#top, #claimed + window) do head[#head + 1] = top[n] end
return {OK, claimed, head, expiry, stale}
