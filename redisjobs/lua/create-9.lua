--[[
  Create a job, whole or not at all: meta (approvals are fields of the job hash too), blob
  manifests, indexes and an event. Never overwrites.

  Input:
    KEYS[1] job hash             job:<jid>
    KEYS[2] blob manifests hash  blobs:<jid>
    KEYS[3] all jobs zset        jobs
    KEYS[4] queue zset           queue
    KEYS[5] sequence counter     seq
    KEYS[6] event stream         events
    KEYS[7] the initial status's set  status:SUBMITTED (status:<S> for an import)
    KEYS[8] uploads zset         uploads
    KEYS[9] inline blobs hash    inline:<jid>
    KEYS[10 ..] the data's chunks, when they were sent in the same write as this call (see
            PipedUpload): created only if they are all there

    ARGV[1] job id
    ARGV[2] priority (integer)
    ARGV[3] actor
    ARGV[4] time (epoch seconds)
    ARGV[5] event stream cap
    ARGV[6] n: number of blob manifests
    ARGV[7] the data upload's registration in the uploads zset ("" for an inline blob)
    ARGV[8] the initial status: SUBMITTED, or the stored one for an import (queued only if SUBMITTED),
            written as the job's status field
    ARGV[9] the event's op: "create" (which also writes start_time "" and duration "N/A") or "import"
    ARGV[10] "1" if the data is inline, else "0"
    ARGV[11] the inline data ("" when chunked)
    ARGV[12 .. 11+2n] component, manifest pairs (the data manifest first)
    ARGV[12+2n ..] job hash field, value pairs: meta (orjson values; not the fields written here)
            and approvals ("\0approval:" .. reviewer -> orjson [approved, note])

  Output: a number, not an array (an array costs the server more to convert than its elements)
    seq  (> 0) created; also the reply when this very call ran before (a retry: the data
         manifest, which carries a random version, is already the stored one; the upload's
         registration is dropped again)
    -2   the id is taken (the upload's registration is dropped; the caller removes its chunks)
    -5   the upload's registration is gone: gc() collected it as abandoned; or a chunk of
         KEYS[10 ..] is missing (the server refused it); nothing written
]]
-- @include "common"

local jid = ARGV[1]
local nblobs = tonumber(ARGV[6])
local first_field = 12 + 2 * nblobs
local status = ARGV[8]

if redis.call("EXISTS", KEYS[1]) == 1 then
  -- The registration goes either way: a repeat sent with its upload (see LaneScript.run_after)
  -- has registered it again.
  if ARGV[7] ~= "" then redis.call("ZREM", KEYS[8], ARGV[7]) end
  if nblobs > 0 and redis.call("HGET", KEYS[2], ARGV[12]) == ARGV[13] then
    return tonumber(redis.call("ZSCORE", KEYS[3], jid))
  end
  return E_EXISTS
end
if ARGV[7] ~= "" and redis.call("ZREM", KEYS[8], ARGV[7]) == 0 then return E_UPLOAD_EXPIRED end
if #KEYS > 9 and redis.call("EXISTS", unpack(KEYS, 10)) ~= #KEYS - 9 then return E_UPLOAD_EXPIRED end

local seq = redis.call("INCR", KEYS[5])
-- The status (and a create's start_time and duration) in the same HSET as the meta, when the meta
-- is small enough for one (unpack() has a limit).
local last = math.min(#ARGV, first_field + 999)
if ARGV[9] == "create" then
  redis.call("HSET", KEYS[1], "status", json_str(status), "start_time", '""', "duration", '"N/A"',
             unpack(ARGV, first_field, last))
else
  redis.call("HSET", KEYS[1], "status", json_str(status), unpack(ARGV, first_field, last))
end
hset_range(KEYS[1], last + 1, #ARGV)
if nblobs > 0 then hset_range(KEYS[2], 12, first_field - 1) end
if ARGV[10] == "1" then redis.call("HSET", KEYS[9], ARGV[12], ARGV[11]) end
redis.call("ZADD", KEYS[3], string.format("%d", seq), jid)  -- (integer text: see queue_score)
if status == "SUBMITTED" then redis.call("ZADD", KEYS[4], queue_score(tonumber(ARGV[2]), seq), jid) end
redis.call("SADD", KEYS[7], jid)
emit(KEYS[6], ARGV[5], jid, ARGV[9], "", status, ARGV[3], ARGV[4])
return seq
