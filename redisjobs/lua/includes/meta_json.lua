--[[
  A job hash as one JSON document, for readers: the field values are JSON texts already (orjson
  wrote them), so they are spliced in as they are, never decoded. Approval fields
  ("\0approval:" .. reviewer) are gathered into "approvals"; without any, the stored "approvals"
  marker (an empty object) is kept. Returns nil for a missing hash.
]]
local APPROVAL = "\0approval:"

local function json_name(name)
  if string.find(name, "^[%w_%-%.:@ ]*$") then return '"' .. name .. '"' end
  return cjson.encode(name)
end

local function meta_json(key)
  local flat = redis.call("HGETALL", key)
  if #flat == 0 then return nil end
  local parts, approvals, marker = {}, {}, nil
  for i = 1, #flat, 2 do
    local name, value = flat[i], flat[i + 1]
    if string.sub(name, 1, #APPROVAL) == APPROVAL then
      approvals[#approvals + 1] = json_name(string.sub(name, #APPROVAL + 1)) .. ":" .. value
    elseif name == "approvals" then
      marker = value
    else
      parts[#parts + 1] = json_name(name) .. ":" .. value
    end
  end
  if #approvals > 0 then
    parts[#parts + 1] = '"approvals":{' .. table.concat(approvals, ",") .. "}"
  elseif marker then
    parts[#parts + 1] = '"approvals":' .. marker
  end
  return "{" .. table.concat(parts, ",") .. "}"
end
