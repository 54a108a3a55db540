-- test_cnn_ops.lua: the ops the CNN models (ResNet_vd, DeepLabV3+, PSPNet, UNet, Xception)
-- lean on, in the shapes they use them: dilated and dilated depthwise convolution (including
-- ASPP rates larger than the feature map), 3x3/2 max pool with padding, 2x2/2 ceil-mode
-- average pool (ResNet-vd's shortcut), adaptive average pooling with uneven bins (PSPNet's
-- 1, 2, 3, 6) and channel dropout; values against naive references, f64 gradient checks.
local H = require "harness"
local ms = require "moonseg"
local G = require "moonseg.gradcheck"
local F = ms.functional

ms.set_num_threads(2)
local rnd = H.rng(7)
local function rand(shape, dtype, rg) return H.rand_tensor(rnd, shape, dtype, rg) end

-- Naive grouped, dilated, strided, padded convolution on flat f64 lists.
local function conv_ref(x, xs, w, ws, o)
  local N, Cin, Hh, W = xs[1], xs[2], xs[3], xs[4]
  local O, cg, kh, kw = ws[1], ws[2], ws[3], ws[4]
  local s, p, d, g = o.stride or 1, o.padding or 0, o.dilation or 1, o.groups or 1
  local OH = math.floor((Hh + 2 * p - d * (kh - 1) - 1) / s) + 1
  local OW = math.floor((W + 2 * p - d * (kw - 1) - 1) / s) + 1
  local og = O / g
  local y = {}
  for n = 0, N - 1 do for oc = 0, O - 1 do for i = 0, OH - 1 do for j = 0, OW - 1 do
    local acc, grp = 0, math.floor(oc / og)
    for c = 0, cg - 1 do
      local ic = grp * cg + c
      for a = 0, kh - 1 do for b = 0, kw - 1 do
        local yy, xx = i * s - p + a * d, j * s - p + b * d
        if yy >= 0 and yy < Hh and xx >= 0 and xx < W then
          acc = acc + x[((n * Cin + ic) * Hh + yy) * W + xx + 1] * w[((oc * cg + c) * kh + a) * kw + b + 1]
        end
      end end
    end
    y[#y + 1] = acc
  end end end end
  return y, { N, O, OH, OW }
end

local conv_cases = {
  -- name, x shape, w shape, opts
  { "depthwise dilation 2", { 2, 4, 9, 8 }, { 4, 1, 3, 3 }, { padding = 2, dilation = 2, groups = 4 } },
  { "depthwise dilation 4 stride 2", { 1, 3, 11, 10 }, { 3, 1, 3, 3 }, { stride = 2, padding = 4, dilation = 4, groups = 3 } },
  { "dilation 2 OS8 stage", { 1, 6, 8, 8 }, { 5, 6, 3, 3 }, { padding = 2, dilation = 2 } },
  -- ASPP at output stride 8 on a small crop: rate 12 and 36 exceed the 5x6 map.
  { "dilation 12 > map", { 1, 3, 5, 6 }, { 4, 3, 3, 3 }, { padding = 12, dilation = 12 } },
  { "depthwise dilation 36 > map", { 2, 4, 5, 6 }, { 4, 1, 3, 3 }, { padding = 36, dilation = 36, groups = 4 } },
}

for _, cfg in ipairs(conv_cases) do
  H.case("conv2d values (f32 oneDNN, f64 im2col) " .. cfg[1], function()
    local x64, w64 = rand(cfg[2]), rand(cfg[3])
    local ref, shape = conv_ref(H.values(x64), cfg[2], H.values(w64), cfg[3], cfg[4])
    local y64 = F.conv2d(x64, w64, nil, cfg[4])
    H.same_list(y64:size(), shape)
    H.near(H.values(y64), ref, 1e-12)
    local y32 = F.conv2d(x64:to("f32"), w64:to("f32"), nil, cfg[4])
    H.near(H.values(y32), ref, 1e-4)
  end)
end

H.case("rate beyond the map: only the centre tap sees the input (= a 1x1 conv)", function()
  local x, w = rand({ 1, 3, 5, 6 }, "f32"), rand({ 4, 3, 3, 3 }, "f32")
  local centre = w:narrow(3, 2, 1):narrow(4, 2, 1):contiguous()
  H.near(H.values(F.conv2d(x, w, nil, { padding = 24, dilation = 24 })),
    H.values(F.conv2d(x, centre)), 1e-5)
end)

H.case("gradchecks: dilated, dilated depthwise, rate beyond the map (x, w, b)", function()
  local n = 0
  for _, cfg in ipairs {
    { { 1, 3, 6, 5 }, { 3, 1, 3, 3 }, { padding = 2, dilation = 2, groups = 3 } },
    { { 1, 2, 7, 7 }, { 2, 1, 3, 3 }, { stride = 2, padding = 3, dilation = 3, groups = 2 } },
    { { 2, 2, 5, 4 }, { 3, 2, 3, 3 }, { padding = 2, dilation = 2 } },
    { { 1, 2, 3, 4 }, { 2, 1, 3, 3 }, { padding = 6, dilation = 6, groups = 2 } },
  } do
    local x, w, b = rand(cfg[1], "f64", true), rand(cfg[2], "f64", true), rand({ cfg[2][1] }, "f64", true)
    G.gradcheck(function(a, c, d) return F.conv2d(a, c, d, cfg[3]) end, { x, w, b })
    n = n + 1
  end
  H.eq(n, 4)
end)

-- Pools: naive references (PyTorch's ceil rule; exclusive average = padding not counted).
local function pool_ref(x, shape, k, s, p, mode, ceil_mode)
  local N, C, Hh, W = shape[1], shape[2], shape[3], shape[4]
  local function osz(n)
    local o = (ceil_mode and math.ceil or math.floor)((n + 2 * p - k) / s) + 1
    if ceil_mode and (o - 1) * s >= n + p then o = o - 1 end
    return o
  end
  local OH, OW = osz(Hh), osz(W)
  local y = {}
  for n = 0, N - 1 do for c = 0, C - 1 do for i = 0, OH - 1 do for j = 0, OW - 1 do
    local acc, cnt = mode == "max" and -math.huge or 0, 0
    for a = 0, k - 1 do for b = 0, k - 1 do
      local yy, xx = i * s - p + a, j * s - p + b
      if yy >= 0 and yy < Hh and xx >= 0 and xx < W then
        local v = x[((n * C + c) * Hh + yy) * W + xx + 1]
        if mode == "max" then acc = math.max(acc, v) else acc, cnt = acc + v, cnt + 1 end
      end
    end end
    y[#y + 1] = mode == "max" and acc or acc / cnt
  end end end end
  return y, { N, C, OH, OW }
end

H.case("max pool 3x3/2 pad 1 (ResNet stem) on even and odd maps: values and gradchecks", function()
  for _, sh in ipairs { { 2, 3, 8, 8 }, { 1, 2, 9, 7 } } do
    local x = rand(sh, "f64", true)
    local ref, shape = pool_ref(H.values(x), sh, 3, 2, 1, "max", false)
    local y = F.max_pool2d(x, 3, 2, 1)
    H.same_list(y:size(), shape)
    H.near(H.values(y), ref, 0)
    H.near(H.values(F.max_pool2d(x:to("f32"), 3, 2, 1)), ref, 1e-6)
    G.gradcheck(function(a) return F.max_pool2d(a, 3, 2, 1) end, { x })
  end
end)

H.case("avg pool 2x2/2 ceil_mode exclusive (ResNet-vd shortcut) on odd maps: values, gradchecks", function()
  for _, sh in ipairs { { 1, 2, 5, 7 }, { 2, 1, 3, 3 }, { 1, 1, 4, 6 } } do
    local x = rand(sh, "f64", true)
    local ref, shape = pool_ref(H.values(x), sh, 2, 2, 0, "avg", true)
    local y = F.avg_pool2d(x, 2, 2, 0, { ceil_mode = true, count_include_pad = false })
    H.same_list(y:size(), shape)
    H.near(H.values(y), ref, 1e-12)
    G.gradcheck(function(a) return F.avg_pool2d(a, 2, 2, 0, { ceil_mode = true, count_include_pad = false }) end, { x })
  end
  -- the clipped corner window of a 5x7 map averages its single element
  local x = ms.arange(35, { dtype = "f64" }):reshape({ 1, 1, 5, 7 })
  local y = F.avg_pool2d(x, 2, 2, 0, { ceil_mode = true, count_include_pad = false })
  H.same_list(y:size(), { 1, 1, 3, 4 })
  H.near(H.values(y)[12], 34, 0)
end)

-- Adaptive bins: [floor(i*H/o), ceil((i+1)*H/o)) (PyTorch's and Paddle's rule).
local function adaptive_ref(x, shape, o)
  local N, C, Hh, W = shape[1], shape[2], shape[3], shape[4]
  local y = {}
  for n = 0, N - 1 do for c = 0, C - 1 do for i = 0, o - 1 do for j = 0, o - 1 do
    local hs, he = math.floor(i * Hh / o), math.ceil((i + 1) * Hh / o)
    local ws, we = math.floor(j * W / o), math.ceil((j + 1) * W / o)
    local acc = 0
    for yy = hs, he - 1 do for xx = ws, we - 1 do acc = acc + x[((n * C + c) * Hh + yy) * W + xx + 1] end end
    y[#y + 1] = acc / ((he - hs) * (we - ws))
  end end end end
  return y
end

H.case("adaptive avg pool, PSPNet bins 1, 2, 3, 6 on 8x8, 13x11 and 5x5 maps: values, gradchecks", function()
  local n = 0
  for _, sh in ipairs { { 1, 2, 8, 8 }, { 2, 1, 13, 11 }, { 1, 1, 5, 5 } } do
    local x = rand(sh, "f64", true)
    for _, o in ipairs { 1, 2, 3, 6 } do
      local y = F.adaptive_avg_pool2d(x, o)
      H.same_list(y:size(), { sh[1], sh[2], o, o })
      H.near(H.values(y), adaptive_ref(H.values(x), sh, o), 1e-12)
      H.near(H.values(F.adaptive_avg_pool2d(x:to("f32"), o)), adaptive_ref(H.values(x), sh, o), 1e-5)
      G.gradcheck(function(a) return F.adaptive_avg_pool2d(a, o) end, { x })
      n = n + 1
    end
  end
  H.eq(n, 12)
  -- hand-computed: 3 bins over 8 rows are rows 0-2, 2-5, 5-7 (overlapping by one)
  local col = ms.arange(8, { dtype = "f64" }):reshape({ 1, 1, 8, 1 })
  H.near(H.values(F.adaptive_avg_pool2d(col, { 3, 1 })), { 1, 3.5, 6 }, 1e-15)
end)

H.case("dropout2d: whole channels zeroed or scaled by 1/(1-p), p respected, identity in eval", function()
  local x = ms.ones({ 8, 64, 3, 2 })
  ms.manual_seed(3)
  local y = F.dropout2d(x, 0.25, true)
  local v = H.values(y)
  local kept = 0
  for c = 0, 8 * 64 - 1 do
    local first = v[c * 6 + 1]
    H.eq(first == 0 or math.abs(first - 1 / 0.75) < 1e-6, true, "channel value " .. first)
    for k = 2, 6 do H.eq(v[c * 6 + k], first, "same value across the channel") end
    if first ~= 0 then kept = kept + 1 end
  end
  -- 512 channels kept with probability 0.75: 384 +- 3 sigma (sigma ~ 9.8)
  H.eq(kept > 354 and kept < 414, true, "kept " .. kept)
  H.eq(F.dropout2d(x, 0.25, false), x)
  H.near(H.values(F.dropout2d(x, 1, true)), H.values(ms.zeros({ 8, 64, 3, 2 })), 0)
  local m = ms.nn.Dropout2d(0.5)
  m:eval()
  H.eq(m(x), x)
  H.raises(function() F.dropout2d(x, 1.5) end, "dropout2d", "p must be in")
  H.raises(function() F.dropout2d(ms.ones({ 4 }), 0.5) end, "dropout2d", "at least 3 dims")
end)

H.case("gradcheck dropout2d (mask replayed from a fixed generator)", function()
  local x = rand({ 2, 5, 3, 2 }, "f64", true)
  G.gradcheck(function(a)
    return F.dropout2d(a, 0.4, true, { generator = ms.Generator(11) })
  end, { x })
  -- the gradient is the mask: zero on dropped channels, 1/(1-p) on kept ones
  x.grad = nil
  local y = F.dropout2d(x, 0.4, true, { generator = ms.Generator(11) })
  y:sum():backward()
  local g, yv, xv = H.values(x.grad), H.values(y), H.values(x)
  for i = 1, #g do H.near(g[i] * xv[i], yv[i], 1e-12) end
end)

H.done()
