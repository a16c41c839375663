-- ARGV: player_id. The player's live ticket, as a view, or {'notfound'}.
local player = ARGV[1]
local id = redis.call('HGET', plkey(player), player)
if not id then return { 'notfound' } end
local t = load(id)
if not is_live(t.s) then return { 'notfound' } end
return view(id, t)
