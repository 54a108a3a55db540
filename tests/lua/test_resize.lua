-- test_resize.lua: F.interpolate (bilinear with both align_corners settings, legacy nearest)
-- against hand-derived PyTorch results and a naive f64 Lua reference; gradchecks; bad input.
local ms = require "moonseg"
local H = require "harness"
local G = require "moonseg.gradcheck"
local F = ms.functional

local rnd = H.rng(5)
local function numel(shape) local n = 1 for _, s in ipairs(shape) do n = n * s end return n end
local function rand(shape, dtype, rg) return H.rand_tensor(rnd, shape, dtype, rg) end
local vals = H.values

-- Source taps of one axis following PyTorch's definitions (written out in Lua).
local function taps(n_in, n_out, mode, ac)
  local t = {}
  for d = 0, n_out - 1 do
    if mode == "nearest" then
      local s = math.min(math.floor(d * (n_in / n_out)), n_in - 1)
      t[d] = { s, s, 1, 0 }
    else
      local src
      if ac then
        src = n_out > 1 and d * (n_in - 1) / (n_out - 1) or 0
      else
        src = math.max((d + 0.5) * n_in / n_out - 0.5, 0)
      end
      local a = math.min(math.floor(src), n_in - 1)
      local b = math.min(a + 1, n_in - 1)
      t[d] = { a, b, 1 - (src - a), src - a }
    end
  end
  return t
end

local function resize_ref(x, shape, oh, ow, mode, ac)
  local N, C, Hh, W = shape[1], shape[2], shape[3], shape[4]
  local th, tw = taps(Hh, oh, mode, ac), taps(W, ow, mode, ac)
  local y = {}
  for q = 0, N * C - 1 do
    local function at(a, b) return x[q * Hh * W + a * W + b + 1] end
    for i = 0, oh - 1 do
      local h = th[i]
      for j = 0, ow - 1 do
        local w = tw[j]
        y[#y + 1] = h[3] * (w[3] * at(h[1], w[1]) + w[4] * at(h[1], w[2])) +
                    h[4] * (w[3] * at(h[2], w[1]) + w[4] * at(h[2], w[2]))
      end
    end
  end
  return y
end

local x22 = ms.tensor({ { { { 1, 2 }, { 3, 4 } } } }, { dtype = "f64" })

H.case("bilinear 2x2 -> 4x4, align_corners=false (hand-derived PyTorch result)", function()
  -- Source coordinate (d + 0.5) * 0.5 - 0.5 clamped at 0: 0, 0.25, 0.75, 1.25 (the last
  -- clamps to the edge). Rows are therefore [1, 1.25, 1.75, 2] and [3, 3.25, 3.75, 4] mixed
  -- with weights 1, .75/.25, .25/.75, 1 -- the well-known output of
  -- torch.nn.functional.interpolate(x, size=(4, 4), mode="bilinear", align_corners=False).
  local y = F.interpolate(x22, { size = { 4, 4 } }, "bilinear", false)
  H.near(vals(y), { 1, 1.25, 1.75, 2, 1.5, 1.75, 2.25, 2.5, 2.5, 2.75, 3.25, 3.5, 3, 3.25, 3.75, 4 }, 1e-12)
end)

H.case("bilinear 2x2 -> 4x4, align_corners=true (hand-derived)", function()
  -- Source coordinate d * (2 - 1) / (4 - 1) = d / 3: value = 1 + col / 3 + 2 * row / 3.
  local y = F.interpolate(x22, { size = 4 }, "bilinear", true)
  local want = {}
  for r = 0, 3 do for c = 0, 3 do want[#want + 1] = 1 + c / 3 + 2 * r / 3 end end
  H.near(vals(y), want, 1e-12)
end)

H.case("nearest (legacy): hand-derived indices", function()
  -- 2 -> 3: floor(d * 2/3) = 0, 0, 1.
  H.near(vals(F.interpolate(x22, { size = 3 }, "nearest")), { 1, 1, 2, 1, 1, 2, 3, 3, 4 }, 0)
  -- 5 -> 2: floor(d * 2.5) = 0, 2; 3 -> 5: floor(d * 0.6) = 0, 0, 1, 1, 2.
  local row = ms.tensor({ 10, 11, 12, 13, 14 }):view(1, 1, 1, 5)
  H.near(vals(F.interpolate(row, { size = { 1, 2 } })), { 10, 12 }, 0)
  local row3 = ms.tensor({ 10, 11, 12 }):view(1, 1, 1, 3)
  H.near(vals(F.interpolate(row3, { size = { 1, 5 } })), { 10, 10, 11, 11, 12 }, 0)
  -- scale_factor 2 doubles each pixel.
  H.near(vals(F.interpolate(x22, { scale_factor = 2 })), { 1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4 }, 0)
end)

H.case("bilinear downsampling and size-1 cases (hand-derived)", function()
  -- 1 x 4 -> 1 x 2, align false: sources 0.5 and 2.5 -> means of neighbours.
  local row = ms.tensor({ 1, 3, 7, 9 }, { dtype = "f64" }):view(1, 1, 1, 4)
  H.near(vals(F.interpolate(row, { size = { 1, 2 } }, "bilinear")), { 2, 8 }, 1e-12)
  -- align true: sources 0 and 3 -> the corners.
  H.near(vals(F.interpolate(row, { size = { 1, 2 } }, "bilinear", true)), { 1, 9 }, 1e-12)
  -- out 1 with align true reads element 0; align false reads around the centre (src 1.5).
  H.near(vals(F.interpolate(row, { size = { 1, 1 } }, "bilinear", true)), { 1 }, 1e-12)
  H.near(vals(F.interpolate(row, { size = { 1, 1 } }, "bilinear", false)), { 5 }, 1e-12)
  -- A 1x1 input broadcasts its value.
  H.near(vals(F.interpolate(ms.full({ 1, 1, 1, 1 }, 3), { size = { 2, 3 } }, "bilinear")), { 3, 3, 3, 3, 3, 3 }, 0)
end)

H.case("random sizes against the reference (f64, f32, non-contiguous)", function()
  for _, cfg in ipairs { { { 2, 3, 5, 7 }, 9, 4 }, { { 1, 2, 8, 8 }, 3, 5 }, { { 1, 1, 3, 4 }, 3, 4 },
    { { 2, 1, 6, 5 }, 12, 10 }, { { 1, 1, 1, 3 }, 4, 1 } } do
    for _, dt in ipairs { "f64", "f32" } do
      local x = rand(cfg[1], dt)
      local xv = vals(x)
      local tol = dt == "f64" and 1e-12 or 1e-5
      for _, m in ipairs { { "bilinear", false }, { "bilinear", true }, { "nearest" } } do
        local y = F.interpolate(x, { size = { cfg[2], cfg[3] } }, m[1], m[2])
        H.same_list(y:size(), { cfg[1][1], cfg[1][2], cfg[2], cfg[3] })
        H.near(vals(y), resize_ref(xv, cfg[1], cfg[2], cfg[3], m[1], m[2]), tol, m[1] .. tostring(m[2]))
      end
    end
  end
  local x = rand { 2, 3, 4, 6 }
  local xt = x:transpose(3, 4)
  H.eq(xt:is_contiguous(), false)
  local sh = { 2, 3, 6, 4 }
  H.near(vals(xt:interpolate({ size = { 9, 7 } }, "bilinear")), resize_ref(vals(xt), sh, 9, 7, "bilinear", false), 1e-12)
  H.near(vals(xt:interpolate({ scale_factor = { 1.5, 0.5 } })), resize_ref(vals(xt), sh, 9, 2, "nearest"), 0)
  local big = rand({ 2, 8, 16, 16 }, "f32")
  H.near(vals(F.interpolate(big, { size = { 64, 64 } }, "bilinear")),
    resize_ref(vals(big), { 2, 8, 16, 16 }, 64, 64, "bilinear", false), 1e-5)
end)

H.case("f16 and bf16 through float", function()
  for _, dt in ipairs { "f16", "bf16" } do
    local x = rand({ 1, 2, 3, 5 }, dt)
    local y = F.interpolate(x, { size = { 6, 4 } }, "bilinear", true)
    H.eq(y:type(), dt)
    H.near(vals(y), resize_ref(vals(x), { 1, 2, 3, 5 }, 6, 4, "bilinear", true), dt == "f16" and 2e-3 or 1e-2)
  end
end)

H.case("gradchecks: bilinear both align modes up/down, nearest, size 1", function()
  local n = 0
  for _, cfg in ipairs { { { 1, 2, 3, 4 }, 5, 7 }, { { 2, 1, 5, 6 }, 3, 2 }, { { 1, 1, 1, 1 }, 3, 2 },
    { { 1, 1, 4, 3 }, 1, 1 } } do
    for _, m in ipairs { { "bilinear", false }, { "bilinear", true }, { "nearest" } } do
      G.gradcheck(function(x) return F.interpolate(x, { size = { cfg[2], cfg[3] } }, m[1], m[2]) end,
        { rand(cfg[1], "f64", true) })
      n = n + 1
    end
  end
  H.eq(n, 12)
end)

H.case("bad input names op and shapes", function()
  H.raises(function() F.interpolate(ms.zeros(2, 3, 4), { size = 4 }, "bilinear") end, "interpolate", "4-d", "[2, 3, 4]")
  H.raises(function() F.interpolate(x22, { size = 4 }, "nearest", true) end, "interpolate", "align_corners")
  H.raises(function() F.interpolate(x22, { size = 4 }, "bicubic") end, "interpolate", "bicubic")
  H.raises(function() F.interpolate(x22, { size = 4, scale_factor = 2 }) end, "interpolate", "either")
  H.raises(function() F.interpolate(x22, {}) end, "interpolate", "size")
  H.raises(function() F.interpolate(x22, { size = { 0, 3 } }, "bilinear") end, "interpolate", "(0, 3)", "[1, 1, 2, 2]")
  H.raises(function() F.interpolate(x22, { scale_factor = 0.4 }) end, "interpolate", "(0, 0)")
  H.raises(function() F.interpolate(ms.zeros({ 1, 1, 2, 2 }, { dtype = "u8" }), { size = 3 }) end, "interpolate", "u8")
end)

H.done()
