-- test_random.lua: seeded determinism, RNG state round trips, distribution moments, randint
-- range, generators, in-place fills and dropout (statistics, scaling, backward = grad * mask).
local ms = require "moonseg"
local H = require "harness"
local gradcheck = require("moonseg.gradcheck").gradcheck
local F = ms.functional

local function flat(x)
  local buf, n = x:to_f64_buffer()
  local t = {}
  for i = 0, n - 1 do t[i + 1] = buf[i] end
  return t
end
local function moments(v)
  local s, s2 = 0, 0
  for _, x in ipairs(v) do s = s + x; s2 = s2 + x * x end
  local m = s / #v
  return m, math.sqrt(s2 / #v - m * m)
end

H.case("same seed, same numbers; different seed, different numbers", function()
  ms.manual_seed(123)
  local a = flat(ms.randn(50))
  local b = flat(ms.rand(3, 4))
  ms.manual_seed(123)
  H.same_list(flat(ms.randn(50)), a)
  H.same_list(flat(ms.rand({ 3, 4 })), b)
  ms.manual_seed(124)
  local c = flat(ms.randn(50))
  local differ = 0
  for i = 1, 50 do if c[i] ~= a[i] then differ = differ + 1 end end
  H.eq(differ, 50)
end)

H.case("get/set_rng_state resumes the stream", function()
  ms.manual_seed(5)
  ms.rand(17)
  local st = ms.get_rng_state()
  local a = flat(ms.randn(2, 3))
  local i = flat(ms.randint(0, 100, { 9 }))
  ms.rand(1000)
  ms.set_rng_state(st)
  H.same_list(flat(ms.randn(2, 3)), a)
  H.same_list(flat(ms.randint(0, 100, { 9 })), i)
end)

H.case("randn moments over 100k samples; rand in [0, 1)", function()
  ms.manual_seed(1)
  local m, s = moments(flat(ms.randn(100000)))
  H.near(m, 0, 0.01, "mean")
  H.near(s, 1, 0.01, "std")
  local u = flat(ms.rand(100000, { dtype = "f64" }))
  local lo, hi = math.huge, -math.huge
  for _, x in ipairs(u) do lo = math.min(lo, x); hi = math.max(hi, x) end
  H.eq(lo >= 0 and hi < 1, true, "range")
  local um, us = moments(u)
  H.near(um, 0.5, 0.01)
  H.near(us, math.sqrt(1 / 12), 0.01)
  local x = ms.empty({ 20000 }, { dtype = "f64" }):normal_(3, 2)
  local nm, ns = moments(flat(x))
  H.near(nm, 3, 0.05)
  H.near(ns, 2, 0.05)
end)

H.case("randint range and coverage; dtypes and shapes", function()
  ms.manual_seed(9)
  local v = flat(ms.randint(-3, 4, { 5000 }))
  local seen = {}
  for _, x in ipairs(v) do
    H.eq(x >= -3 and x < 4 and x == math.floor(x), true, "value " .. x)
    seen[x] = (seen[x] or 0) + 1
  end
  for k = -3, 3 do H.eq((seen[k] or 0) > 550, true, "count of " .. k) end
  local t = ms.randint(10, { 2, 3 })
  H.eq(t:type(), "i64")
  H.same_list(t:size(), { 2, 3 })
  H.eq(ms.randint(0, 5, { 4 }, { dtype = "i32" }):type(), "i32")
  H.same_list(ms.rand({}):size(), {})
  H.eq(ms.randn(2, 3, { dtype = "f64" }):type(), "f64")
  H.eq(ms.rand(2, { requires_grad = true }).requires_grad, true)
end)

H.case("explicit generators are independent of the default one", function()
  local g1, g2 = ms.Generator(77), ms.Generator(77)
  ms.manual_seed(0)
  local a = flat(ms.randn(10, { generator = g1 }))
  ms.randn(100)
  H.same_list(flat(ms.randn(10, { generator = g2 })), a)
  H.eq(tonumber(g1.offset), tonumber(g2.offset))
  ms.manual_seed(77)
  H.same_list(flat(ms.randn(10)), a)
  H.raises(function() ms.randn(3, { generator = {} }) end, "generator")
end)

H.case("like-variants and in-place fills on views", function()
  local x = ms.zeros({ 4, 6 }, { dtype = "f64" })
  local r = ms.rand_like(x)
  H.eq(r:type(), "f64")
  H.same_list(r:size(), { 4, 6 })
  H.same_list(ms.randn_like(x, { dtype = "f32" }):size(), { 4, 6 })
  local col = x:slice(2, 2, 2) -- non-contiguous column
  col:uniform_(5, 6)
  local v = x:tolist()
  for i = 1, 4 do
    H.eq(v[i][2] >= 5 and v[i][2] < 6, true)
    H.eq(v[i][1], 0)
    H.eq(v[i][3], 0)
  end
  H.raises(function() ms.zeros(3, { dtype = "i64" }):uniform_() end, "uniform_", "i64")
  H.raises(function() ms.randint(5, 5, { 2 }) end, "randint_", "empty range")
end)

H.case("dropout: mask statistics, scaling, identity when not training", function()
  ms.manual_seed(2024)
  local x = ms.ones({ 200, 250 }, { dtype = "f32" })
  local p = 0.3
  local y = F.dropout(x, p)
  local v = flat(y)
  local zeros, kept = 0, 0
  for _, e in ipairs(v) do
    if e == 0 then zeros = zeros + 1 else
      H.near(e, 1 / (1 - p), 1e-6, "kept value")
      kept = kept + 1
    end
  end
  H.near(zeros / #v, p, 0.02, "drop rate")
  H.eq(F.dropout(x, p, false), x)
  H.eq(F.dropout(x, 0), x)
  H.same_list(flat(F.dropout(ms.ones(5), 1)), { 0, 0, 0, 0, 0 })
  H.raises(function() F.dropout(x, 1.5) end, "dropout", "1.5")
end)

H.case("dropout backward is grad * mask", function()
  ms.manual_seed(31)
  local x = ms.randn({ 40, 30 }, { dtype = "f64" }):requires_grad_()
  local y = F.dropout(x, 0.5)
  local g = ms.randn({ 40, 30 }, { dtype = "f64" })
  y:backward(g)
  local xv, yv, gv, dv = flat(x), flat(y), flat(g), flat(x.grad)
  for i = 1, #xv do
    local m = yv[i] / xv[i] -- 0 or 2
    H.near(dv[i], gv[i] * m, 1e-12)
  end
end)

H.case("gradcheck dropout with a fixed generator", function()
  local g = ms.Generator(0)
  local x = ms.randn({ 5, 7 }, { dtype = "f64", generator = ms.Generator(4) }):requires_grad_()
  gradcheck(function(t)
    g.seed, g.offset = 99, 0
    return F.dropout(t, 0.4, true, { generator = g })
  end, { x })
end)

H.done()
