-- test_pool.lua: max/avg/adaptive-avg pooling against naive f64 Lua references and hand-computed
-- cases (ceil_mode, count_include_pad, padding), gradient checks, dtypes and bad input.
local ms = require "moonseg"
local H = require "harness"
local G = require "moonseg.gradcheck"
local F = ms.functional

local rnd = H.rng(11)
local function numel(shape) local n = 1 for _, s in ipairs(shape) do n = n * s end return n end
local function rand(shape, dtype, rg) return H.rand_tensor(rnd, shape, dtype, rg) end
local vals = H.values

-- Output size written out independently of the C code: PyTorch's formula and ceil rule.
local function out_size(n, k, s, p, ceil_mode)
  local o
  if ceil_mode then o = math.ceil((n + 2 * p - k) / s) + 1 else o = math.floor((n + 2 * p - k) / s) + 1 end
  if ceil_mode and (o - 1) * s >= n + p then o = o - 1 end
  return o
end

-- Naive pooling of flat x [N, C, H, W] read with 1-based (plane, row, col).
local function pool_ref(x, shape, k, s, p, mode, ceil_mode, cip)
  local N, C, Hh, W = shape[1], shape[2], shape[3], shape[4]
  local oh, ow = out_size(Hh, k[1], s[1], p[1], ceil_mode), out_size(W, k[2], s[2], p[2], ceil_mode)
  local y = {}
  for q = 0, N * C - 1 do
    for i = 0, oh - 1 do
      for j = 0, ow - 1 do
        local best, sum, cnt = -math.huge, 0, 0
        local hs, ws = i * s[1] - p[1], j * s[2] - p[2]
        -- Window clipped to the padded input (the divisor with count_include_pad).
        local he, we = math.min(hs + k[1], Hh + p[1]), math.min(ws + k[2], W + p[2])
        for a = hs, he - 1 do
          for b = ws, we - 1 do
            if a >= 0 and a < Hh and b >= 0 and b < W then
              local v = x[q * Hh * W + a * W + b + 1]
              if v > best then best = v end
              sum, cnt = sum + v, cnt + 1
            end
          end
        end
        local div = cip and (he - hs) * (we - ws) or cnt
        y[#y + 1] = mode == "max" and best or sum / div
      end
    end
  end
  return y, { N, C, oh, ow }
end

local function adaptive_ref(x, shape, oh, ow)
  local N, C, Hh, W = shape[1], shape[2], shape[3], shape[4]
  local y = {}
  for q = 0, N * C - 1 do
    for i = 0, oh - 1 do
      local hs, he = math.floor(i * Hh / oh), math.ceil((i + 1) * Hh / oh)
      for j = 0, ow - 1 do
        local ws, we = math.floor(j * W / ow), math.ceil((j + 1) * W / ow)
        local sum = 0
        for a = hs, he - 1 do for b = ws, we - 1 do sum = sum + x[q * Hh * W + a * W + b + 1] end end
        y[#y + 1] = sum / ((he - hs) * (we - ws))
      end
    end
  end
  return y
end

local configs = {
  -- shape, kernel, stride, padding, ceil_mode, count_include_pad
  { { 2, 3, 7, 6 }, { 3, 3 }, { 2, 2 }, { 1, 1 }, false, true },
  { { 1, 2, 5, 5 }, { 2, 2 }, { 2, 2 }, { 1, 1 }, true, true },
  { { 1, 2, 5, 5 }, { 2, 2 }, { 2, 2 }, { 0, 0 }, true, false },
  { { 2, 1, 6, 9 }, { 3, 2 }, { 2, 3 }, { 1, 0 }, true, false },
  { { 1, 1, 4, 4 }, { 3, 3 }, { 1, 1 }, { 1, 1 }, false, false },
  { { 1, 1, 1, 1 }, { 1, 1 }, { 1, 1 }, { 0, 0 }, false, true },
  { { 3, 2, 1, 5 }, { 1, 3 }, { 1, 2 }, { 0, 1 }, true, true },
}

H.case("output sizes: PyTorch's ceil rule, hand-computed", function()
  -- 5 wide, k2 s2 p1: ceil gives 3 windows (a 4th would start at 6 >= 5 + 1, in the right pad).
  H.same_list(F.max_pool2d(ms.zeros(1, 1, 5, 5), 2, 2, 1, { ceil_mode = true }):size(), { 1, 1, 3, 3 })
  -- 5 wide, k2 s2 p0: floor gives 2, ceil 3 (the last window starts at 4, inside).
  H.same_list(F.max_pool2d(ms.zeros(1, 1, 5, 5), 2):size(), { 1, 1, 2, 2 })
  H.same_list(F.max_pool2d(ms.zeros(1, 1, 5, 5), 2, nil, nil, { ceil_mode = true }):size(), { 1, 1, 3, 3 })
  -- 6 x 9, k3 s2 p1: floor (6+2-3)/2+1 = 3, ceil 4; k3 s2 p1 on 9: 5 both ways.
  H.same_list(F.avg_pool2d(ms.zeros(1, 1, 6, 9), 3, 2, 1, { ceil_mode = true }):size(), { 1, 1, 4, 5 })
  H.same_list(F.avg_pool2d(ms.zeros(1, 1, 6, 9), 3, 2, 1):size(), { 1, 1, 3, 5 })
end)

H.case("max_pool2d values against the naive reference (f64, f32)", function()
  for _, cfg in ipairs(configs) do
    for _, dt in ipairs { "f64", "f32" } do
      local x = rand(cfg[1], dt)
      local y = F.max_pool2d(x, cfg[2], cfg[3], cfg[4], { ceil_mode = cfg[5] })
      local yr, sh = pool_ref(vals(x), cfg[1], cfg[2], cfg[3], cfg[4], "max", cfg[5])
      H.same_list(y:size(), sh)
      H.near(vals(y), yr, 0, dt)
    end
  end
end)

H.case("avg_pool2d values: count_include_pad true/false, ceil_mode", function()
  for _, cfg in ipairs(configs) do
    for _, dt in ipairs { "f64", "f32" } do
      local x = rand(cfg[1], dt)
      local y = F.avg_pool2d(x, cfg[2], cfg[3], cfg[4], { ceil_mode = cfg[5], count_include_pad = cfg[6] })
      local yr, sh = pool_ref(vals(x), cfg[1], cfg[2], cfg[3], cfg[4], "avg", cfg[5], cfg[6])
      H.same_list(y:size(), sh)
      H.near(vals(y), yr, dt == "f64" and 1e-12 or 1e-6, dt)
    end
  end
end)

H.case("avg_pool2d hand-computed: 2x2 input, kernel 2, stride 1, padding 1", function()
  local x = ms.tensor({ { { { 1, 2 }, { 3, 4 } } } })
  -- With padding counted every window divides by 4; without, by the inside elements.
  H.near(vals(F.avg_pool2d(x, 2, 1, 1)), { 0.25, 0.75, 0.5, 1, 2.5, 1.5, 0.75, 1.75, 1 }, 1e-7)
  H.near(vals(F.avg_pool2d(x, 2, 1, 1, { count_include_pad = false })),
    { 1, 1.5, 2, 2, 2.5, 3, 3, 3.5, 4 }, 1e-7)
  -- ceil_mode on ones: the clipped last window divides by its in-input size.
  H.near(vals(F.avg_pool2d(ms.ones(1, 1, 5, 5), 2, 2, 0, { ceil_mode = true })), { 1, 1, 1, 1, 1, 1, 1, 1, 1 }, 0)
  H.near(vals(F.max_pool2d(x, 2, 1, 1)), { 1, 2, 2, 3, 4, 4, 3, 4, 4 }, 0)
end)

H.case("adaptive_avg_pool2d: divisible, non-divisible and upsampling sizes", function()
  for _, cfg in ipairs { { { 2, 3, 6, 4 }, 3, 2 }, { { 1, 2, 5, 7 }, 3, 2 }, { { 1, 1, 2, 3 }, 4, 5 },
    { { 2, 2, 7, 7 }, 1, 1 }, { { 1, 1, 10, 3 }, 4, 3 } } do
    for _, dt in ipairs { "f64", "f32" } do
      local x = rand(cfg[1], dt)
      local y = F.adaptive_avg_pool2d(x, { cfg[2], cfg[3] })
      H.same_list(y:size(), { cfg[1][1], cfg[1][2], cfg[2], cfg[3] })
      H.near(vals(y), adaptive_ref(vals(x), cfg[1], cfg[2], cfg[3]), dt == "f64" and 1e-12 or 1e-6)
    end
  end
  -- Hand-computed: 5 -> 3 windows rows [0,2), [1,4), [3,5) on a column 1..5.
  local col = ms.tensor({ 1, 2, 3, 4, 5 }):view(1, 1, 5, 1)
  H.near(vals(F.adaptive_avg_pool2d(col, { 3, 1 })), { 1.5, 3, 4.5 }, 1e-7)
  H.same_list(F.adaptive_avg_pool2d(ms.ones(1, 2, 4, 4), 2):size(), { 1, 2, 2, 2 })
end)

H.case("non-contiguous inputs and large f32 (parallel planes)", function()
  local x = rand { 2, 3, 6, 8 }
  local xt = x:transpose(3, 4) -- [2, 3, 8, 6]
  H.eq(xt:is_contiguous(), false)
  local xv, sh = vals(xt), { 2, 3, 8, 6 }
  H.near(vals(F.max_pool2d(xt, 3, 2, 1)), (pool_ref(xv, sh, { 3, 3 }, { 2, 2 }, { 1, 1 }, "max", false)), 0)
  H.near(vals(F.avg_pool2d(xt, 2)), (pool_ref(xv, sh, { 2, 2 }, { 2, 2 }, { 0, 0 }, "avg", false, true)), 1e-12)
  H.near(vals(F.adaptive_avg_pool2d(xt, { 3, 4 })), adaptive_ref(xv, sh, 3, 4), 1e-12)
  local big = rand({ 4, 8, 20, 21 }, "f32")
  local bsh = { 4, 8, 20, 21 }
  H.near(vals(big:max_pool2d(3, 2, 1, { ceil_mode = true })),
    (pool_ref(vals(big), bsh, { 3, 3 }, { 2, 2 }, { 1, 1 }, "max", true)), 0)
  H.near(vals(big:avg_pool2d(3, 2, 1)), (pool_ref(vals(big), bsh, { 3, 3 }, { 2, 2 }, { 1, 1 }, "avg", false, true)), 1e-6)
end)

H.case("max_pool2d propagates NaN", function()
  local nan = 0 / 0
  local x = ms.tensor({ { { { 1, nan }, { 3, 4 } } } })
  local y = F.max_pool2d(x, 2):item()
  H.eq(y ~= y, true, "nan expected")
end)

H.case("f16 and bf16 pooling through float", function()
  for _, dt in ipairs { "f16", "bf16" } do
    local x = rand({ 1, 2, 5, 6 }, dt)
    local xv = vals(x)
    local sh = { 1, 2, 5, 6 }
    local y = F.max_pool2d(x, 2, 2, 1, { ceil_mode = true })
    H.eq(y:type(), dt)
    H.near(vals(y), (pool_ref(xv, sh, { 2, 2 }, { 2, 2 }, { 1, 1 }, "max", true)), 0)
    local tol = dt == "f16" and 2e-3 or 1e-2
    H.near(vals(F.avg_pool2d(x, 3, 1, 1)), (pool_ref(xv, sh, { 3, 3 }, { 1, 1 }, { 1, 1 }, "avg", false, true)), tol)
    H.near(vals(F.adaptive_avg_pool2d(x, { 2, 4 })), adaptive_ref(xv, sh, 2, 4), tol)
    local gx = x:detach():requires_grad_(true)
    F.avg_pool2d(gx, 2):backward(ms.ones({ 1, 2, 2, 3 }, { dtype = dt }))
    H.eq(gx.grad:type(), dt)
  end
end)

H.case("gradchecks: max/avg pools over all configs, adaptive pools", function()
  local n = 0
  for _, cfg in ipairs(configs) do
    G.gradcheck(function(x) return F.max_pool2d(x, cfg[2], cfg[3], cfg[4], { ceil_mode = cfg[5] }) end,
      { rand(cfg[1], "f64", true) })
    G.gradcheck(function(x)
      return F.avg_pool2d(x, cfg[2], cfg[3], cfg[4], { ceil_mode = cfg[5], count_include_pad = cfg[6] })
    end, { rand(cfg[1], "f64", true) })
    n = n + 2
  end
  for _, cfg in ipairs { { { 1, 2, 5, 7 }, 3, 2 }, { { 1, 1, 2, 3 }, 4, 5 }, { { 2, 1, 4, 4 }, 2, 2 },
    { { 1, 1, 3, 5 }, 1, 1 } } do
    G.gradcheck(function(x) return F.adaptive_avg_pool2d(x, { cfg[2], cfg[3] }) end,
      { rand(cfg[1], "f64", true) })
    n = n + 1
  end
  H.eq(n, 18)
end)

H.case("max_pool2d backward routes each gradient to the argmax (overlapping windows add)", function()
  local x = ms.tensor({ { { { 1, 5, 2 }, { 0, 3, 4 }, { 6, 1, 0 } } } }, { dtype = "f64" }):requires_grad_(true)
  local y = F.max_pool2d(x, 2, 1) -- windows: 5, 5, 6, 4
  H.near(vals(y), { 5, 5, 6, 4 }, 0)
  y:backward(ms.tensor({ 1, 2, 3, 4 }, { dtype = "f64" }):view(1, 1, 2, 2))
  H.near(vals(x.grad), { 0, 3, 0, 0, 0, 4, 3, 0, 0 }, 0)
end)

H.case("bad input names op and shapes", function()
  H.raises(function() F.max_pool2d(ms.zeros(3, 4, 4), 2) end, "max_pool2d", "4-d", "[3, 4, 4]")
  H.raises(function() F.avg_pool2d(ms.zeros(3, 4, 4), 2) end, "avg_pool2d", "4-d", "[3, 4, 4]")
  H.raises(function() F.adaptive_avg_pool2d(ms.zeros(3, 4, 4), 2) end, "adaptive_avg_pool2d", "[3, 4, 4]")
  H.raises(function() F.max_pool2d(ms.zeros(1, 1, 2, 2), 5) end, "max_pool2d", "larger than the padded input", "[1, 1, 2, 2]")
  H.raises(function() F.avg_pool2d(ms.zeros(1, 1, 2, 3), { 2, 4 }) end, "avg_pool2d", "larger", "[1, 1, 2, 3]")
  H.raises(function() F.max_pool2d(ms.zeros(1, 1, 8, 8), 2, 2, 2) end, "max_pool2d", "half of kernel")
  H.raises(function() F.max_pool2d(ms.zeros(1, 1, 8, 8), 2, 0) end, "max_pool2d", "stride")
  H.raises(function() F.max_pool2d(ms.zeros(1, 1, 8, 8), { 2, 2, 2 }) end, "max_pool2d", "kernel")
  H.raises(function() F.max_pool2d(ms.zeros({ 1, 1, 4, 4 }, { dtype = "i64" }), 2) end, "max_pool2d", "i64")
  H.raises(function() F.adaptive_avg_pool2d(ms.zeros(1, 1, 4, 4), { 0, 2 }) end, "adaptive_avg_pool2d", "output size")
end)

H.done()
