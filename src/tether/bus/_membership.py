"""The Redis script behind ``RedisBus.beat`` and ``RedisBus.leave`` (see ``Bus.beat``).

One hash per cluster, ``<namespace>:members``: ``node:<id>`` -> ``<expiry ms>|<incarnation>``
per member, and ``epoch``. One key, so the script also runs on a Redis Cluster.
"""

#: Beat, leave or report a gap, atomically, on the server's clock (members on several
#: machines need not agree on the time). Members whose expiry passed are removed, and
#: removing one moves the epoch, as does a node joining or this node id appearing with a new
#: incarnation (a restart quicker than the TTL): membership decides which node owns which
#: device's deadlines (hub.routing), so every change of it must be noticed. Returns the
#: epoch.
MEMBERSHIP = """
if redis.replicate_commands then redis.replicate_commands() end  -- TIME, then writes
local key, me, incarnation = KEYS[1], 'node:' .. ARGV[1], ARGV[2]
local ttl, action = tonumber(ARGV[3]), ARGV[4]
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local moved = action ~= 'beat'
local known = false
local fields = redis.call('HGETALL', key)
for i = 1, #fields, 2 do
  local field, value = fields[i], fields[i + 1]
  if string.sub(field, 1, 5) == 'node:' then
    local bar = string.find(value, '|', 1, true)
    if field == me then
      known = true
      if string.sub(value, bar + 1) ~= incarnation then moved = true end
    elseif tonumber(string.sub(value, 1, bar - 1)) <= now then
      redis.call('HDEL', key, field)
      moved = true
    end
  end
end
if not known and action ~= 'leave' then moved = true end  -- a join
if action == 'leave' then
  redis.call('HDEL', key, me)
else
  redis.call('HSET', key, me, (now + ttl) .. '|' .. incarnation)
end
if moved then return redis.call('HINCRBY', key, 'epoch', 1) end
return tonumber(redis.call('HGET', key, 'epoch') or '0')
"""
