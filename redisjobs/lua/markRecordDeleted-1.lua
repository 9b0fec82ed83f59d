--[[
  Mark one submit-token record as belonging to a deleted job, unless it is already marked or
  belongs to another job.

  Input:
    KEYS[1] record hash  rec:<sha256 parts>

    ARGV[1] job id (orjson)
    ARGV[2] the deleted state (orjson)
    ARGV[3] deleted_time (orjson)
    ARGV[4] deleted_by (orjson)

  Output:
    {1, record field/value array}  marked now, or by this very call before (a repeat: the same
                                   deleted_time, to the microsecond, and deleted_by)
    {0}                            not this job's, already marked, or gone
]]
-- @include "common"

local held = redis.call("HMGET", KEYS[1], "job_id", "state", "deleted_time", "deleted_by")
if held[1] ~= ARGV[1] then return {NOOP} end
if held[2] == ARGV[2] then
  if held[3] == ARGV[3] and held[4] == ARGV[4] then return {OK, redis.call("HGETALL", KEYS[1])} end
  return {NOOP}
end
redis.call("HSET", KEYS[1], "state", ARGV[2], "deleted_time", ARGV[3], "deleted_by", ARGV[4])
return {OK, redis.call("HGETALL", KEYS[1])}
