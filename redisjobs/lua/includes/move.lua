--[[
  Moving a job from one status to another: the one place where the status field, the status sets,
  the queue, start_time / duration, the lease and the event change together. Callers check the
  transition first and pass the sets of the old and the new status (from_key, to_key),
  claimed: false when they know the job has no owner (no lease to let go of), and start: the
  job's start_time field as they read it (false if it has none), or nil to have it read here.

  What every move in a script shares, the script sets once, before its first move (plain locals:
  a table of them would cost the server about 15k instructions a call, in building and garbage):
    mv_queue, mv_jobs, mv_events, mv_leases, mv_owners    key names
    mv_now_us       client time, epoch microseconds (durations)
    mv_time         client time, epoch seconds as text (events; see seconds_text)
    mv_start_time   orjson string written as start_time on RUNNING
    mv_offset       client's UTC offset in seconds (start times without one)
    mv_actor, mv_maxlen
]]
local mv_queue, mv_jobs, mv_events, mv_leases, mv_owners
local mv_now_us, mv_time, mv_start_time, mv_offset, mv_actor, mv_maxlen
local function move(job_key, jid, cur, new, op, from_key, to_key, claimed, start)
  -- The status and the time it sets, in one HSET.
  local duration = nil
  if new ~= "RUNNING" and is_timed(new) then
    if start == nil then start = redis.call("HGET", job_key, "start_time") end
    start = unjson_str(start)
    local start_us = start and start ~= "" and iso_to_us(start, mv_offset)
    if start_us then duration = json_str(timedelta_str(mv_now_us - start_us)) end
  end
  if new == "RUNNING" then
    redis.call("HSET", job_key, "status", json_str(new), "start_time", mv_start_time)
  elseif duration then
    redis.call("HSET", job_key, "status", json_str(new), "duration", duration)
  else
    redis.call("HSET", job_key, "status", json_str(new))
  end
  if redis.call("SMOVE", from_key, to_key, jid) == 0 then redis.call("SADD", to_key, jid) end
  if cur == "SUBMITTED" then redis.call("ZREM", mv_queue, jid) end
  if new == "SUBMITTED" then
    local priority = queued_priority(redis.call("HGET", job_key, "priority"))
    local seq = tonumber(redis.call("ZSCORE", mv_jobs, jid)) or 0
    redis.call("ZADD", mv_queue, queue_score(priority, seq), jid)
  end
  -- Leaving the held statuses lets go of the lease (unless the caller knows there is none).
  if new ~= "DISPATCHED" and new ~= "RUNNING" and claimed ~= false then
    redis.call("ZREM", mv_leases, jid)
    redis.call("HDEL", mv_owners, jid)
  end
  emit(mv_events, mv_maxlen, jid, op, cur, new, mv_actor, mv_time)
end
