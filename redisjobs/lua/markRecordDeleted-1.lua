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
    {1, record field/value array}  marked now
    {0}                            not this job's, already marked, or gone
]]
-- @include "common"

if redis.call("HGET", KEYS[1], "job_id") ~= ARGV[1] then return {NOOP} end
if redis.call("HGET", KEYS[1], "state") == ARGV[2] then return {NOOP} end
redis.call("HSET", KEYS[1], "state", ARGV[2], "deleted_time", ARGV[3], "deleted_by", ARGV[4])
return {OK, redis.call("HGETALL", KEYS[1])}
