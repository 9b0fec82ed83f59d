--[[
  Record one reviewer's approval (or rejection) of a job and return the job's meta.
  Reviewers write separate fields, so concurrent approvals never overwrite each other.

  Input:
    KEYS[1] job hash        job:<jid>
    KEYS[2] approvals hash  approvals:<jid>
    KEYS[3] event stream    events

    ARGV[1] job id
    ARGV[2] reviewer
    ARGV[3] orjson [approved, note]
    ARGV[4] actor
    ARGV[5] time (epoch seconds)
    ARGV[6] event stream cap
    ARGV[7] "1" approved, "0" rejected (for the event)

  Output:
    {1, meta field/value array, approvals reviewer/value array}
    {-1}  no such job
]]
-- @include "common"

if redis.call("EXISTS", KEYS[1]) == 0 then return {E_NOT_FOUND} end
redis.call("HSET", KEYS[2], ARGV[2], ARGV[3])
local verdict = ARGV[7] == "1" and "approved" or "rejected"
emit(KEYS[3], ARGV[6], ARGV[1], "approval", "", verdict .. ":" .. ARGV[2], ARGV[4], ARGV[5])
return {OK, redis.call("HGETALL", KEYS[1]), redis.call("HGETALL", KEYS[2])}
