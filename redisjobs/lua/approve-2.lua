--[[
  Record one reviewer's approval (or rejection) of a job and return the job's meta.
  Each reviewer is its own field of the job hash ("\0approval:" .. reviewer), so concurrent
  approvals never overwrite each other. The same verdict again changes nothing and emits no
  event, so a repeated call is harmless.

  Input:
    KEYS[1] job hash        job:<jid>
    KEYS[2] event stream    events

    ARGV[1] job id
    ARGV[2] the reviewer's field
    ARGV[3] orjson [approved, note]
    ARGV[4] actor
    ARGV[5] time (epoch seconds)
    ARGV[6] event stream cap
    ARGV[7] "1" approved, "0" rejected (for the event)
    ARGV[8] the reviewer's name (for the event)

  Output:
    {1, the job hash as a field/value array}
    {-1}  no such job
]]
-- @include "common"

if redis.call("EXISTS", KEYS[1]) == 0 then return {E_NOT_FOUND} end
if redis.call("HGET", KEYS[1], ARGV[2]) == ARGV[3] then return {OK, redis.call("HGETALL", KEYS[1])} end
redis.call("HSET", KEYS[1], ARGV[2], ARGV[3])
local verdict = ARGV[7] == "1" and "approved" or "rejected"
emit(KEYS[2], ARGV[6], ARGV[1], "approval", "", verdict .. ":" .. ARGV[8], ARGV[4], ARGV[5])
return {OK, redis.call("HGETALL", KEYS[1])}
