--[[
  Create a job, whole or not at all: meta, blob manifests, indexes and an event. Never overwrites.

  Input:
    KEYS[1] job hash             job:<jid>
    KEYS[2] blob manifests hash  blobs:<jid>
    KEYS[3] approvals hash       approvals:<jid>
    KEYS[4] all jobs zset        jobs
    KEYS[5] queue zset           queue
    KEYS[6] sequence counter     seq
    KEYS[7] event stream         events
    KEYS[8] SUBMITTED set        status:SUBMITTED
    KEYS[9] uploads zset         uploads

    ARGV[1] job id
    ARGV[2] priority (integer)
    ARGV[3] actor
    ARGV[4] time (epoch seconds)
    ARGV[5] event stream cap
    ARGV[6] n: number of blob manifests
    ARGV[7] m: number of approvals
    ARGV[8] the data upload's registration in the uploads zset
    ARGV[9 .. 8+2n] component, manifest pairs (the data manifest first)
    ARGV[9+2n .. 8+2n+2m] reviewer, orjson [approved, note] pairs
    ARGV[9+2n+2m ..] meta field, value pairs (orjson values)

  Output:
    {1, seq}  created; also the reply when this very call ran before (a retry: the data
              manifest, which carries a random version, is already the stored one)
    {-2}      the id is taken (the upload's registration is dropped; the caller removes its chunks)
    {-5}      the upload's registration is gone: gc() collected it as abandoned; nothing written
]]
-- @include "common"

local jid = ARGV[1]
local nblobs, napprovals = tonumber(ARGV[6]), tonumber(ARGV[7])
local first_approval = 9 + 2 * nblobs
local first_meta = first_approval + 2 * napprovals

if redis.call("EXISTS", KEYS[1]) == 1 then
  if nblobs > 0 and redis.call("HGET", KEYS[2], ARGV[9]) == ARGV[10] then
    return {OK, tonumber(redis.call("ZSCORE", KEYS[4], jid))}
  end
  redis.call("ZREM", KEYS[9], ARGV[8])
  return {E_EXISTS}
end
if redis.call("ZREM", KEYS[9], ARGV[8]) == 0 then return {E_UPLOAD_EXPIRED} end

local seq = redis.call("INCR", KEYS[6])
hset_range(KEYS[1], first_meta, #ARGV)
if nblobs > 0 then hset_range(KEYS[2], 9, first_approval - 1) end
if napprovals > 0 then hset_range(KEYS[3], first_approval, first_meta - 1) end
redis.call("ZADD", KEYS[4], seq, jid)
redis.call("ZADD", KEYS[5], queue_score(tonumber(ARGV[2]), seq), jid)
redis.call("SADD", KEYS[8], jid)
emit(KEYS[7], ARGV[5], jid, "create", "", "SUBMITTED", ARGV[3], ARGV[4])
return {OK, seq}
