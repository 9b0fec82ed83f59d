--[[
  Read many jobs in one command: each job hash as a field/value array. One reply, parsed in C by
  the client, instead of one pipelined HGETALL (and its per-command Python overhead) per job; the
  client splices each into one JSON document (the values are JSON already).

  Input:
    KEYS[1 ..] job hashes, job:<jid>

    ARGV[1] unused

  Output:
    {fields of KEYS[1], fields of KEYS[2], ...}: a field/value array per job, empty for a missing job
]]
local out = {}
for i = 1, #KEYS do out[i] = redis.call("HGETALL", KEYS[i]) end
return out
