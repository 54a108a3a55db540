-- test_norm.lua: batch_norm and layer_norm against naive f64 Lua references, running-stat
-- updates, train/eval behaviour, gradient checks, dtypes, odd shapes and bad input.
local ms = require "moonseg"
local H = require "harness"
local G = require "moonseg.gradcheck"
local F = ms.functional

-- Deterministic values in [-2, 2).
local seed = 7
local function rnd()
  seed = (seed * 1103515245 + 12345) % 2147483648
  return seed / 536870912 - 2
end
local function numel(shape) local n = 1 for _, s in ipairs(shape) do n = n * s end return n end
-- A tensor of shape with random values, and its flat row-major Lua copy.
local function rand(shape, dtype, rg)
  local flat = {}
  for i = 1, numel(shape) do flat[i] = rnd() end
  local t = ms.tensor(flat, { dtype = dtype or "f64" }):view(shape)
  if dtype and dtype ~= "f64" then
    -- Read back so references start from the rounded values.
    local b = t:to_f64_buffer()
    for i = 1, #flat do flat[i] = b[i - 1] end
  end
  if rg then t:requires_grad_(true) end
  return t, flat
end
local function vals(t)
  local b, n = t:to_f64_buffer()
  local r = {}
  for i = 1, n do r[i] = b[i - 1] end
  return r
end

-- Naive batch norm over flat x of [N, C, S]: returns y, mean, biased var.
local function bn_ref(x, n, c, s, w, b, eps, mean_in, var_in)
  local mean, var, y = {}, {}, {}
  for ci = 1, c do
    local m, v = 0, 0
    if mean_in then
      m, v = mean_in[ci], var_in[ci]
    else
      for ni = 0, n - 1 do for si = 1, s do m = m + x[ni * c * s + (ci - 1) * s + si] end end
      m = m / (n * s)
      for ni = 0, n - 1 do
        for si = 1, s do
          local d = x[ni * c * s + (ci - 1) * s + si] - m
          v = v + d * d
        end
      end
      v = v / (n * s)
    end
    mean[ci], var[ci] = m, v
    for ni = 0, n - 1 do
      for si = 1, s do
        local k = ni * c * s + (ci - 1) * s + si
        y[k] = (x[k] - m) / math.sqrt(v + eps) * (w and w[ci] or 1) + (b and b[ci] or 0)
      end
    end
  end
  return y, mean, var
end

-- Naive layer norm over rows of length k.
local function ln_ref(x, k, w, b, eps)
  local y = {}
  for r = 0, #x / k - 1 do
    local m, v = 0, 0
    for i = 1, k do m = m + x[r * k + i] end
    m = m / k
    for i = 1, k do v = v + (x[r * k + i] - m) ^ 2 end
    v = v / k
    for i = 1, k do
      y[r * k + i] = (x[r * k + i] - m) / math.sqrt(v + eps) * (w and w[i] or 1) + (b and b[i] or 0)
    end
  end
  return y
end

H.case("batch_norm train: values, running stats (unbiased var, momentum)", function()
  for _, shape in ipairs { { 3, 4, 5 }, { 2, 3, 3, 5 }, { 5, 2 }, { 2, 1, 1, 3 } } do
    local n, c = shape[1], shape[2]
    local s = numel(shape) / (n * c)
    local x, xf = rand(shape)
    local w, wf = rand { c }
    local b, bf = rand { c }
    local rm, rmf = rand { c }
    local rv = ms.full({ c }, 2.0, { dtype = "f64" })
    local y = F.batch_norm(x, rm, rv, w, b, true, 0.3, 1e-5)
    local yr, mean, var = bn_ref(xf, n, c, s, wf, bf, 1e-5)
    H.near(vals(y), yr, 1e-10, "y " .. table.concat(shape, "x"))
    local cnt = n * s
    local want_m, want_v = {}, {}
    for ci = 1, c do
      want_m[ci] = 0.7 * rmf[ci] + 0.3 * mean[ci]
      want_v[ci] = 0.7 * 2.0 + 0.3 * var[ci] * cnt / (cnt - 1)
    end
    H.near(vals(rm), want_m, 1e-12, "running_mean")
    H.near(vals(rv), want_v, 1e-12, "running_var")
  end
end)

H.case("batch_norm running stats: hand-computed values", function()
  -- x = [1, 2, 3, 4] in one channel: mean 2.5, biased var 1.25, unbiased var 5/3.
  local x = ms.tensor({ 1, 2, 3, 4 }):view(4, 1)
  local rm, rv = ms.zeros(1), ms.ones(1)
  local y = F.batch_norm(x, rm, rv, nil, nil, true) -- momentum 0.1, eps 1e-5
  H.near(rm:item(), 0.25, 1e-6)
  H.near(rv:item(), 0.9 + 0.1 * 5 / 3, 1e-6)
  local inv = 1 / math.sqrt(1.25 + 1e-5)
  H.near(vals(y), { -1.5 * inv, -0.5 * inv, 0.5 * inv, 1.5 * inv }, 1e-6)
  -- Default momentum 0.1 again: stats keep moving.
  F.batch_norm(x, rm, rv, nil, nil, true)
  H.near(rm:item(), 0.9 * 0.25 + 0.25, 1e-6)
end)

H.case("batch_norm eval uses running stats and leaves them alone", function()
  local x, xf = rand { 2, 3, 4, 2 }
  local w, wf = rand { 3 }
  local b, bf = rand { 3 }
  local rm = ms.tensor({ 0.5, -1, 2 }, { dtype = "f64" })
  local rv = ms.tensor({ 1, 4, 0.25 }, { dtype = "f64" })
  local y = F.batch_norm(x, rm, rv, w, b, false, 0.1, 1e-3)
  local yr = bn_ref(xf, 2, 3, 8, wf, bf, 1e-3, { 0.5, -1, 2 }, { 1, 4, 0.25 })
  H.near(vals(y), yr, 1e-10)
  H.near(vals(rm), { 0.5, -1, 2 }, 0)
  H.near(vals(rv), { 1, 4, 0.25 }, 0)
  -- Train mode without running stats normalises with batch stats only.
  local y2 = F.batch_norm(x, nil, nil, nil, nil, true)
  H.near(vals(y2), (bn_ref(xf, 2, 3, 8, nil, nil, 1e-5)), 1e-10)
end)

H.case("batch_norm f32 non-contiguous, f16/bf16 within tolerance", function()
  local x, xf = rand({ 2, 3, 5, 4 }, "f32")
  local xt = x:transpose(3, 4) -- [2, 3, 4, 5] non-contiguous
  H.eq(xt:is_contiguous(), false)
  local tf = vals(xt)
  local w, wf = rand({ 3 }, "f32")
  local rm, rv = ms.zeros(3), ms.ones(3)
  local y = F.batch_norm(xt, rm, rv, w, nil, true)
  H.eq(y:type(), "f32")
  H.near(vals(y), (bn_ref(tf, 2, 3, 20, wf, nil, 1e-5)), 1e-5)
  local _ = xf
  for _, dt in ipairs { "f16", "bf16" } do
    local xh, xhf = rand({ 2, 3, 6 }, dt)
    local yh = F.batch_norm(xh, nil, nil, nil, nil, true)
    H.eq(yh:type(), dt)
    H.near(vals(yh), (bn_ref(xhf, 2, 3, 6, nil, nil, 1e-5)), dt == "f16" and 4e-3 or 2e-2, dt)
  end
end)

H.case("batch_norm f32 large: parallel path agrees with the reference", function()
  local x, xf = rand({ 4, 3, 17, 19 }, "f32")
  local rm, rv = ms.zeros(3), ms.ones(3)
  local y = F.batch_norm(x, rm, rv, nil, nil, true, 0.5)
  local yr, mean = bn_ref(xf, 4, 3, 17 * 19, nil, nil, 1e-5)
  H.near(vals(y), yr, 1e-5)
  H.near(vals(rm), { 0.5 * mean[1], 0.5 * mean[2], 0.5 * mean[3] }, 1e-6)
end)

H.case("batch_norm gradchecks: train/eval, affine or not, several shapes", function()
  local n = 0
  for _, shape in ipairs { { 3, 2 }, { 2, 3, 4 }, { 2, 2, 3, 3 }, { 1, 2, 1, 3 } } do
    local c = shape[2]
    for _, training in ipairs { true, false } do
      for _, affine in ipairs { true, false } do
        local x = rand(shape, "f64", true)
        local w = affine and rand({ c }, "f64", true) or nil
        local b = affine and rand({ c }, "f64", true) or nil
        local rm = ms.zeros(c, { dtype = "f64" })
        local rv = ms.full({ c }, 1.5, { dtype = "f64" })
        G.gradcheck(function(xx, ww, bb)
          return F.batch_norm(xx, rm, rv, ww, bb, training, 0.1, 1e-5)
        end, { x, w, b })
        n = n + 1
      end
    end
  end
  H.eq(n, 16)
end)

H.case("batch_norm eval backward is the plain affine map", function()
  local x = rand({ 2, 2, 3 }, "f64", true)
  local w = ms.tensor({ 2, -3 }, { dtype = "f64", requires_grad = true })
  local rm = ms.tensor({ 0, 1 }, { dtype = "f64" })
  local rv = ms.tensor({ 4, 0.25 }, { dtype = "f64" })
  local y = F.batch_norm(x, rm, rv, w, nil, false, 0.1, 0)
  local g = ms.ones({ 2, 2, 3 }, { dtype = "f64" })
  y:backward(g)
  local gx = vals(x.grad)
  for i = 1, 12 do
    local ci = math.floor((i - 1) / 3) % 2 + 1
    H.near(gx[i], ci == 1 and 2 / 2 or -3 / 0.5, 1e-12)
  end
  -- dweight = sum(g * xhat) with the running stats.
  local xv = vals(x)
  local dw1 = 0
  for i = 1, 12 do if math.floor((i - 1) / 3) % 2 == 0 then dw1 = dw1 + xv[i] / 2 end end
  H.near(vals(w.grad)[1], dw1, 1e-12)
end)

H.case("batch_norm without grad records nothing; stats stay f32 for f32 input", function()
  local x = rand({ 2, 3 }, "f32")
  local y = F.batch_norm(x, nil, nil, nil, nil, true)
  H.eq(y.grad_fn, nil)
  local x2 = rand({ 2, 3 }, "f32", true)
  local y2 = F.batch_norm(x2, nil, nil, nil, nil, true)
  H.eq(y2.grad_fn.name, "batch_norm")
  H.eq(y2.grad_fn.saved.mean:type(), "f32")
end)

H.case("batch_norm bad input names op and shapes", function()
  local x = rand({ 2, 4, 3 }, "f32")
  H.raises(function() F.batch_norm(x, ms.zeros(3), ms.ones(4), nil, nil, true) end,
    "batch_norm", "running_mean", "[3]", "[2, 4, 3]")
  H.raises(function() F.batch_norm(x, ms.zeros(4), ms.ones(4), ms.ones(5), nil, true) end,
    "batch_norm", "weight", "[5]")
  H.raises(function() F.batch_norm(x, nil, nil, nil, nil, false) end, "batch_norm", "eval mode")
  -- One value per channel trains as Paddle does: the output is the bias, stats untouched.
  local rm, rv = ms.full({ 4 }, 0.5), ms.full({ 4 }, 2)
  local one = F.batch_norm(rand({ 1, 4 }, "f32"), rm, rv, nil, ms.full({ 4 }, 3), true)
  H.near(one:tolist()[1], { 3, 3, 3, 3 }, 1e-4) -- x * inv + (b - mean * inv) in f32
  H.same_list(rv:tolist(), { 2, 2, 2, 2 })
  H.raises(function() F.batch_norm(rand({ 4 }, "f32"), nil, nil, nil, nil, true) end,
    "batch_norm", "at least 2 dims", "[4]")
  H.raises(function() F.batch_norm(ms.zeros({ 2, 2 }, { dtype = "i64" }), nil, nil, nil, nil, true) end,
    "batch_norm", "floating point", "i64")
  H.raises(function() F.batch_norm(x, ms.zeros(4), nil, nil, nil, true) end, "batch_norm", "both")
end)

H.case("layer_norm values: 1 and 2 normalized dims, affine or not, non-contiguous", function()
  local x, xf = rand { 2, 3, 4 }
  local w, wf = rand { 4 }
  local b, bf = rand { 4 }
  H.near(vals(F.layer_norm(x, 4, w, b)), ln_ref(xf, 4, wf, bf, 1e-5), 1e-10)
  H.near(vals(F.layer_norm(x, { 4 }, nil, nil, 1e-3)), ln_ref(xf, 4, nil, nil, 1e-3), 1e-10)
  local w2, w2f = rand { 3, 4 }
  H.near(vals(F.layer_norm(x, { 3, 4 }, w2, nil)), ln_ref(xf, 12, w2f, nil, 1e-5), 1e-10)
  local xt = x:transpose(1, 3) -- [4, 3, 2]
  H.near(vals(F.layer_norm(xt, { 2 })), ln_ref(vals(xt), 2, nil, nil, 1e-5), 1e-10)
  -- Whole-tensor normalisation and a size-1 row (output 0).
  H.near(vals(F.layer_norm(x, { 2, 3, 4 })), ln_ref(xf, 24, nil, nil, 1e-5), 1e-10)
  H.near(vals(F.layer_norm(rand { 3, 1 }, 1)), { 0, 0, 0 }, 0)
end)

H.case("layer_norm f32 large and f16/bf16", function()
  local x, xf = rand({ 37, 130 }, "f32")
  local w, wf = rand({ 130 }, "f32")
  H.near(vals(F.layer_norm(x, 130, w)), ln_ref(xf, 130, wf, nil, 1e-5), 1e-5)
  for _, dt in ipairs { "f16", "bf16" } do
    local xh, xhf = rand({ 3, 16 }, dt)
    local y = F.layer_norm(xh, 16)
    H.eq(y:type(), dt)
    H.near(vals(y), ln_ref(xhf, 16, nil, nil, 1e-5), dt == "f16" and 4e-3 or 2e-2, dt)
  end
end)

H.case("layer_norm gradchecks: with and without affine, weight only, 2 dims", function()
  local n = 0
  for _, cfg in ipairs {
    { { 3, 5 }, { 5 }, true, true }, { { 3, 5 }, { 5 }, false, false },
    { { 2, 3, 4 }, { 3, 4 }, true, false }, { { 2, 2, 3 }, { 3 }, false, true },
    { { 4, 1 }, { 1 }, true, true },
  } do
    local x = rand(cfg[1], "f64", true)
    local w = cfg[3] and rand(cfg[2], "f64", true) or nil
    local b = cfg[4] and rand(cfg[2], "f64", true) or nil
    G.gradcheck(function(xx, ww, bb) return F.layer_norm(xx, cfg[2], ww, bb) end, { x, w, b })
    n = n + 1
  end
  H.eq(n, 5)
end)

H.case("layer_norm gradients in f32 match f64", function()
  local x64 = rand({ 6, 40 }, "f64", true)
  local x32 = x64:detach():to("f32"):requires_grad_(true)
  local g = rand({ 6, 40 }, "f64")
  F.layer_norm(x64, 40):backward(g)
  F.layer_norm(x32, 40):backward(g:to("f32"))
  H.near(vals(x32.grad), vals(x64.grad), 1e-4)
end)

H.case("layer_norm bad input names op and shapes", function()
  local x = rand({ 2, 3, 4 }, "f32")
  H.raises(function() F.layer_norm(x, { 3 }) end, "layer_norm", "[3]", "[2, 3, 4]")
  H.raises(function() F.layer_norm(x, { 2, 3, 4, 5 }) end, "layer_norm", "normalized_shape")
  H.raises(function() F.layer_norm(x, 4, ms.ones(5)) end, "layer_norm", "weight", "[5]", "[4]")
  H.raises(function() F.layer_norm(x, 4, nil, ms.ones({ 2, 2 })) end, "layer_norm", "bias")
  H.raises(function() F.layer_norm(ms.zeros({ 2, 2 }, { dtype = "i32" }), 2) end, "layer_norm", "i32")
end)

H.done()
