--[[
  Extend the lease of a claimed job, by its owner only.

  Input:
    KEYS[1] job hash     job:<jid>
    KEYS[2] leases zset  leases
    KEYS[3] owners hash  owners

    ARGV[1] job id
    ARGV[2] owner
    ARGV[3] lease, milliseconds from now (server time)

  Output:
    {1, expiry_ms}  renewed
    {-1}            no such job
    {-6, holder}    the job is not held by this owner (holder "" when nobody holds it: it was
                    reaped, released or finished)
]]
-- @include "common"

local jid = ARGV[1]
if redis.call("EXISTS", KEYS[1]) == 0 then return {E_NOT_FOUND} end
local holder = redis.call("HGET", KEYS[3], jid)
if holder ~= ARGV[2] then return {E_NOT_OWNER, holder or ""} end
local expiry = server_ms() + tonumber(ARGV[3])
redis.call("ZADD", KEYS[2], expiry, jid)
return {OK, expiry}
