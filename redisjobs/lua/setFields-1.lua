--[[
  Write meta fields of an existing job, and nothing else: update_meta without a status, a
  compare-and-set, a priority or an owner (the update script covers those). Writing the same
  fields again is harmless, so a repeated call needs no request record.

  Input:
    KEYS[1] job hash        job:<jid>

    ARGV[1] .. ARGV[2n]  n job hash field, value pairs: meta (orjson values) and approvals
                         ("\0approval:" .. reviewer -> orjson [approved, note])

  Output:
    {0, status}  written (the status is unchanged)
    {-1}         no such job; nothing written
]]
-- @include "common"

local cur = job_status(KEYS[1])
if not cur then return {E_NOT_FOUND} end
hset_range(KEYS[1], 1, #ARGV)
return {NOOP, cur}
