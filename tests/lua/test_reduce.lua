-- test_reduce.lua: reductions over dims (values against naive Lua loops), indices, errors, gradients.
local ms = require "moonseg"
local H = require "harness"
local gc = require("moonseg.gradcheck").gradcheck

local rnd = H.rng(11, 0, 1)
local function rlist(n, lo, hi) return H.rlist(rnd, n, lo, hi) end
local flat, mk = H.flat, H.tensor

-- Naive reference: reduce flat values of shape over the 1-based dims set red.
local function ref_reduce(vals, shape, red, kind, correction)
  local nd = #shape
  local groups, order = {}, {}
  local idx = {}
  for i = 1, nd do idx[i] = 1 end
  for k = 1, #vals do
    local key = {}
    for d = 1, nd do if not red[d] then key[#key + 1] = idx[d] end end
    local ks = table.concat(key, ",")
    if not groups[ks] then groups[ks] = {}; order[#order + 1] = ks end
    table.insert(groups[ks], vals[k])
    for d = nd, 1, -1 do
      idx[d] = idx[d] + 1
      if idx[d] <= shape[d] then break end
      idx[d] = 1
    end
  end
  local res = {}
  for _, ks in ipairs(order) do
    local g = groups[ks]
    local s, p, mx, mn = 0, 1, -math.huge, math.huge
    for _, v in ipairs(g) do s = s + v; p = p * v; mx = math.max(mx, v); mn = math.min(mn, v) end
    local m = s / #g
    local q = 0
    for _, v in ipairs(g) do q = q + (v - m) ^ 2 end
    res[#res + 1] = ({ sum = s, mean = m, prod = p, max = mx, min = mn,
      var = q / math.max(#g - (correction or 1), 0) })[kind]
  end
  return res
end

H.case("sum/mean/var/prod/max/min over every dim set, f64 and f32, keepdim", function()
  local shape = { 3, 4, 5 }
  local v = rlist(60, -1, 1)
  local sets = { { 1 }, { 2 }, { 3 }, { 1, 2 }, { 1, 3 }, { 2, 3 }, { -1 }, { 3, 1 } }
  for _, dt in ipairs { "f64", "f32" } do
    local x = mk(v, shape, dt)
    local xv = flat(x)
    local tol = dt == "f32" and 1e-5 or 1e-12
    for _, dims in ipairs(sets) do
      local red = {}
      for _, d in ipairs(dims) do red[d < 0 and #shape + d + 1 or d] = true end
      for _, kind in ipairs { "sum", "mean", "var", "prod" } do
        local got = x[kind](x, dims)
        H.near(flat(got), ref_reduce(xv, shape, red, kind), tol, kind .. " " .. dt)
        local kd = x[kind](x, dims, kind == "var" and { keepdim = true } or true)
        for d = 1, 3 do H.eq(kd:size(d), red[d] and 1 or shape[d], "keepdim") end
      end
      H.near(flat(x:amax(dims)), ref_reduce(xv, shape, red, "max"), tol)
      H.near(flat(x:amin(dims)), ref_reduce(xv, shape, red, "min"), tol)
    end
    local all = { true, true, true }
    H.near(x:sum():item(), ref_reduce(xv, shape, all, "sum")[1], tol)
    H.near(x:mean():item(), ref_reduce(xv, shape, all, "mean")[1], tol)
    H.near(x:var(nil, false):item(), ref_reduce(xv, shape, all, "var", 0)[1], tol)
    H.near(x:var(2, { correction = 0 }):tolist()[1][1], ref_reduce(xv, shape, { false, true, false }, "var", 0)[1], tol)
    H.near(x:std():item(), math.sqrt(ref_reduce(xv, shape, all, "var")[1]), tol)
    H.eq(x:sum():dim(), 0)
  end
end)

H.case("non-contiguous inputs, 0-dim, size-1 and empty", function()
  local v = rlist(12, -1, 1)
  local x = mk(v, { 3, 4 }, "f32")
  local xt = x:t()
  H.near(flat(xt:sum(1)), ref_reduce(flat(x), { 3, 4 }, { false, true }, "sum"), 1e-6)
  H.near(flat(xt:max(2)), ref_reduce(flat(x), { 3, 4 }, { true, false }, "max"), 1e-6)
  local e = ms.tensor({ 1, 2, 3 }):reshape { 3, 1 }:expand { 3, 4 }
  H.same_list(flat(e:sum(2)), { 4, 8, 12 })
  H.eq(ms.tensor(5):sum():item(), 5)
  H.eq(ms.tensor(5):sum(1):item(), 5)
  H.same_list(ms.ones(1, 3):sum(1):size(), { 3 })
  local z = ms.zeros(0, 3)
  H.same_list(flat(z:sum(1)), { 0, 0, 0 })
  H.same_list(z:sum(2):size(), { 0 })
  H.eq(z:prod():item(), 1)
  H.eq(z:mean():item() ~= z:mean():item(), true, "mean of nothing is NaN")
  H.raises(function() z:max() end, "max", "empty")
end)

H.case("dtypes: i64 sums exactly, f16/bf16 accumulate in float, mean of ints fails", function()
  local i = ms.tensor({ 2 ^ 40, 3, 5 }, { dtype = "i64" })
  H.eq(i:sum().dtype, "i64")
  H.eq(i:sum():item(), 2 ^ 40 + 8)
  H.eq(ms.tensor({ true, true, false }):sum():item(), 2)
  H.eq(ms.tensor({ 1, 2, 3 }, { dtype = "i32" }):prod():item(), 6)
  H.eq(ms.tensor({ 4, -2, 9 }, { dtype = "i32" }):max():item(), 9)
  H.raises(function() i:mean() end, "mean", "i64")
  local v = rlist(1000, 0, 1)
  for _, dt in ipairs { "f16", "bf16" } do
    local x = ms.tensor(v, { dtype = dt })
    local xv = flat(x)
    local s = 0
    for _, a in ipairs(xv) do s = s + a end
    H.eq(x:sum().dtype, dt)
    H.near(x:sum():item(), s, dt == "f16" and 1e-3 or 8e-3, dt)
    H.near(x:mean():item(), s / 1000, dt == "f16" and 1e-3 or 8e-3, dt)
  end
end)

H.case("f32 accuracy and the threaded paths", function()
  -- 2^20 copies of 0.1f: a naive float accumulator drifts by ~1%; we accumulate in double
  local n = 1048576
  local x = ms.full({ n }, 0.1)
  local f32 = 0.100000001490116119384765625
  H.near(x:sum():item(), n * f32, 1e-6)
  -- few outputs, long reductions (split over the reduced range), both layouts
  local a = ms.full({ 4, 65536 }, 0.25)
  H.same_list(flat(a:sum(2)), { 16384, 16384, 16384, 16384 })
  local b = ms.full({ 65536, 3 }, 0.5)
  H.same_list(flat(b:sum(1)), { 32768, 32768, 32768 })
  H.same_list(flat(b:var(1)), { 0, 0, 0 })
  -- many outputs (split over outputs)
  local c = ms.arange(3 * 20000):float():reshape { 20000, 3 }
  local s = flat(c:sum(2))
  H.eq(s[20000], 59997 + 59998 + 59999)
  local cs = flat(c:sum(1))
  H.near(cs[1], 3 * (19999 * 20000 / 2), 1e-7) -- exact in double, then rounded to f32
  -- NCHW bias-gradient layout: sum over {1, 3, 4}
  local g = ms.full({ 4, 3, 33, 35 }, 1)
  H.same_list(flat(g:sum { 1, 3, 4 }), { 4 * 33 * 35, 4 * 33 * 35, 4 * 33 * 35 })
  local mx = ms.arange(200000):float():reshape { 2, 100000 }
  H.same_list(flat(mx:amax(2)), { 99999, 199999 })
end)

H.case("max/min with dim give values and 1-based indices (first occurrence)", function()
  local x = ms.tensor { { 1, 5, 5, 2 }, { 7, 0, 7, -1 } }
  local v, i = x:max(2)
  H.same_list(flat(v), { 5, 7 })
  H.same_list(flat(i), { 2, 1 })
  H.eq(i.dtype, "i64")
  v, i = x:min(1)
  H.same_list(flat(v), { 1, 0, 5, -1 })
  H.same_list(flat(i), { 1, 2, 1, 2 })
  v, i = x:max(-1, true)
  H.same_list(v:size(), { 2, 1 })
  H.same_list(flat(x:argmax(2)), { 2, 1 })
  H.same_list(flat(x:argmin(1)), { 1, 2, 1, 2 })
  H.eq(x:argmax():item(), 5, "flat 1-based index")
  H.eq(x:argmin():item(), 8)
  H.eq(x:max():item(), 7)
  -- argmax over channels of NCHW, the segmentation prediction
  local logits = ms.tensor(rlist(2 * 5 * 3 * 4, -1, 1)):reshape { 2, 5, 3, 4 }
  local pred = logits:argmax(2)
  H.same_list(pred:size(), { 2, 3, 4 })
  local lv, pv = flat(logits), flat(pred)
  for nn = 0, 1 do for p = 0, 11 do
    local best, bi = -math.huge, 0
    for c = 0, 4 do
      local val = lv[nn * 60 + c * 12 + p + 1]
      if val > best then best, bi = val, c + 1 end
    end
    H.eq(pv[nn * 12 + p + 1], bi)
  end end
  local nan = ms.tensor { 1, 0 / 0, 3 }
  local nv, ni = nan:max(1)
  H.eq(nv:item() ~= nv:item(), true, "NaN wins max")
  H.eq(ni:item(), 2)
  local iv, ii = ms.tensor({ 3, 9, 9 }, { dtype = "i64" }):max(1)
  H.eq(iv:item(), 9)
  H.eq(ii:item(), 2)
  H.same_list(flat(x:max(ms.tensor { 6, 6, 6, 6 })), { 6, 6, 6, 6, 7, 6, 7, 6 })
end)

H.case("all, any, norm", function()
  local x = ms.tensor { { 1, 0, 2 }, { 3, 4, 5 } }
  H.eq(x:all():item(), false)
  H.eq(x:any():item(), true)
  H.same_list(flat(x:all(2)), { false, true })
  H.same_list(flat(x:any(1)), { true, true, true })
  H.eq(ms.zeros(3):any():item(), false)
  H.near(x:norm():item(), math.sqrt(1 + 4 + 9 + 16 + 25), 1e-6)
  H.near(flat(x:norm(2, 2)), { math.sqrt(5), math.sqrt(50) }, 1e-6)
  H.near(x:norm(1):item(), 15, 1e-6)
end)

H.case("bad dims and dtypes raise errors naming the op", function()
  local x = ms.zeros(2, 3)
  H.raises(function() x:sum(3) end, "sum", "dim 3", "[2, 3]")
  H.raises(function() x:sum(0) end, "sum", "1-based")
  H.raises(function() x:mean { 1, 1 } end, "mean", "twice")
  H.raises(function() x:max(5) end, "max", "out of range")
  H.raises(function() ms.tensor({ true }):max(1) end, "max", "bool")
  H.raises(function() x:norm(3) end, "norm")
  H.raises(function() ms.zeros(0, 2):max(1) end, "max", "empty")
end)

local function rt(shape, lo, hi)
  local n = 1
  for _, s in ipairs(shape) do n = n * s end
  return mk(rlist(n, lo or -1, hi or 1), shape, "f64", true)
end

H.case("gradcheck sum, mean, var, std, prod", function()
  for _, dims in ipairs { { nil }, { 1 }, { 2 }, { { 1, 3 } }, { -1 } } do
    local d = dims[1]
    gc(function(x) return x:sum(d) end, { rt { 2, 3, 4 } })
    gc(function(x) return x:mean(d, true) end, { rt { 2, 3, 4 } })
    gc(function(x) return x:var(d) end, { rt { 2, 3, 4 } })
    gc(function(x) return x:var(d, { correction = 0, keepdim = true }) end, { rt { 2, 3, 4 } })
    gc(function(x) return x:std(d) end, { rt { 2, 3, 4 } })
    gc(function(x) return x:prod(d) end, { rt({ 2, 3, 4 }, 0.5, 1.5) })
  end
  gc(function(x) return x:t():sum(1) end, { rt { 3, 4 } })
  gc(function(x) return x:sum() end, { rt {} })
end)

H.case("gradcheck max/min (with and without dim) and norm", function()
  -- distinct values so the selected element is stable under the finite differences
  local function distinct(shape)
    local n = 1
    for _, s in ipairs(shape) do n = n * s end
    local v = {}
    for i = 1, n do v[i] = ((i * 7) % n) / n + 0.01 * rnd() end
    return mk(v, shape, "f64", true)
  end
  gc(function(x) return x:max() end, { distinct { 3, 4 } })
  gc(function(x) return x:min() end, { distinct { 3, 4 } })
  gc(function(x) return (x:max(1)) end, { distinct { 3, 4 } })
  gc(function(x) return (x:min(2, true)) end, { distinct { 3, 4 } })
  gc(function(x) return (x:max(-1)) end, { distinct { 2, 3, 5 } })
  gc(function(x) return x:norm() end, { rt { 3, 4 } })
  gc(function(x) return x:norm(2, 2, true) end, { rt { 3, 4 } })
  gc(function(x) return x:norm(1, 1) end, { rt({ 3, 4 }, 0.1, 1) })
  -- the gradient of a zero norm is 0, not NaN
  local z = ms.zeros(3, { dtype = "f64", requires_grad = true })
  z:norm():backward()
  H.same_list(flat(z.grad), { 0, 0, 0 })
  -- ties in a full max share the gradient
  local t = ms.tensor({ 1, 3, 3 }, { dtype = "f64", requires_grad = true })
  t:max():backward()
  H.same_list(flat(t.grad), { 0, 0.5, 0.5 })
end)

H.case("gradcheck amax/amin over dims; ties share the gradient evenly", function()
  local function distinct(shape)
    local n = 1
    for _, s in ipairs(shape) do n = n * s end
    local v = {}
    for i = 1, n do v[i] = ((i * 7) % n) / n + 0.01 * rnd() end
    return mk(v, shape, "f64", true)
  end
  gc(function(x) return x:amax(1) end, { distinct { 3, 4 } })
  gc(function(x) return x:amin(2, true) end, { distinct { 3, 4 } })
  gc(function(x) return x:amax({ 1, 3 }) end, { distinct { 2, 3, 5 } })
  gc(function(x) return ms.amin(x, -1) end, { distinct { 2, 3, 5 } })
  -- ties: row 1 has two maxima (1/2 each), row 2 three minima for amin (1/3 each)
  local t = ms.tensor({ { 1, 4, 4, 0 }, { 2, 2, 5, 2 } }, { dtype = "f64", requires_grad = true })
  t:amax(2):backward(ms.tensor({ 10, 6 }, { dtype = "f64" }))
  H.same_list(flat(t.grad), { 0, 5, 5, 0, 0, 0, 6, 0 })
  t.grad = nil
  t:amin(2):backward(ms.tensor({ 10, 6 }, { dtype = "f64" }))
  H.same_list(flat(t.grad), { 0, 0, 0, 10, 2, 2, 0, 2 })
  -- over two dims at once: the 2 maxima of the whole slice share it
  t.grad = nil
  t:amax({ 1, 2 }, true):backward(ms.tensor({ { 8 } }, { dtype = "f64" }))
  H.same_list(flat(t.grad), { 0, 0, 0, 0, 0, 0, 8, 0 })
  -- f32 follows the same rule
  local u = ms.tensor({ 3, 3, 1 }, { requires_grad = true })
  u:amax(1):backward()
  H.same_list(flat(u.grad), { 0.5, 0.5, 0 })
end)

H.done()
