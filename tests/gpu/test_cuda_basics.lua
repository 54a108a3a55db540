-- test_cuda_basics.lua: device queries, copies in all directions, casts, fills, allocator stats.
package.path = (arg[0]:match("^(.*/)") or "./") .. "?.lua;" .. package.path
local ms = require "moonseg"
local H = require "harness"
local G = require "gpu_common"
G.require_device()

ms.manual_seed(7)
local dtypes = { "f64", "f32", "f16", "bf16", "i64", "i32", "u8", "bool" }

H.case("device queries and build info", function()
  if G.dev == "cpu" then return end
  H.eq(ms.cuda.is_available(), true)
  if not (ms.cuda.device_count() >= 1) then error("device_count " .. ms.cuda.device_count()) end
  local info = ms.build_info()
  if not info:find("cuda", 1, true) or not info:find("cublas", 1, true) then error("build info: " .. info) end
end)

H.case("round trip of every dtype, contiguous and not", function()
  for _, dt in ipairs(dtypes) do
    local c = G.rand({ 3, 5, 4 }, "f64", -100, 100):to(dt)
    local d = G.to_dev(c)
    G.same(d, c, 0, dt .. " upload")
    G.same(d:to("cpu"), c, 0, dt .. " round trip")
    local ct = c:permute(3, 1, 2):slice(1, 2, 4)
    G.same(G.to_dev(ct), ct, 0, dt .. " strided upload")
    local dt_view = d:permute(3, 1, 2):slice(1, 2, 4)
    G.same(dt_view:to("cpu"), ct, 0, dt .. " strided download")
    G.same(dt_view:contiguous(), ct:contiguous(), 0, dt .. " device contiguous()")
  end
end)

H.case("large upload and download through the staging buffers", function()
  local c = G.rand({ 3, 1024, 1024 + 7 }, "f32") -- 12.4 MB: more than one 8 MiB chunk
  local d = G.to_dev(c)
  local back = d:to("cpu")
  local cv, bv = G.values(c), G.values(back)
  for i = 1, #cv, 997 do H.eq(bv[i], cv[i], "element " .. i) end
  H.eq(bv[#bv], cv[#cv])
end)

H.case("casts on the device match CPU casts", function()
  local src = G.rand({ 4, 33 }, "f64", -300, 300)
  src = ms.where(src:abs():lt(1), src:mul(1e-3), src) -- small values too (f16 subnormals)
  for _, from in ipairs(dtypes) do
    local c = src:to(from)
    local d = G.to_dev(c)
    for _, to in ipairs(dtypes) do
      G.same(d:to(to), c:to(to), 0, from .. " -> " .. to)
    end
  end
end)

H.case("copy_ broadcasts across devices and on the device", function()
  local row = G.rand({ 1, 6 }, "f32")
  local dst = ms.zeros({ 4, 6 }, { device = G.dev, dtype = "f16" })
  dst:copy_(row)
  G.same(dst, ms.zeros({ 4, 6 }, { dtype = "f16" }):copy_(row), 0, "host -> device broadcast")
  local back = ms.zeros({ 2, 4, 6 }, { dtype = "f64" })
  back:copy_(dst)
  G.same(back, ms.zeros({ 2, 4, 6 }, { dtype = "f64" }):copy_(dst:to("cpu")), 0, "device -> host broadcast")
end)

H.case("full, zeros, arange and empty tensors on the device", function()
  for _, dt in ipairs(dtypes) do
    G.same(ms.full({ 3, 2 }, 2.75, { dtype = dt, device = G.dev }), ms.full({ 3, 2 }, 2.75, { dtype = dt }), 0, dt)
  end
  G.same(ms.zeros(2, 3, { device = G.dev }), ms.zeros(2, 3), 0, "zeros")
  G.same(ms.arange(0, 10, 3, { device = G.dev }), ms.arange(0, 10, 3), 0, "arange")
  local e = ms.zeros({ 0, 3 }, { device = G.dev })
  H.eq(e:numel(), 0)
  H.eq(e:to("cpu"):numel(), 0)
  local v = ms.zeros({ 5, 4 }, { device = G.dev })
  v:slice(2, 2, 3):fill_(7)
  local w = ms.zeros({ 5, 4 })
  w:slice(2, 2, 3):fill_(7)
  G.same(v, w, 0, "strided fill_")
end)

H.case("allocator statistics and empty_cache", function()
  if G.dev == "cpu" then return end
  ms.collect()
  ms.cuda.empty_cache()
  local s0 = ms.cuda.memory_stats()
  local t = ms.zeros({ 1000, 1000 }, { device = "cuda" }) -- 4 MB
  local s1 = ms.cuda.memory_stats()
  if not (s1.allocated - s0.allocated >= 4e6) then error("allocated grew by " .. (s1.allocated - s0.allocated)) end
  if not (s1.reserved >= s1.allocated and s1.peak >= s1.allocated) then error("reserved/peak below allocated") end
  H.eq(s1.storages, s0.storages + 1)
  t:free()
  local s2 = ms.cuda.memory_stats()
  H.eq(s2.allocated, s0.allocated, "allocated after free")
  H.eq(s2.reserved, s1.reserved, "the freed block stays cached")
  local t2 = ms.zeros({ 1000, 1000 }, { device = "cuda" })
  H.eq(ms.cuda.memory_stats().reserved, s1.reserved, "the cached block is reused")
  t2:free()
  ms.cuda.empty_cache()
  local s3 = ms.cuda.memory_stats()
  H.eq(s3.reserved, s3.allocated, "empty_cache leaves only live blocks")
  ms.cuda.reset_peak_memory_stats()
  H.eq(ms.cuda.memory_stats().peak, ms.cuda.memory_stats().allocated)
  -- memory stays flat over repeated steps
  local x = ms.randn({ 64, 64 }):to("cuda")
  local before
  for step = 1, 5 do
    local y = x:mul(2):add(1):exp():sum()
    y:free()
    if step == 2 then before = ms.cuda.memory_stats() end
  end
  local after = ms.cuda.memory_stats()
  H.eq(after.allocated, before.allocated, "allocated flat over steps")
  H.eq(after.reserved, before.reserved, "reserved flat over steps")
end)

H.case("errors: bad device, out of memory, ops not ported", function()
  if G.dev == "cpu" then return end
  H.raises(function() ms.zeros({ 2 }, { device = "cuda:" .. ms.cuda.device_count() }) end, "cuda:" ..
    ms.cuda.device_count(), "visible")
  H.raises(function() ms.empty({ 4194304, 4194304 }, { device = "cuda" }) end, "out of memory", "asked",
    "allocated", "reserved")
  local x = ms.randn({ 2, 3 }):to("cuda")
  H.raises(function() x:argmax(1) end, "max: not supported on cuda:0 for f32",
    "(no kernel in the cuda backend)")
  H.raises(function() x:add(ms.randn({ 2, 3 })) end, "device")
end)

H.done()
