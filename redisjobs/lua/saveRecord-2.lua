--[[
  Store a submit-token record and index it by job id, atomically across processes.

  Input:
    KEYS[1] record hash          rec:<sha256 parts>
    KEYS[2] job's record index   recjob:<jid>

    ARGV[1] mode: "create" (only if absent) or "replace" (only if present)
    ARGV[2] the record key suffix to index
    ARGV[3 ..] record field, value pairs (orjson values)

  Output:
    {1}   stored
    {-2}  create: a different record with that scope exists already; nothing written
          (the same record again is {1}: a repeated create succeeds as its first run did)
    {-1}  replace: no such record; nothing written
]]
-- @include "common"

local exists = redis.call("EXISTS", KEYS[1]) == 1
if ARGV[1] == "create" and exists then
  if redis.call("HLEN", KEYS[1]) * 2 ~= #ARGV - 2 then return {E_EXISTS} end
  for i = 3, #ARGV, 2 do
    if redis.call("HGET", KEYS[1], ARGV[i]) ~= ARGV[i + 1] then return {E_EXISTS} end
  end
  return {OK}
end
if ARGV[1] == "replace" and not exists then return {E_NOT_FOUND} end
redis.call("DEL", KEYS[1])
hset_range(KEYS[1], 3, #ARGV)
redis.call("SADD", KEYS[2], ARGV[2])
return {OK}
