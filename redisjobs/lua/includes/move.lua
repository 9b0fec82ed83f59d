--[[
  Moving a job from one status to another: the one place where the status field, the status sets,
  the queue, start_time / duration, the lease and the event change together. Callers check the
  transition first (can_move) and build ctx from their own KEYS:

    ctx.status0      index in KEYS just before the status sets (KEYS[status0 + i] is the i-th status)
    ctx.queue, ctx.jobs, ctx.events, ctx.leases, ctx.owners    key names
    ctx.now_us       client time, epoch microseconds (durations)
    ctx.time         client time, epoch seconds (events)
    ctx.start_time   orjson string written as start_time on RUNNING
    ctx.offset       client's UTC offset in seconds (start times without one)
    ctx.actor, ctx.maxlen
]]
local function move(ctx, job_key, jid, cur, new, op)
  redis.call("HSET", job_key, "status", json_str(new))
  local from = status_index(cur)
  if from then redis.call("SREM", KEYS[ctx.status0 + from], jid) end
  redis.call("SADD", KEYS[ctx.status0 + status_index(new)], jid)
  if cur == "SUBMITTED" then redis.call("ZREM", ctx.queue, jid) end
  if new == "SUBMITTED" then
    local priority = tonumber(redis.call("HGET", job_key, "priority")) or 0
    local seq = tonumber(redis.call("ZSCORE", ctx.jobs, jid)) or 0
    redis.call("ZADD", ctx.queue, queue_score(priority, seq), jid)
  end
  if new == "RUNNING" then
    redis.call("HSET", job_key, "start_time", ctx.start_time)
  elseif is_timed(new) then
    local start = unjson_str(redis.call("HGET", job_key, "start_time"))
    local start_us = start and start ~= "" and iso_to_us(start, ctx.offset)
    if start_us then
      redis.call("HSET", job_key, "duration", json_str(timedelta_str(ctx.now_us - start_us)))
    end
  end
  if new ~= "DISPATCHED" and new ~= "RUNNING" then
    redis.call("ZREM", ctx.leases, jid)
    redis.call("HDEL", ctx.owners, jid)
  end
  emit(ctx.events, ctx.maxlen, jid, op, cur, new, ctx.actor, ctx.time)
end
