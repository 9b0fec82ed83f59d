--[[
  Commit an uploaded blob: swap a component's manifest in one step, so readers see the old value
  or the new one, whole, and drop the upload's registration. The chunks of the new version are
  already written; the caller deletes the old version's chunks (named by the manifest returned).
  Safe to run twice: a repeat answers from the request record of the first run, with the manifest
  it replaced (so a repeat's caller frees the old chunks too), even when another commit has
  replaced this one since.

  Input:
    KEYS[1] job hash             job:<jid>
    KEYS[2] blob manifests hash  blobs:<jid>
    KEYS[3] uploads zset         uploads
    KEYS[4] inline blobs hash    inline:<jid>
    KEYS[5] request record       req:<request id>: the manifest replaced ("" for none)
    KEYS[6 ..] the blob's chunks, when they were sent in the same write as this call (see
            PipedUpload): committed only if they are all there

    ARGV[1] component
    ARGV[2] manifest (orjson)
    ARGV[3] the upload's registration in the uploads zset ("" for an inline blob)
    ARGV[4] "1" if the blob is inline, else "0"
    ARGV[5] the inline bytes ("" when chunked)

  Output:
    {1, previous manifest or false}
    {-1}  no such job (nothing written; the caller removes the new chunks)
    {-5}  the registration is gone: gc() collected the upload as abandoned; or a chunk of KEYS[6 ..]
          is missing (the server refused it); nothing written
]]
-- @include "common"

-- The registration goes first, whatever follows: a repeat sent with its upload (see
-- LaneScript.run_after) has registered it again.
local registered = ARGV[3] == "" or redis.call("ZREM", KEYS[3], ARGV[3]) == 1
local done = replayed(KEYS[5])  -- a repeat, even of a commit another one has replaced since
if done then return {OK, done ~= "" and done} end
if redis.call("HGET", KEYS[2], ARGV[1]) == ARGV[2] then return {OK, false} end  -- (committed long ago)
if redis.call("EXISTS", KEYS[1]) == 0 then return {E_NOT_FOUND} end
if not registered then return {E_UPLOAD_EXPIRED} end
if #KEYS > 5 and redis.call("EXISTS", unpack(KEYS, 6)) ~= #KEYS - 5 then return {E_UPLOAD_EXPIRED} end
local old = redis.call("HGET", KEYS[2], ARGV[1])
redis.call("HSET", KEYS[2], ARGV[1], ARGV[2])
remember(KEYS[5], old or "")
if ARGV[4] == "1" then
  redis.call("HSET", KEYS[4], ARGV[1], ARGV[5])
else
  redis.call("HDEL", KEYS[4], ARGV[1])
end
return {OK, old}
