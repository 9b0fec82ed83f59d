--[[
  Read many jobs in one command, each as one JSON document (see includes/meta_json.lua): one
  reply, one orjson.loads per job on the client.

  Input:
    KEYS[1 ..] job hashes, job:<jid>

    ARGV[1] unused

  Output:
    {meta JSON of KEYS[1] or false, meta JSON of KEYS[2] or false, ...}  (false: no such job)
]]
-- @include "meta_json"

local out = {}
for i = 1, #KEYS do out[i] = meta_json(KEYS[i]) or false end
return out
