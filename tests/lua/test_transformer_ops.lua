-- test_transformer_ops.lua: the ops SegFormer / OCRNet use (Linear with [in, out] weights, 4-D
-- batched matmul, exact GELU, softmax over the last dim of 4-D scores, LayerNorm with its own
-- eps, DropPath, sigmoid; Dropout2d is models-cnn's, tested there): values against naive f64
-- references and gradient checks.
local ms = require "moonseg"
local H = require "harness"
local G = require "moonseg.gradcheck"
local F = ms.functional
local nn = ms.nn

local seed = 11
local function rnd()
  seed = (seed * 1103515245 + 12345) % 2147483648
  return seed / 536870912 - 2
end
local function rand(shape, rg)
  local n = 1
  for _, s in ipairs(shape) do n = n * s end
  local flat = {}
  for i = 1, n do flat[i] = rnd() end
  local t = ms.tensor(flat, { dtype = "f64" }):view(shape)
  if rg then t:requires_grad_(true) end
  return t, flat
end
local function vals(t)
  local b, n = t:contiguous():to_f64_buffer()
  local r = {}
  for i = 0, n - 1 do r[i + 1] = b[i] end
  return r
end

H.case("linear: y = x @ W + b with W stored [in, out] (Paddle's layout)", function()
  local x, xf = rand({ 2, 3, 4 })
  local w, wf = rand({ 4, 5 })
  local b, bf = rand({ 5 })
  local y = vals(F.linear(x, w, b))
  for r = 0, 5 do
    for o = 0, 4 do
      local s = bf[o + 1]
      for i = 0, 3 do s = s + xf[r * 4 + i + 1] * wf[i * 5 + o + 1] end
      H.near(y[r * 5 + o + 1], s, 1e-12)
    end
  end
  local m = nn.Linear(4, 5)
  H.same_list(m.weight:size(), { 4, 5 })
  H.same_list(m.bias:size(), { 5 })
  H.eq(#nn.Linear(4, 5, { bias = false }):state_dict_keys(), 1)
  -- the init is N(0, 0.02^2) clipped at 2 std
  local big = nn.Linear(200, 200).weight
  H.near((big * big):mean():item() ^ 0.5, 0.02, 0.05)
  H.eq(big:abs():max():item() <= 0.04 + 1e-7, true)
  H.raises(function() m(ms.zeros(2, 3)) end, "matmul")
end)

H.case("gradcheck linear, 4-D batched matmul, softmax over the last dim, exact gelu, sigmoid", function()
  G.gradcheck(function(a, w, b) return F.linear(a, w, b) end, { rand({ 2, 3, 4 }, true), rand({ 4, 3 }, true), rand({ 3 }, true) })
  -- attention: q [B, heads, N, d] @ k^T [B, heads, d, M], softmax, @ v
  local q, k, v = rand({ 2, 2, 3, 4 }, true), rand({ 2, 2, 5, 4 }, true), rand({ 2, 2, 5, 4 }, true)
  G.gradcheck(function(qq, kk, vv)
    local a = F.softmax(ms.matmul(qq, kk:transpose(3, 4)) * 0.5, -1)
    return ms.matmul(a, vv)
  end, { q, k, v })
  G.gradcheck(function(t) return F.gelu(t) end, { rand({ 3, 7 }, true) })
  G.gradcheck(function(t) return F.sigmoid(t) end, { rand({ 3, 7 }, true) })
  H.eq(G.count >= 4, true)
end)

H.case("4-D matmul values against a naive loop", function()
  local a, af = rand({ 2, 3, 2, 4 })
  local b, bf = rand({ 2, 3, 4, 3 })
  local y = vals(ms.matmul(a, b))
  for bt = 0, 5 do
    for i = 0, 1 do
      for j = 0, 2 do
        local s = 0
        for kk = 0, 3 do s = s + af[bt * 8 + i * 4 + kk + 1] * bf[bt * 12 + kk * 3 + j + 1] end
        H.near(y[bt * 6 + i * 3 + j + 1], s, 1e-12)
      end
    end
  end
end)

H.case("exact gelu uses erf, not the tanh form", function()
  local x = ms.tensor({ -3, -1, 0.5, 2 }, { dtype = "f64" })
  -- values from PyTorch 1.13 F.gelu in f64
  local want = { -0.00404969409489031, -0.15865525393145702, 0.34573123063700656, 1.9544997361036416 }
  H.near(vals(F.gelu(x)), want, 1e-14)
  local tanh = vals(F.gelu(x, "tanh"))
  H.eq(math.abs(tanh[1] - want[1]) > 1e-5, true)
end)

H.case("LayerNorm module: last dim, its own eps, Paddle keys, gradcheck", function()
  local m = nn.LayerNorm(6, { epsilon = 1e-6 })
  H.same_list(m:state_dict_keys(), { "weight", "bias" })
  -- with a tiny variance the eps matters: var 1e-6, eps 1e-6 -> x / sqrt(2e-6)
  local x = ms.tensor({ 1e-3, -1e-3, 1e-3, -1e-3, 1e-3, -1e-3 }, { dtype = "f64" }):view(1, 6)
  m.weight = ms.nn.Parameter(m.weight:to("f64"))
  m.bias = ms.nn.Parameter(m.bias:to("f64"))
  H.near(vals(m(x))[1], 1e-3 / math.sqrt(2e-6), 1e-12)
  H.near(vals(nn.LayerNorm(6)(x:to("f32")))[1], 1e-3 / math.sqrt(1e-6 + 1e-5), 1e-5)
  G.gradcheck(function(t, w, b) return F.layer_norm(t, 4, w, b, 1e-6) end,
    { rand({ 2, 3, 4 }, true), rand({ 4 }, true), rand({ 4 }, true) })
end)

H.case("drop_path: whole samples kept or zeroed, kept ones scaled by 1 / (1 - p)", function()
  ms.manual_seed(5)
  local x = ms.ones(400, 3, 2)
  local y = F.drop_path(x, 0.25, true)
  local v = vals(y)
  local kept = 0
  for s = 0, 399 do
    local first = v[s * 6 + 1]
    H.eq(first == 0 or math.abs(first - 1 / 0.75) < 1e-6, true, "sample value")
    for j = 2, 6 do H.eq(v[s * 6 + j], first, "one decision per sample") end
    if first ~= 0 then kept = kept + 1 end
  end
  -- 400 draws, p = 0.75 kept: mean 300, sd 8.7
  H.eq(kept > 260 and kept < 340, true, "kept " .. kept)
  H.eq(F.drop_path(x, 0.25, false), x)
  H.eq(F.drop_path(x, 0, true), x)
  H.raises(function() F.drop_path(x, 1, true) end, "drop_path", "p")
  local m = nn.DropPath(0.5)
  m:eval()
  H.eq(m(x), x)
end)

H.case("gradcheck drop_path with a fixed generator", function()
  local x = rand({ 4, 3, 2 }, true)
  G.gradcheck(function(t) return F.drop_path(t, 0.5, true, { generator = ms.Generator(3) }) end, { x })
end)

H.done()
