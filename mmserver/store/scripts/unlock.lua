-- ARGV: lock_key, owner_token. Deletes the lock only if this owner still holds it.
if redis.call('GET', ARGV[1]) == ARGV[2] then return redis.call('DEL', ARGV[1]) end
return 0
