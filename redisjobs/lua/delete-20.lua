--[[
  Delete a job: meta, approvals, manifests and every index entry, with an event. The blob chunks
  live in the job's own hash slot: the caller unlinks them with the manifests returned here
  (gc() finds any a crash left behind). A repeated call (same request id) gets the first run's
  reply from its request record, and emits no second event.

  Input:
    KEYS[1]  job hash             job:<jid>
    KEYS[2]  blob manifests hash  blobs:<jid>
    KEYS[3]  all jobs zset        jobs
    KEYS[4]  queue zset           queue
    KEYS[5]  event stream         events
    KEYS[6]  leases zset          leases
    KEYS[7]  owners hash          owners
    KEYS[8]  inline blobs hash    inline:<jid>
    KEYS[9]  status:SUBMITTED
    KEYS[10] status:APPROVED
    KEYS[11] status:DISPATCHED
    KEYS[12] status:RUNNING
    KEYS[13] status:FINISHED:COMPLETED
    KEYS[14] status:FINISHED:ABORTED
    KEYS[15] status:FINISHED:EXECUTION_EXCEPTION
    KEYS[16] status:FINISHED:ABNORMAL
    KEYS[17] status:FINISHED:CAN_NOT_SCHEDULE
    KEYS[18] status:FINISHED:FAILED_TO_RUN
    KEYS[19] status:FINISHED:ABANDONED
    KEYS[20] request record       req:<request id>

    ARGV[1] job id
    ARGV[2] actor
    ARGV[3] time (epoch seconds)
    ARGV[4] event stream cap

  Output:
    {1, old status, manifests as a component/manifest array}
    {-1}  no such job
]]
-- @include "common"
-- @include "statuses"

local STATUS_KEY0 = 8
local jid = ARGV[1]
local prior = replayed(KEYS[20])
if prior then
  local first = cjson.decode(prior)
  return {OK, first[1], first[2]}
end
if redis.call("EXISTS", KEYS[1]) == 0 then return {E_NOT_FOUND} end
local cur = unjson_str(redis.call("HGET", KEYS[1], "status")) or ""
local manifests = redis.call("HGETALL", KEYS[2])
-- Every status set, not only the recorded one: no index may keep a deleted id.
for i = 1, STATUS_COUNT do redis.call("SREM", KEYS[STATUS_KEY0 + i], jid) end
redis.call("ZREM", KEYS[3], jid)
redis.call("ZREM", KEYS[4], jid)
redis.call("ZREM", KEYS[6], jid)
redis.call("HDEL", KEYS[7], jid)
redis.call("DEL", KEYS[1], KEYS[2], KEYS[8])
emit(KEYS[5], ARGV[4], jid, "delete", cur, "", ARGV[2], ARGV[3])
remember(KEYS[20], cjson.encode({cur, manifests}))
return {OK, cur, manifests}
