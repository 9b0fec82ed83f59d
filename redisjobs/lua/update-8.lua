--[[
  Update a job's meta and, when asked, its status: the transition is checked against the status
  table (and the owner, for a claimed job) and applied with its index moves, times, lease and
  event in one step. Safe to run twice: field writes are plain overwrites, and a call that asks for
  a status is answered from its request record when repeated (a compare-and-set or an owner's call
  would otherwise be refused, the status having moved, and any would report "no change").

  Input:
    KEYS[1]  job hash             job:<jid>
    KEYS[2]  all jobs zset        jobs
    KEYS[3]  queue zset           queue
    KEYS[4]  event stream         events
    KEYS[5]  leases zset          leases
    KEYS[6]  owners hash          owners
    KEYS[7]  request record       req:<request id> (used only when ARGV[11] is not "")
    KEYS[8]  the new status's set status:<ARGV[2]> (when ARGV[2] is not "")
    KEYS[9 ..] the sets of the statuses that can move to the new one, in status order: a job
             moves only out of one of them (see SOURCES in redisjobs/_lifecycle.py), so only they
             are passed (every key costs the server about 1k instructions)

    ARGV[1]  job id
    ARGV[2]  new status, or "" to leave it
    ARGV[3]  expected current status (compare-and-set), or ""
    ARGV[4]  now, epoch microseconds
    ARGV[5]  start_time to write on RUNNING (orjson string)
    ARGV[6]  the client's local UTC offset in seconds (for start times without an offset)
    ARGV[7]  actor
    ARGV[8]  event stream cap
    ARGV[9]  new priority, or "" when unchanged
    ARGV[10] owner asserted by the caller, or "": a claimed job starts (RUNNING) or goes back to
             the queue only by its owner's hand
    ARGV[11] keep a request record (the call asks for a status): "1" on a first send, "2" when
             this may repeat a call that ran (redis-py's retry sent it again); "" for none
    ARGV[12 ..] job hash field, value pairs: meta (orjson values) and approvals
             ("\0approval:" .. reviewer -> orjson [approved, note]; an "approval" event for each
             verdict that is new, as set_approval emits)

  Output:
    {1, old status}  the status changed
    {0, old status}  no status change (meta fields, if any, written)
                     (a repeated call gets the first run's reply)
    {-1}             no such job
    {-3, current}    the status table forbids current -> new; nothing written
    {-4, current}    current status is not the expected one; nothing written
    {-6, holder}     the job is claimed by another owner (holder, "" if unclaimed); nothing written.
                     With an owner asserted, also when the status is the one asked for already
                     but another owner holds the job (that owner's, not the caller's, to run)
    {-7, holder}     the owner's lease ran out before it started the job (DISPATCHED -> RUNNING):
                     reap() takes such a job back, so it may not start; nothing written
]]
-- @include "common"
-- @include "statuses"
-- @include "duration"
-- @include "move"

local jid, new, expected, asserted = ARGV[1], ARGV[2], ARGV[3], ARGV[10]
local request = ARGV[11] ~= "" and KEYS[7]

if ARGV[11] == "2" then  -- only a repeat can find its record: a first send need not look
  local prior = replayed(request)
  if prior then return {tonumber(string.sub(prior, 1, 1)), string.sub(prior, 3)} end
end

-- The status, and with it the start time when the new status may record a duration.
local raw, start = nil, nil
if new ~= "" and is_timed(new) then
  local got = redis.call("HMGET", KEYS[1], "status", "start_time")
  raw, start = got[1], got[2]
else
  raw = redis.call("HGET", KEYS[1], "status")
end
if not raw and redis.call("EXISTS", KEYS[1]) == 0 then return {E_NOT_FOUND} end
local cur = unjson_str(raw) or ""
if expected ~= "" and cur ~= expected then return {E_CONFLICT, cur} end
local change = new ~= "" and new ~= cur
local from_key = change and source_key(8, new, cur)
if change and not from_key then return {E_TRANSITION, cur} end
local holder = false
-- Only a DISPATCHED or RUNNING job can have an owner (claim and move keep it so, and
-- check_invariants checks it): any other needs no look.
if (change or asserted ~= "") and (cur == "DISPATCHED" or cur == "RUNNING") then
  holder = redis.call("HGET", KEYS[6], jid)
end
if change then
  local needs_owner = holder and (new == "RUNNING" or new == "SUBMITTED")
  if (asserted ~= "" and holder ~= asserted) or (needs_owner and holder ~= asserted) then
    return {E_NOT_OWNER, holder or ""}
  end
  if holder and new == "RUNNING" then
    local expiry = tonumber(redis.call("ZSCORE", KEYS[5], jid))
    if expiry and expiry <= server_ms() then return {E_LEASE_EXPIRED, holder} end
  end
elseif asserted ~= "" and holder and holder ~= asserted then
  return {E_NOT_OWNER, holder}
end

-- Approvals among the fields (update_meta given "approvals"): an event for each new verdict.
local approvals = new_approvals(KEYS[1], 12)

-- Validated: from here on, only writes.
hset_range(KEYS[1], 12, #ARGV)
for _, i in ipairs(approvals or NONE) do
  local verdict = approves(ARGV[i + 1]) and "approved" or "rejected"
  emit(KEYS[4], ARGV[8], jid, "approval", "", verdict .. ":" .. string.sub(ARGV[i], 11), ARGV[7],
       seconds_text(ARGV[4]))
end

if change then
  mv_queue, mv_jobs, mv_events, mv_leases, mv_owners = KEYS[3], KEYS[2], KEYS[4], KEYS[5], KEYS[6]
  mv_now_us, mv_time, mv_start_time = tonumber(ARGV[4]), seconds_text(ARGV[4]), ARGV[5]
  mv_offset, mv_actor, mv_maxlen = ARGV[6], ARGV[7], ARGV[8]
  move(KEYS[1], jid, cur, new, "status", from_key, KEYS[8], holder and true or false, start)
  if request then remember(request, "1:" .. cur) end  -- (text: a number goes through sprintf)
  return {OK, cur}
end
if cur == "SUBMITTED" and ARGV[9] ~= "" then
  local seq = tonumber(redis.call("ZSCORE", KEYS[2], jid)) or 0
  redis.call("ZADD", KEYS[3], queue_score(tonumber(ARGV[9]), seq), jid)
end
if request then remember(request, "0:" .. cur) end
return {NOOP, cur}
