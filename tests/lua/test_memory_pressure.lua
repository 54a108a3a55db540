-- test_memory_pressure.lua: unreachable tensors are freed when host tensor memory grows, not
-- only when Lua's collector (which does not see their storage) gets round to it.
local H = require "harness"
local ms = require "moonseg"

H.case("dropped temporaries are collected as tensor memory grows, with Lua's collector stopped", function()
  collectgarbage()
  collectgarbage("stop") -- only the tensor-memory trigger can free what the loop drops
  ms.reset_peak_memory()
  local base = ms.memory_stats().allocated
  local x = ms.ones(1024, 1024) -- 4 MiB
  local kept
  for _ = 1, 100 do kept = x * 2 end -- 400 MiB made, one result alive at a time
  local peak = ms.memory_stats().peak - base
  collectgarbage("restart")
  H.near(kept:sum():item(), 2 * 1024 * 1024, 0)
  -- the trigger runs when live bytes grow by max(32 MiB, a quarter): well under 400 MiB
  H.eq(peak < 80 * 2 ^ 20, true, string.format("peak %.1f MiB above the start", peak / 2 ^ 20))
  H.eq(peak >= 8 * 2 ^ 20, true, "x and one result at least")
end)

H.case("tensors still referenced survive the trigger", function()
  collectgarbage("stop")
  local keep = {}
  for k = 1, 40 do keep[k] = ms.full({ 256, 1024 }, k) end -- 40 MiB, past the trigger
  collectgarbage("restart")
  for k = 1, 40 do H.near(keep[k]:mean():item(), k, 0) end
end)

H.done()
