--[[
  Durations as Python's str(datetime.timedelta) writes them, from an ISO 8601 start time.

  iso_to_us(s, local_offset_s) parses "YYYY-MM-DD[T ]HH:MM:SS[.ffffff][Z|+HH:MM|-HH:MM]" into epoch
  microseconds; a time without an offset is local time, shifted by local_offset_s (seconds east of
  UTC) as the client reports it. Returns nil for anything else.
]]
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = math.floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

local function iso_to_us(s, local_offset_s)
  if not s then return nil end
  local y, mo, d, h, mi, se, rest =
    string.match(s, "^(%d%d%d%d)-(%d%d)-(%d%d)[T ](%d%d):(%d%d):(%d%d)(.*)$")
  if not y then return nil end
  local frac = 0
  local f = string.match(rest, "^%.(%d+)")
  if f then
    frac = tonumber(string.sub(f .. "000000", 1, 6))
    rest = string.sub(rest, #f + 2)
  end
  local offset
  if rest == "" then
    offset = tonumber(local_offset_s)
  elseif rest == "Z" then
    offset = 0
  else
    local sign, oh, om = string.match(rest, "^([+-])(%d%d):?(%d%d)")
    if not sign then return nil end
    offset = (tonumber(oh) * 3600 + tonumber(om) * 60) * (sign == "-" and -1 or 1)
  end
  local days = days_from_civil(tonumber(y), tonumber(mo), tonumber(d))
  local secs = days * 86400 + tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(se) - offset
  return secs * 1000000 + frac
end

local function timedelta_str(us)
  local day_us = 86400000000
  local days = math.floor(us / day_us)
  local rem = us - days * day_us
  local secs = math.floor(rem / 1000000)
  local micro = rem - secs * 1000000
  local out = string.format("%d:%02d:%02d", math.floor(secs / 3600), math.floor(secs % 3600 / 60), secs % 60)
  if micro > 0 then out = out .. string.format(".%06d", micro) end
  if days ~= 0 then
    local plural = (days == 1 or days == -1) and "" or "s"
    out = string.format("%d day%s, ", days, plural) .. out
  end
  return out
end
