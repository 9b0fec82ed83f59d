--[[
  Delete a job: meta, approvals, manifests and every index entry, with an event. The blob chunks
  live in the job's own hash slot: the caller unlinks them with the manifests returned here
  (gc() finds any a crash left behind).

  Input:
    KEYS[1]  job hash             job:<jid>
    KEYS[2]  approvals hash       approvals:<jid>
    KEYS[3]  blob manifests hash  blobs:<jid>
    KEYS[4]  all jobs zset        jobs
    KEYS[5]  queue zset           queue
    KEYS[6]  event stream         events
    KEYS[7]  status:SUBMITTED
    KEYS[8]  status:APPROVED
    KEYS[9]  status:DISPATCHED
    KEYS[10] status:RUNNING
    KEYS[11] status:FINISHED:COMPLETED
    KEYS[12] status:FINISHED:ABORTED
    KEYS[13] status:FINISHED:EXECUTION_EXCEPTION
    KEYS[14] status:FINISHED:ABNORMAL
    KEYS[15] status:FINISHED:CAN_NOT_SCHEDULE
    KEYS[16] status:FINISHED:FAILED_TO_RUN
    KEYS[17] status:FINISHED:ABANDONED

    ARGV[1] job id
    ARGV[2] actor
    ARGV[3] time (epoch seconds)
    ARGV[4] event stream cap

  Output:
    {1, old status, manifests as a component/manifest array}
    {-1}  no such job
]]
-- @include "common"

local STATUS_KEY0 = 6
local jid = ARGV[1]
if redis.call("EXISTS", KEYS[1]) == 0 then return {E_NOT_FOUND} end
local cur = unjson_str(redis.call("HGET", KEYS[1], "status")) or ""
local manifests = redis.call("HGETALL", KEYS[3])
-- Every status set, not only the recorded one: no index may keep a deleted id.
for i = 1, #STATUSES do redis.call("SREM", KEYS[STATUS_KEY0 + i], jid) end
redis.call("ZREM", KEYS[4], jid)
redis.call("ZREM", KEYS[5], jid)
redis.call("DEL", KEYS[1], KEYS[2], KEYS[3])
emit(KEYS[6], ARGV[4], jid, "delete", cur, "", ARGV[2], ARGV[3])
return {OK, cur, manifests}
