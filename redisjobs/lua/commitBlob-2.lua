--[[
  Commit an uploaded blob: swap a component's manifest in one step, so readers see the old value
  or the new one, whole. The chunks of the new version are already written; the caller deletes
  the old version's chunks (their names come from the manifest returned here).

  Input:
    KEYS[1] job hash             job:<jid>
    KEYS[2] blob manifests hash  blobs:<jid>

    ARGV[1] component
    ARGV[2] manifest (orjson)

  Output:
    {1, previous manifest or false}
    {-1}  no such job (nothing written; the caller removes the new chunks)
]]
-- @include "common"

if redis.call("EXISTS", KEYS[1]) == 0 then return {E_NOT_FOUND} end
local old = redis.call("HGET", KEYS[2], ARGV[1])
redis.call("HSET", KEYS[2], ARGV[1], ARGV[2])
if old == ARGV[2] then old = false end
return {OK, old}
