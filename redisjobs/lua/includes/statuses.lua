--[[
  The status rules, as tables the loader generates from redisjobs/_lifecycle.py (the one place
  they live), replacing these placeholders:
    STATUSES     array of every status, in the order of the status-set keys scripts receive
    TRANSITIONS  TRANSITIONS[old][new] == true when old -> new is allowed
    TIMED        TIMED[status] == true for finishing statuses that record a duration
  Only scripts that check or make transitions include it: building the tables costs every call.
]]
local STATUSES = @@STATUSES@@
local TRANSITIONS = @@TRANSITIONS@@
local TIMED = @@TIMED@@

-- Position of each status in STATUSES (and so of its set in KEYS, after an offset).
local STATUS_INDEX = {}
for i, s in ipairs(STATUSES) do STATUS_INDEX[s] = i end

