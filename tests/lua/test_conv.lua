-- test_conv.lua: conv2d forward/backward against a naive Lua f64 loop, f32 (oneDNN) vs f64,
-- f16/bf16, gradchecks, non-contiguous inputs and error messages.
local ms = require "moonseg"
local H = require "harness"
local G = require "moonseg.gradcheck"
local F = ms.functional

-- Deterministic values in [-1, 1).
local seed = 42
local function rnd()
  seed = (seed * 1103515245 + 12345) % 2147483648
  return seed / 1073741824 - 1
end
local function numel(shape)
  local n = 1
  for _, v in ipairs(shape) do n = n * v end
  return n
end
local function rand_flat(shape)
  local t = {}
  for i = 1, numel(shape) do t[i] = rnd() end
  return t
end
local function mk(flat, shape, dtype)
  return ms.tensor(flat, { dtype = dtype or "f64" }):reshape(shape)
end
local function flat_of(t)
  local buf, n = t:to_f64_buffer()
  local r = {}
  for i = 0, n - 1 do r[i + 1] = buf[i] end
  return r
end
local function max_diff(a, b)
  assert(#a == #b, "length " .. #a .. " vs " .. #b)
  local m = 0
  for i = 1, #a do m = math.max(m, math.abs(a[i] - b[i])) end
  return m
end
local function pair(v, d)
  if v == nil then return d, d end
  if type(v) == "table" then return v[1], v[2] end
  return v, v
end

-- Naive reference: x flat [N, C, H, W], w flat [O, C/g, kh, kw], b flat or nil.
local function ref_conv(x, xs, w, ws, b, o)
  local N, Cin, Hh, W = xs[1], xs[2], xs[3], xs[4]
  local O, cg, kh, kw = ws[1], ws[2], ws[3], ws[4]
  local sh, sw = pair(o.stride, 1)
  local ph, pw = pair(o.padding, 0)
  local dh, dw = pair(o.dilation, 1)
  local groups = o.groups or 1
  local og = O / groups
  local OH = math.floor((Hh + 2 * ph - dh * (kh - 1) - 1) / sh) + 1
  local OW = math.floor((W + 2 * pw - dw * (kw - 1) - 1) / sw) + 1
  local y = {}
  for n = 0, N - 1 do
    for oc = 0, O - 1 do
      local gi = math.floor(oc / og)
      for oy = 0, OH - 1 do
        for ox = 0, OW - 1 do
          local s = b and b[oc + 1] or 0
          for c = 0, cg - 1 do
            local ic = gi * cg + c
            for i = 0, kh - 1 do
              local iy = oy * sh - ph + i * dh
              if iy >= 0 and iy < Hh then
                for j = 0, kw - 1 do
                  local ix = ox * sw - pw + j * dw
                  if ix >= 0 and ix < W then
                    s = s + x[((n * Cin + ic) * Hh + iy) * W + ix + 1] * w[((oc * cg + c) * kh + i) * kw + j + 1]
                  end
                end
              end
            end
          end
          y[((n * O + oc) * OH + oy) * OW + ox + 1] = s
        end
      end
    end
  end
  return y, { N, O, OH, OW }
end

-- name, x shape, w shape, bias?, opts
local configs = {
  { "3x3 pad1 bias", { 2, 3, 7, 6 }, { 4, 3, 3, 3 }, true, { padding = 1 } },
  { "stride2 pad1 odd", { 2, 3, 9, 7 }, { 5, 3, 3, 3 }, false, { stride = 2, padding = 1 } },
  { "dilation2", { 1, 2, 8, 9 }, { 3, 2, 3, 3 }, true, { padding = 2, dilation = 2 } },
  { "groups2", { 2, 4, 6, 5 }, { 6, 2, 3, 3 }, true, { padding = 1, groups = 2 } },
  { "depthwise s2", { 2, 4, 7, 8 }, { 4, 1, 3, 3 }, false, { stride = 2, padding = 1, groups = 4 } },
  { "1x1", { 3, 5, 4, 3 }, { 7, 5, 1, 1 }, true, {} },
  { "1x1 stride2 neg pad_r", { 1, 3, 4, 4 }, { 2, 3, 1, 1 }, false, { stride = 2 } },
  { "batch1 rect kernel", { 1, 3, 5, 6 }, { 2, 3, 2, 3 }, true, { stride = { 2, 1 }, padding = { 0, 1 } } },
  { "channel multiplier dw", { 1, 2, 5, 5 }, { 4, 1, 3, 3 }, true, { padding = 1, groups = 2 } },
}

for _, cfg in ipairs(configs) do
  local name, xs, ws, hasb, o = cfg[1], cfg[2], cfg[3], cfg[4], cfg[5]
  local xf, wf = rand_flat(xs), rand_flat(ws)
  local bf = hasb and rand_flat({ ws[1] }) or nil
  local want, ys = ref_conv(xf, xs, wf, ws, bf, o)
  for _, dt in ipairs { "f64", "f32" } do
    H.case("forward " .. name .. " " .. dt, function()
      local y = F.conv2d(mk(xf, xs, dt), mk(wf, ws, dt), bf and mk(bf, { ws[1] }, dt), o)
      H.same_list(y:size(), ys, "shape")
      H.eq(y:type(), dt)
      local tol = dt == "f64" and 1e-12 or 1e-5
      local d = max_diff(flat_of(y), want)
      if d > tol then error(name .. " " .. dt .. ": max diff " .. d) end
      -- Second call hits the cached plan and must agree.
      local y2 = F.conv2d(mk(xf, xs, dt), mk(wf, ws, dt), bf and mk(bf, { ws[1] }, dt), o)
      H.eq(max_diff(flat_of(y2), flat_of(y)), 0)
    end)
  end
  -- f32 backward (oneDNN) against f64 backward (im2col path, itself gradchecked below).
  H.case("backward f32 vs f64 " .. name, function()
    local gf = rand_flat(ys)
    local res = {}
    for _, dt in ipairs { "f64", "f32" } do
      local x = mk(xf, xs, dt):requires_grad_()
      local w = mk(wf, ws, dt):requires_grad_()
      local b = bf and mk(bf, { ws[1] }, dt):requires_grad_()
      local y = x:conv2d(w, b, o)
      y:backward(mk(gf, ys, dt))
      res[dt] = { flat_of(x.grad), flat_of(w.grad), b and flat_of(b.grad) }
      H.eq(x.grad:type(), dt)
    end
    for i = 1, 3 do
      if res.f64[i] then
        local d = max_diff(res.f32[i], res.f64[i])
        if d > 1e-4 then error("grad " .. i .. " differs by " .. d) end
      end
    end
  end)
end

-- Gradchecks in f64 on small shapes (each element costs two forwards).
local gconfigs = {
  { { 1, 2, 5, 4 }, { 3, 2, 3, 3 }, true, { padding = 1 } },
  { { 2, 2, 5, 5 }, { 2, 2, 3, 3 }, true, { stride = 2, padding = 1 } },
  { { 1, 2, 6, 6 }, { 2, 2, 3, 3 }, false, { padding = 2, dilation = 2 } },
  { { 1, 4, 4, 4 }, { 4, 2, 3, 3 }, true, { padding = 1, groups = 2 } },
  { { 1, 3, 5, 5 }, { 3, 1, 3, 3 }, false, { stride = 2, padding = 1, groups = 3 } },
  { { 2, 3, 3, 3 }, { 2, 3, 1, 1 }, true, {} },
  { { 1, 2, 4, 5 }, { 2, 2, 2, 3 }, true, { stride = { 2, 1 }, padding = { 1, 0 } } },
}
local ngradchecks = 0
for i, cfg in ipairs(gconfigs) do
  local xs, ws, hasb, o = cfg[1], cfg[2], cfg[3], cfg[4]
  H.case("gradcheck conv2d #" .. i, function()
    local x = mk(rand_flat(xs), xs):requires_grad_()
    local w = mk(rand_flat(ws), ws):requires_grad_()
    local b = hasb and mk(rand_flat({ ws[1] }), { ws[1] }):requires_grad_() or nil
    G.gradcheck(function(a, c, d) return F.conv2d(a, c, d, o) end, { x, w, b })
  end)
  ngradchecks = ngradchecks + 1
end

H.case("gradcheck with only x (w frozen) and only w", function()
  local x = mk(rand_flat({ 1, 2, 4, 4 }), { 1, 2, 4, 4 }):requires_grad_()
  local w = mk(rand_flat({ 3, 2, 3, 3 }), { 3, 2, 3, 3 })
  G.gradcheck(function(a, c) return F.conv2d(a, c, nil, { padding = 1 }) end, { x, w })
  H.eq(w.grad, nil)
  local x2 = mk(rand_flat({ 1, 2, 4, 4 }), { 1, 2, 4, 4 })
  local w2 = mk(rand_flat({ 3, 2, 3, 3 }), { 3, 2, 3, 3 }):requires_grad_()
  G.gradcheck(function(a, c) return F.conv2d(a, c, nil, { stride = 2 }) end, { x2, w2 })
  H.eq(x2.grad, nil)
end)

H.case("backward with only the bias needing grad", function()
  local x = mk(rand_flat({ 2, 3, 4, 4 }), { 2, 3, 4, 4 }, "f32")
  local w = mk(rand_flat({ 2, 3, 3, 3 }), { 2, 3, 3, 3 }, "f32")
  local b = mk({ 0.5, -1 }, { 2 }, "f32"):requires_grad_()
  local y = F.conv2d(x, w, b, { padding = 1 })
  y:backward(ms.ones({ 2, 2, 4, 4 }))
  H.near(flat_of(b.grad), { 32, 32 }, 1e-6)
end)

-- Larger f32 shapes take oneDNN's blocked (nChw16c) kernels; check them against f64 too.
H.case("f32 blocked kernels vs f64 (32->48 3x3, depthwise 32 s2, 1x1 64->32)", function()
  for _, c in ipairs {
    { { 2, 32, 9, 10 }, { 48, 32, 3, 3 }, { padding = 1 } },
    { { 2, 32, 9, 9 }, { 32, 1, 3, 3 }, { padding = 1, stride = 2, groups = 32 } },
    { { 1, 64, 5, 6 }, { 32, 64, 1, 1 }, {} },
    { { 1, 3, 17, 16 }, { 32, 3, 3, 3 }, { padding = 1, stride = 2 } },
  } do
    local xs, ws, o = c[1], c[2], c[3]
    local xf, wf, bf = rand_flat(xs), rand_flat(ws), rand_flat({ ws[1] })
    local r = {}
    for _, dt in ipairs { "f64", "f32" } do
      local x = mk(xf, xs, dt):requires_grad_()
      local w = mk(wf, ws, dt):requires_grad_()
      local b = mk(bf, { ws[1] }, dt):requires_grad_()
      local y = F.conv2d(x, w, b, o)
      seed = 7 -- same grad values for both dtypes
      local g = mk(rand_flat(y:size()), y:size(), dt)
      y:backward(g)
      r[dt] = { flat_of(y), flat_of(x.grad), flat_of(w.grad), flat_of(b.grad) }
    end
    for i = 1, 4 do
      local d = max_diff(r.f32[i], r.f64[i])
      if d > 2e-4 then error("tensor " .. i .. " differs by " .. d) end
    end
  end
end)

H.case("f16 and bf16 compute in f32 and round", function()
  local xs, ws = { 1, 4, 6, 6 }, { 3, 4, 3, 3 }
  local xf, wf, bf = rand_flat(xs), rand_flat(ws), rand_flat({ 3 })
  local want = ref_conv(xf, xs, wf, ws, bf, { padding = 1 })
  for _, dt in ipairs { "f16", "bf16" } do
    -- Round the inputs first so only the output rounding remains.
    local x, w, b = mk(xf, xs, dt), mk(wf, ws, dt), mk(bf, { 3 }, dt)
    local want_r = ref_conv(flat_of(x), xs, flat_of(w), ws, flat_of(b), { padding = 1 })
    local y = F.conv2d(x, w, b, { padding = 1 })
    H.eq(y:type(), dt)
    local tol = dt == "f16" and 1e-2 or 6e-2
    local d = max_diff(flat_of(y), want_r)
    if d > tol then error(dt .. " differs by " .. d) end
    H.eq(#want, #want_r)
    local xg = mk(xf, xs, dt):requires_grad_()
    local y2 = F.conv2d(xg, w, b, { padding = 1 })
    y2:backward(ms.ones(y2:size(), { dtype = dt }))
    H.eq(xg.grad:type(), dt)
  end
end)

H.case("non-contiguous x and w", function()
  local N, C, Hh, W, O = 2, 3, 5, 6, 4
  local xf = rand_flat({ N, Hh, W, C })
  local wf = rand_flat({ 3, 3, C, O })
  for _, dt in ipairs { "f64", "f32" } do
    local xn = mk(xf, { N, Hh, W, C }, dt):permute(1, 4, 2, 3) -- [N, C, H, W] view
    local wn = mk(wf, { 3, 3, C, O }, dt):permute(4, 3, 1, 2)  -- [O, C, 3, 3] view
    H.eq(xn:is_contiguous(), false)
    local y = F.conv2d(xn, wn, nil, { padding = 1, stride = { 1, 2 } })
    local want = F.conv2d(xn:contiguous(), wn:contiguous(), nil, { padding = 1, stride = { 1, 2 } })
    H.eq(max_diff(flat_of(y), flat_of(want)), 0)
    local r = ref_conv(flat_of(xn), { N, C, Hh, W }, flat_of(wn), { O, C, 3, 3 }, nil,
      { padding = 1, stride = { 1, 2 } })
    if max_diff(flat_of(y), r) > 1e-5 then error("non-contiguous result off") end
  end
  -- Non-contiguous grad_out in backward.
  local x = mk(rand_flat({ 1, 2, 4, 4 }), { 1, 2, 4, 4 }):requires_grad_()
  local w = mk(rand_flat({ 2, 2, 3, 3 }), { 2, 2, 3, 3 }):requires_grad_()
  local y = F.conv2d(x, w, nil, { padding = 1 })
  local g = mk(rand_flat({ 1, 4, 4, 2 }), { 1, 4, 4, 2 }):permute(1, 4, 2, 3)
  y:backward(g)
  local x2 = mk(flat_of(x), { 1, 2, 4, 4 }):requires_grad_()
  local w2 = mk(flat_of(w), { 2, 2, 3, 3 }):requires_grad_()
  F.conv2d(x2, w2, nil, { padding = 1 }):backward(g:contiguous())
  H.eq(max_diff(flat_of(x.grad), flat_of(x2.grad)), 0)
  H.eq(max_diff(flat_of(w.grad), flat_of(w2.grad)), 0)
end)

H.case("empty batch and method form", function()
  local y = ms.zeros({ 0, 3, 5, 5 }):conv2d(ms.zeros({ 4, 3, 3, 3 }), nil, { padding = 1 })
  H.same_list(y:size(), { 0, 4, 5, 5 })
  -- Hand-computed: all-ones 1x1x3x3 input, all-ones 3x3 kernel, no padding -> 9 (+ bias 1).
  local z = F.conv2d(ms.ones({ 1, 1, 3, 3 }), ms.ones({ 1, 1, 3, 3 }), ms.tensor({ 1 }))
  H.near(z:item(), 10, 1e-7)
  -- With padding 1 the corners see 4 ones, edges 6, centre 9.
  local p = F.conv2d(ms.ones({ 1, 1, 3, 3 }), ms.ones({ 1, 1, 3, 3 }), nil, { padding = 1 })
  H.near(flat_of(p), { 4, 6, 4, 6, 9, 6, 4, 6, 4 }, 1e-7)
end)

H.case("batch invariance (default): a sample's forward and input gradient do not depend on its batch", function()
  H.eq(ms.get_batch_invariant(), true, "on by default")
  -- 256 channels at 8x8: batched Winograd gave sample 1 a different forward result at batch 4
  -- than at batch 1 (rel. 1.4e-6); invariant convolutions give the same bits: direct on small
  -- inputs (8x8), Winograd one sample at a time on larger ones (32x32)
  local rnd = H.rng(7)
  for _, sh in ipairs { { 256, 8 }, { 32, 32 } } do
    local C, S = sh[1], sh[2]
    local x = H.rand_tensor(rnd, { 4, C, S, S }, "f32")
    local w = H.rand_tensor(rnd, { C, C, 3, 3 }, "f32") * 0.05
    local gy = H.rand_tensor(rnd, { 4, C, S, S }, "f32")
    local function run(n)
      local xi = x:narrow(1, 1, n):contiguous():requires_grad_()
      local y = F.conv2d(xi, w, nil, { padding = 1 })
      y:backward(gy:narrow(1, 1, n):contiguous())
      return y, xi.grad
    end
    for _, th in ipairs { 1, 2 } do
      ms.set_num_threads(th)
      local y1, g1 = run(1)
      for _, n in ipairs { 2, 4 } do
        local yn, gn = run(n)
        local what = string.format(" of sample %%d at batch %d, %d thread(s), %d channels %dx%d", n, th, C, S, S)
        H.same_list(H.flat(yn:narrow(1, 1, 1)), H.flat(y1), string.format("forward" .. what, 1))
        H.same_list(H.flat(gn:narrow(1, 1, 1)), H.flat(g1), string.format("input gradient" .. what, 1))
        if n == 4 then -- the last sample too (the per-sample loop's offsets)
          local x4 = x:narrow(1, 4, 1):contiguous():requires_grad_()
          local y4 = F.conv2d(x4, w, nil, { padding = 1 })
          y4:backward(gy:narrow(1, 4, 1):contiguous())
          H.same_list(H.flat(yn:narrow(1, 4, 1)), H.flat(y4), string.format("forward" .. what, 4))
          H.same_list(H.flat(gn:narrow(1, 4, 1)), H.flat(x4.grad), string.format("input gradient" .. what, 4))
        end
      end
    end
    ms.set_batch_invariant(false)
    H.eq(ms.get_batch_invariant(), false)
    local y = F.conv2d(x, w, nil, { padding = 1 }) -- Winograd where eligible: still a convolution
    local ref = F.conv2d(x:to("f64"), w:to("f64"), nil, { padding = 1 })
    local d = y:to("f64") - ref
    local rel = math.sqrt((d * d):sum():item() / (ref * ref):sum():item())
    if not (rel < 1e-5) then error(string.format("non-invariant conv: rel. error %.2e vs f64", rel)) end
    ms.set_batch_invariant(true)
  end
end)

H.case("bad inputs name the op and the shapes", function()
  local x = ms.zeros({ 2, 3, 8, 8 })
  H.raises(function() F.conv2d(x, ms.zeros({ 4, 2, 3, 3 })) end, "conv2d", "channel mismatch",
    "[2, 3, 8, 8]", "[4, 2, 3, 3]")
  H.raises(function() F.conv2d(ms.zeros({ 3, 8, 8 }), ms.zeros({ 4, 3, 3, 3 })) end, "conv2d",
    "4-d", "[3, 8, 8]")
  H.raises(function() F.conv2d(x, ms.zeros({ 4, 3, 3 })) end, "conv2d", "[4, 3, 3]")
  H.raises(function() F.conv2d(x, ms.zeros({ 4, 1, 3, 3 }), nil, { groups = 2 }) end, "conv2d",
    "groups 2", "[2, 3, 8, 8]")
  H.raises(function() F.conv2d(x, ms.zeros({ 3, 1, 3, 3 }), nil, { groups = 0 }) end, "groups")
  H.raises(function() F.conv2d(x, ms.zeros({ 4, 3, 3, 3 }, { dtype = "f64" })) end, "conv2d",
    "same dtype", "f32", "f64")
  H.raises(function() F.conv2d(x, ms.zeros({ 4, 3, 9, 9 })) end, "conv2d", "output size",
    "[4, 3, 9, 9]")
  H.raises(function() F.conv2d(x, ms.zeros({ 4, 3, 3, 3 }), nil, { dilation = 5 }) end,
    "output size")
  H.raises(function() F.conv2d(x, ms.zeros({ 4, 3, 3, 3 }), ms.zeros({ 5 })) end, "conv2d",
    "bias", "[5]")
  H.raises(function() F.conv2d(x, ms.zeros({ 4, 3, 3, 3 }), nil, { stride = 0 }) end, "stride")
  H.raises(function() F.conv2d(x, ms.zeros({ 4, 3, 3, 3 }), nil, { padding = -1 }) end, "padding")
  H.raises(function() F.conv2d(x, ms.zeros({ 4, 3, 3, 3 }), nil, { stride = { 1, 2, 3 } }) end,
    "stride")
  local xi = ms.zeros({ 1, 3, 4, 4 }, { dtype = "i32" })
  H.raises(function() F.conv2d(xi, ms.zeros({ 1, 3, 3, 3 }, { dtype = "i32" })) end, "conv2d",
    "floating", "i32")
end)

H.case("no storage leaks across forward/backward (incl. f16 and error paths)", function()
  collectgarbage()
  local before = ms.memory_stats().storages
  for _ = 1, 3 do
    for _, dt in ipairs { "f32", "f64", "f16" } do
      local x = ms.ones({ 2, 16, 6, 6 }, { dtype = dt }):requires_grad_()
      local w = ms.ones({ 16, 16, 3, 3 }, { dtype = dt }):requires_grad_()
      local b = ms.ones({ 16 }, { dtype = dt }):requires_grad_()
      local y = F.conv2d(x, w, b, { padding = 1 })
      y:backward(ms.ones(y:size(), { dtype = dt }))
      pcall(F.conv2d, x, ms.ones({ 4, 3, 3, 3 }, { dtype = dt }))
      for _, t in ipairs { x.grad, w.grad, b.grad, y, x, w, b } do t:free() end
    end
  end
  collectgarbage()
  H.eq(ms.memory_stats().storages, before, "live storages")
end)

print("gradcheck configs: " .. ngradchecks .. " (+2 partial)")
H.done()
