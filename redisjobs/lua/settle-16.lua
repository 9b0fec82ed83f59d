--[[
  Settle claimed jobs whose holder is gone: reap (the lease expired) or recover (a restarted
  owner gives back what it held). DISPATCHED and RUNNING jobs move to the statuses the caller
  picks (by default back to the queue, and FINISHED:ABANDONED), releasing their leases.
  Candidates come from the caller (job keys cannot be built in Lua); each is checked again here.

  Input:
    KEYS[1]  leases zset          leases
    KEYS[2]  owners hash          owners
    KEYS[3]  queue zset           queue
    KEYS[4]  event stream         events
    KEYS[5]  all jobs zset        jobs
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
    KEYS[17 ..] the candidates' job hashes, in ARGV order

    ARGV[1]  mode: "reap" (lease expired, by server time) or "recover" (held by ARGV[2])
    ARGV[2]  owner (recover)
    ARGV[3]  new status for DISPATCHED jobs
    ARGV[4]  new status for RUNNING jobs
    ARGV[5]  actor
    ARGV[6]  event stream cap
    ARGV[7]  now, epoch microseconds
    ARGV[8]  start_time (orjson), unused unless a target is RUNNING
    ARGV[9]  the client's local UTC offset in seconds
    ARGV[10 ..] candidate job ids

  Output:
    {1, {jid, old status, new status, previous holder} per job settled}
]]
-- @include "common"
-- @include "statuses"
-- @include "duration"
-- @include "move"

local mode, owner = ARGV[1], ARGV[2]
local target = {DISPATCHED = ARGV[3], RUNNING = ARGV[4]}
local now = server_ms()
mv_queue, mv_jobs, mv_events, mv_leases, mv_owners = KEYS[3], KEYS[5], KEYS[4], KEYS[1], KEYS[2]
mv_now_us, mv_time, mv_start_time = tonumber(ARGV[7]), seconds_text(ARGV[7]), ARGV[8]
mv_offset, mv_actor, mv_maxlen = ARGV[9], ARGV[5], ARGV[6]
local done = {}
for i = 10, #ARGV do
  local jid, job_key = ARGV[i], KEYS[16 + i - 9]
  local holder = redis.call("HGET", KEYS[2], jid)
  local expiry = tonumber(redis.call("ZSCORE", KEYS[1], jid))
  local due
  if mode == "reap" then due = expiry and expiry <= now else due = holder == owner end
  if due then
    local cur = unjson_str(redis.call("HGET", job_key, "status"))
    local new = cur and target[cur]
    if new and new ~= cur and can_move(cur, new) then
      move(job_key, jid, cur, new, mode, KEYS[5 + status_index(cur)], KEYS[5 + status_index(new)])
      done[#done + 1] = {jid, cur, new, holder or ""}
    elseif not new then
      -- Not DISPATCHED or RUNNING (or gone): a stale lease; drop it.
      redis.call("ZREM", KEYS[1], jid)
      redis.call("HDEL", KEYS[2], jid)
    end
  end
end
return {OK, done}
