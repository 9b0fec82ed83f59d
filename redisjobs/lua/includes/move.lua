--[[
  Moving a job from one status to another: the one place where the status field, the status sets,
  the queue, start_time / duration, the lease and the event change together. Callers check the
  transition first, pass the sets of the old and the new status (from_key, to_key), and build ctx
  from their own KEYS:

    ctx.queue, ctx.jobs, ctx.events, ctx.leases, ctx.owners    key names
    ctx.now_us       client time, epoch microseconds (durations)
    ctx.time         client time, epoch seconds as text (events; see seconds_text)
    ctx.start_time   orjson string written as start_time on RUNNING
    ctx.offset       client's UTC offset in seconds (start times without one)
    ctx.actor, ctx.maxlen
    ctx.claimed      false when the caller knows the job has no owner (nothing to let go of)
]]
local function move(ctx, job_key, jid, cur, new, op, from_key, to_key)
  -- The status and the time it sets, in one HSET.
  local fields = {"status", json_str(new)}
  if new == "RUNNING" then
    fields[3], fields[4] = "start_time", ctx.start_time
  elseif is_timed(new) then
    local start = unjson_str(redis.call("HGET", job_key, "start_time"))
    local start_us = start and start ~= "" and iso_to_us(start, ctx.offset)
    if start_us then fields[3], fields[4] = "duration", json_str(timedelta_str(ctx.now_us - start_us)) end
  end
  redis.call("HSET", job_key, unpack(fields))
  if redis.call("SMOVE", from_key, to_key, jid) == 0 then redis.call("SADD", to_key, jid) end
  if cur == "SUBMITTED" then redis.call("ZREM", ctx.queue, jid) end
  if new == "SUBMITTED" then
    local priority = tonumber(redis.call("HGET", job_key, "priority")) or 0
    local seq = tonumber(redis.call("ZSCORE", ctx.jobs, jid)) or 0
    redis.call("ZADD", ctx.queue, queue_score(priority, seq), jid)
  end
  -- Leaving the held statuses lets go of the lease (unless the caller knows there is none).
  if new ~= "DISPATCHED" and new ~= "RUNNING" and ctx.claimed ~= false then
    redis.call("ZREM", ctx.leases, jid)
    redis.call("HDEL", ctx.owners, jid)
  end
  emit(ctx.events, ctx.maxlen, jid, op, cur, new, ctx.actor, ctx.time)
end
