--[[
  The claimed jobs whose lease has run out, by the clock of the server that holds the leases (the
  one every claim and renew used: in a cluster, TIME sent elsewhere would read another clock).

  Input:
    KEYS[1] leases zset   leases

    ARGV[1] at most this many ids

  Output:
    {jid, ...}  in expiry order
]]
-- @include "common"

return redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", server_ms(), "LIMIT", 0, tonumber(ARGV[1]))
