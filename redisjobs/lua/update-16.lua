--[[
  Update a job's meta and, when asked, its status: the transition is checked against the status
  table and applied with its index moves, times and event in one step. Safe to run twice: the
  same status again is a no-op, and field writes are plain overwrites.

  Input:
    KEYS[1]  job hash             job:<jid>
    KEYS[2]  approvals hash       approvals:<jid>
    KEYS[3]  all jobs zset        jobs
    KEYS[4]  queue zset           queue
    KEYS[5]  event stream         events
    KEYS[6]  status:SUBMITTED
    KEYS[7]  status:APPROVED
    KEYS[8]  status:DISPATCHED
    KEYS[9]  status:RUNNING
    KEYS[10] status:FINISHED:COMPLETED
    KEYS[11] status:FINISHED:ABORTED
    KEYS[12] status:FINISHED:EXECUTION_EXCEPTION
    KEYS[13] status:FINISHED:ABNORMAL
    KEYS[14] status:FINISHED:CAN_NOT_SCHEDULE
    KEYS[15] status:FINISHED:FAILED_TO_RUN
    KEYS[16] status:FINISHED:ABANDONED

    ARGV[1]  job id
    ARGV[2]  new status, or "" to leave it
    ARGV[3]  expected current status (compare-and-set), or ""
    ARGV[4]  now, epoch microseconds
    ARGV[5]  start_time to write on RUNNING (orjson string)
    ARGV[6]  the client's local UTC offset in seconds (for start times without an offset)
    ARGV[7]  actor
    ARGV[8]  event stream cap
    ARGV[9]  new priority, or "" when unchanged
    ARGV[10] n: number of approval pairs that follow
    ARGV[11 .. 10+2n] reviewer, orjson [approved, note] pairs
    ARGV[11+2n ..] meta field, value pairs (orjson values)

  Output:
    {1, old status}  the status changed
    {0, old status}  no status change (meta fields, if any, written)
    {-1}             no such job
    {-3, current}    the status table forbids current -> new; nothing written
    {-4, current}    current status is not the expected one; nothing written
]]
-- @include "common"
-- @include "duration"

local STATUS_KEY0 = 5
local jid, new, expected = ARGV[1], ARGV[2], ARGV[3]

if redis.call("EXISTS", KEYS[1]) == 0 then return {E_NOT_FOUND} end
local cur = unjson_str(redis.call("HGET", KEYS[1], "status")) or ""
if expected ~= "" and cur ~= expected then return {E_CONFLICT, cur} end
local change = new ~= "" and new ~= cur
if change and not (TRANSITIONS[cur] and TRANSITIONS[cur][new]) then return {E_TRANSITION, cur} end

-- Validated: from here on, only writes.
local napprovals = tonumber(ARGV[10])
local first_meta = 11 + 2 * napprovals
hset_range(KEYS[1], first_meta, #ARGV)
if napprovals > 0 then hset_range(KEYS[2], 11, first_meta - 1) end

local status_now = change and new or cur
if change then
  redis.call("HSET", KEYS[1], "status", json_str(new))
  if STATUS_INDEX[cur] then redis.call("SREM", KEYS[STATUS_KEY0 + STATUS_INDEX[cur]], jid) end
  redis.call("SADD", KEYS[STATUS_KEY0 + STATUS_INDEX[new]], jid)
  if cur == "SUBMITTED" then redis.call("ZREM", KEYS[4], jid) end
  if new == "RUNNING" then
    redis.call("HSET", KEYS[1], "start_time", ARGV[5])
  elseif TIMED[new] then
    local start = unjson_str(redis.call("HGET", KEYS[1], "start_time"))
    local start_us = start and start ~= "" and iso_to_us(start, ARGV[6])
    if start_us then
      local d = timedelta_str(tonumber(ARGV[4]) - start_us)
      redis.call("HSET", KEYS[1], "duration", json_str(d))
    end
  end
  emit(KEYS[5], ARGV[8], jid, "status", cur, new, ARGV[7], ARGV[4])
end

if status_now == "SUBMITTED" and (change or ARGV[9] ~= "") then
  local priority = tonumber(ARGV[9]) or tonumber(redis.call("HGET", KEYS[1], "priority")) or 0
  local seq = tonumber(redis.call("ZSCORE", KEYS[3], jid)) or 0
  redis.call("ZADD", KEYS[4], queue_score(priority, seq), jid)
end

if change then return {OK, cur} end
return {NOOP, cur}
