-- test_amp.lua: mixed precision on the CPU: the multi-tensor C steps (unscale + found-inf flag,
-- scale update, fused SGD / AdamW with masters, global norm), GradScaler skipping overflowing
-- steps bit for bit, the O1 autocast policy (dtypes of intermediates, gradients through casts),
-- O2 masters, and the --scale_loss flag rules.
local H = require "harness"
local ms = require "moonseg"
local mt = require "moonseg.multi_tensor"
local amp = ms.amp
local INF = math.huge

local function bits_equal(a, b, what)
  H.eq(a:type(), b:type(), what .. " dtype")
  local x, y = a:to("f64"):tolist(), b:to("f64"):tolist()
  local fx, fy = {}, {}
  local function flat(v, out) if type(v) == "table" then for _, e in ipairs(v) do flat(e, out) end else out[#out + 1] = v end end
  flat(x, fx)
  flat(y, fy)
  H.eq(#fx, #fy, what .. " size")
  for i = 1, #fx do H.eq(string.format("%a", fx[i]), string.format("%a", fy[i]), what .. " [" .. i .. "]") end
end

H.case("unscale divides every gradient and flags inf and nan in one call", function()
  for _, dt in ipairs { "f32", "f16", "bf16", "f64" } do
    local a = ms.tensor({ 2, -4, 8 }, { dtype = dt })
    local b = ms.full({ 70000 }, 6, { dtype = dt }) -- spans two 64K chunks
    local scale, flag = ms.full({ 1 }, 2, { dtype = "f32" }), ms.zeros({ 1 }, { dtype = "f32" })
    mt.unscale_({ a, b }, scale, flag)
    H.same_list(a:to("f64"):tolist(), { 1, -2, 4 }, dt)
    H.eq(b:to("f64"):sum():item(), 3 * 70000, dt)
    H.eq(flag:item(), 0, dt .. " finite: no flag")
    b[{ 69999 }] = INF -- an inf in the second chunk of the second tensor
    mt.unscale_({ a, b }, scale, flag)
    H.eq(flag:item(), 1, dt .. " inf flagged")
    flag:zero_()
    a[{ 2 }] = 0 / 0
    mt.unscale_({ a }, scale, flag)
    H.eq(flag:item(), 1, dt .. " nan flagged")
  end
end)

H.case("multi-tensor calls name the bad argument", function()
  local s, f = ms.full({ 1 }, 2, { dtype = "f32" }), ms.zeros({ 1 }, { dtype = "f32" })
  H.raises(function() mt.unscale_({ ms.zeros({ 3 }, { dtype = "i64" }) }, s, f) end, "mt_unscale_", "grads[0]", "floating point")
  H.raises(function() mt.unscale_({ ms.zeros({ 4, 4 }):t() }, s, f) end, "grads[0]", "contiguous")
  H.raises(function() mt.unscale_({ ms.zeros({ 3 }) }, ms.full({ 2 }, 1, { dtype = "f32" }), f) end, "scale", "1 element")
  local p = ms.zeros({ 3 }, { dtype = "f32" })
  H.raises(function() mt.sgd_step({ p }, { ms.zeros({ 4 }) }, nil, nil, { lr = 1, momentum = 0, weight_decay = 0 }) end,
    "mt_sgd_step", "params[0]", "grads[0]", "differ in size")
  H.raises(function() mt.sgd_step({ p }, { ms.zeros({ 3 }) }, { ms.zeros({ 3 }, { dtype = "f16" }) }, nil,
    { lr = 1, momentum = 0.9, weight_decay = 0 }) end, "momentum_bufs[0]", "must be f32")
  H.raises(function() mt.scale_update(s, ms.zeros({ 2 }, { dtype = "i64" }), f, { dynamic = true, growth_interval = 0,
    growth_factor = 2, backoff_factor = 0.5, min_scale = 1, max_scale = 2 ^ 32 }) end, "growth_interval >= 1")
end)

local dyn = { dynamic = true, growth_interval = 2000, growth_factor = 2, backoff_factor = 0.5, min_scale = 1, max_scale = 2 ^ 32 }

H.case("dynamic scale: halves on overflow, doubles after 2000 good steps, floor 1, never inf", function()
  local s, c = ms.full({ 1 }, 1024, { dtype = "f32" }), ms.zeros({ 2 }, { dtype = "i64" })
  local bad, good = ms.ones({ 1 }, { dtype = "f32" }), ms.zeros({ 1 }, { dtype = "f32" })
  mt.scale_update(s, c, bad, dyn)
  H.eq(s:item(), 512)
  H.same_list(c:tolist(), { 0, 1 }, "counters after an overflow")
  for _ = 1, 1999 do mt.scale_update(s, c, good, dyn) end
  H.eq(s:item(), 512, "1999 good steps: not yet")
  mt.scale_update(s, c, good, dyn)
  H.eq(s:item(), 1024, "2000 good steps double it")
  H.same_list(c:tolist(), { 0, 1 })
  for _ = 1, 100 do mt.scale_update(s, c, bad, dyn) end
  H.eq(s:item(), 1, "repeated overflow stops at the floor")
  H.eq(c:tolist()[2], 101)
  local fast = { dynamic = true, growth_interval = 1, growth_factor = 2, backoff_factor = 0.5, min_scale = 1, max_scale = 2 ^ 32 }
  for _ = 1, 200 do mt.scale_update(s, c, good, fast) end
  H.eq(s:item(), 2 ^ 32, "growth stops at the ceiling, never inf")
end)

H.case("static scale never changes, but overflowing steps still count as skipped", function()
  local sc = amp.GradScaler { init_scale = 512, dynamic = false }
  local p = ms.tensor({ 1, 2 }, { dtype = "f32" }):requires_grad_()
  local opt = ms.optim.SGD { { p }, lr = 0.1 }
  for i = 1, 2100 do
    p.grad = ms.tensor(i % 700 == 0 and { INF, 1 } or { 0, 0 }, { dtype = "f32" })
    sc:step(opt)
    sc:update()
  end
  H.eq(sc:get_scale(), 512)
  H.eq(sc:skipped_steps(), 3)
  H.same_list(p:tolist(), { 1, 2 }, "zero grads and skipped steps leave p")
end)

H.case("fused SGD equals the formula, with and without f32 masters", function()
  local p = ms.tensor({ 1, 2 }, { dtype = "f32" }):requires_grad_()
  local opt = ms.optim.SGD { { p }, lr = 0.1, momentum = 0.9, weight_decay = 0.5 }
  p.grad = ms.tensor({ 1, 1 }, { dtype = "f32" })
  opt:step()
  H.near(p:tolist(), { 0.85, 1.8 }, 1e-6)
  -- bf16 weights, f32 masters: the update happens on the masters, the weights are their cast
  local q = ms.tensor({ 1, 2 }, { dtype = "f32" }):requires_grad_()
  local o2 = ms.optim.SGD { { q }, lr = 1e-3, momentum = 0.9 }
  o2:enable_master_weights()
  local qb = ms.no_grad(function() return q:to("bf16") end)
  o2.params = { qb }
  for _ = 1, 3 do
    qb.grad = ms.tensor({ 1, 1 }, { dtype = "bf16" })
    o2:step()
  end
  -- v: 1, 1.9, 2.71 -> w = 1 - 1e-3 * 5.61: a change bf16 alone (8 bits) would round away
  H.near(o2.master[1]:tolist()[1], 1 - 5.61e-3, 1e-6)
  H.eq(qb:type(), "bf16")
  bits_equal(qb, o2.master[1]:to("bf16"), "weights = cast(master)")
end)

H.case("fused AdamW: bias correction from the on-device step, masters saved in the state dict", function()
  local p = ms.tensor({ 1, -1 }, { dtype = "f32" }):requires_grad_()
  local opt = ms.optim.AdamW { { p }, lr = 0.01, weight_decay = 0 }
  p.grad = ms.tensor({ 0.3, -5 }, { dtype = "f32" })
  opt:step()
  H.near(p:tolist(), { 0.99, -0.99 }, 1e-5)
  opt:step(ms.ones({ 1 }, { dtype = "f32" })) -- flagged: nothing moves, step stays 1
  H.near(p:tolist(), { 0.99, -0.99 }, 1e-5)
  H.eq(opt:extra_state().t, 1)
  opt:enable_master_weights()
  assert(opt:state_dict()["master.1"], "master weights in the state dict")
end)

-- The typed fast paths (csrc/cpu/multi_tensor.c) over tensors longer than a 64K chunk and a
-- 512-element block: f32 masters with bf16/f16 model copies and half gradients, against the
-- formula in f64.
H.case("fused SGD and AdamW with masters over several chunks: the formula, copies = cast(master)", function()
  local n = 70001
  for _, d in ipairs { "bf16", "f16" } do
    ms.manual_seed(11)
    local w0 = ms.randn({ n })
    local g = ms.randn({ n }):to(d)
    -- SGD, momentum and Paddle's L2 decay, two steps
    local q = w0:clone():requires_grad_()
    local o2 = ms.optim.SGD { { q }, lr = 0.01, momentum = 0.9, weight_decay = 0.1 }
    o2:enable_master_weights()
    local qh = ms.no_grad(function() return q:to(d) end)
    o2.params = { qh }
    local w, v = w0:to("f64"), ms.zeros({ n }, { dtype = "f64" })
    local g64 = g:to("f64")
    for _ = 1, 2 do
      qh.grad = g
      o2:step()
      local gi = g64 + w * 0.1
      v = v * 0.9 + gi
      w = w - v * 0.01
    end
    local err = (o2.master[1]:to("f64") - w):abs():max():item()
    assert(err < 1e-5, d .. " SGD master: max error " .. err)
    bits_equal(qh, o2.master[1]:to(d), d .. " SGD: model copy = cast(master)")
    -- AdamW
    local a = w0:clone():requires_grad_()
    local oa = ms.optim.AdamW { { a }, lr = 0.01, weight_decay = 0.05 }
    oa:enable_master_weights()
    local ah = ms.no_grad(function() return a:to(d) end)
    oa.params = { ah }
    local wa, m1, m2 = w0:to("f64"), ms.zeros({ n }, { dtype = "f64" }), ms.zeros({ n }, { dtype = "f64" })
    for t = 1, 2 do
      ah.grad = g
      oa:step()
      wa = wa * (1 - 0.01 * 0.05)
      m1 = m1 * 0.9 + g64 * 0.1
      m2 = m2 * 0.999 + g64 * g64 * 0.001
      local mh, vh = m1 / (1 - 0.9 ^ t), m2 / (1 - 0.999 ^ t)
      wa = wa - mh / (vh:sqrt() + 1e-8) * 0.01
    end
    local ea = (oa.master[1]:to("f64") - wa):abs():max():item()
    assert(ea < 1e-5, d .. " AdamW master: max error " .. ea)
    bits_equal(ah, oa.master[1]:to(d), d .. " AdamW: model copy = cast(master)")
    -- unscale over half gradients: exact division by a power of two, inf found in chunk 2
    local gh = ms.randn({ n }):to(d)
    local want = gh:to("f32") / 1024
    mt.unscale_({ gh }, ms.full({ 1 }, 1024, { dtype = "f32" }), ms.zeros({ 1 }, { dtype = "f32" }))
    bits_equal(gh, want:to(d), d .. " unscaled")
    local gi = ms.ones({ n }):to(d)
    gi[70000] = INF
    local flag = ms.zeros({ 1 }, { dtype = "f32" })
    mt.unscale_({ gi }, ms.full({ 1 }, 2, { dtype = "f32" }), flag)
    H.eq(flag:item(), 1, d .. " inf in the second chunk found")
  end
end)

H.case("global norm and clipping without a read-back per tensor", function()
  local a, b = ms.tensor({ 3, 0 }, { dtype = "f32" }), ms.tensor({ 4 }, { dtype = "bf16" })
  local n = mt.norm({ a, b })
  H.eq(n:item(), 5)
  mt.clip_({ a, b }, n, 1)
  H.near(a:tolist()[1], 0.6, 1e-5)
  H.near(b:to("f64"):tolist()[1], 0.8, 1e-2)
end)

-- A tiny conv + BN + conv net whose parameters we can poke.
local function tiny(seed)
  ms.manual_seed(seed or 1)
  local nn = ms.nn
  return nn.Sequential(nn.Conv2d(3, 8, 3, { padding = 1 }), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 1))
end

local function snapshot(model, opt)
  local s = {}
  for k, t in pairs(model:state_dict()) do s["model." .. k] = t:clone() end
  for k, t in pairs(opt:state_dict()) do s["opt." .. k] = t:clone() end
  return s
end

H.case("an overflowing step is skipped: weights and optimizer state unchanged bit for bit", function()
  local model = tiny()
  local opt = ms.optim.SGD { model, lr = 0.05, momentum = 0.9, weight_decay = 4e-5 }
  local sc = amp.GradScaler {}
  local x = ms.randn({ 2, 3, 8, 8 })
  local target = ms.randint(0, 4, { 2, 8, 8 })
  local poison = false
  model:parameters()[1]:register_hook(function(p) if poison then p.grad[{ 1, 1, 1, 1 }] = INF end end)
  local function step()
    local loss = ms.autocast("f16", function()
      return ms.functional.cross_entropy(model(x), target)
    end)
    opt:zero_grad()
    sc:scale(loss):backward()
    sc:step(opt)
    sc:update()
  end
  step() -- a good step creates the momentum buffers
  H.eq(sc:get_scale(), 1024)
  local before = snapshot(model, opt)
  poison = true
  model:eval() -- BN running stats held so only the step could change anything
  step()
  H.eq(sc:get_scale(), 512, "scale halves")
  H.eq(sc:skipped_steps(), 1, "skipped count rises")
  local after = snapshot(model, opt)
  for k, t in pairs(before) do bits_equal(after[k], t, k) end
  poison = false
  step()
  H.eq(sc:skipped_steps(), 1)
  H.eq(sc:get_scale(), 512)
  local moved = snapshot(model, opt)
  H.eq(moved["model.0.weight"]:ne(before["model.0.weight"]):to("i64"):sum():item() > 0, true, "a good step moves the weights")
end)

H.case("O1 autocast: half for conv and matmul, f32 for softmax, losses, reductions, resize, exp/log/pow", function()
  for _, d in ipairs { "bf16", "f16" } do
    local x = ms.randn({ 2, 3, 8, 8 })
    local w = ms.randn({ 4, 3, 3, 3 })
    local seen = {}
    ms.autocast(d, function()
      local y = ms.conv2d(x, w, nil, { padding = 1 })
      seen.conv = y:type()
      seen.bn = ms.functional.batch_norm(y, ms.zeros({ 4 }), ms.ones({ 4 }), ms.ones({ 4 }), ms.zeros({ 4 }), true, 0.1, 1e-5):type()
      seen.matmul = ms.matmul(ms.randn({ 3, 4 }), ms.randn({ 4, 5 })):type()
      seen.bmm = ms.bmm(ms.randn({ 2, 3, 4 }), ms.randn({ 2, 4, 5 })):type()
      seen.softmax = y:softmax(2):type()
      seen.log_softmax = y:log_softmax(2):type()
      seen.ce = ms.functional.cross_entropy(y, ms.randint(0, 4, { 2, 8, 8 })):type()
      seen.sum = y:sum():type()
      seen.mean = y:mean():type()
      seen.interp = ms.functional.interpolate(y, { size = { 16, 16 }, mode = "bilinear" }):type()
      seen.exp = y:exp():type()
      seen.log = y:abs():log():type()
      seen.pow = y:pow(2):type()
      seen.relu = y:relu():type()
    end)
    local half = d
    H.eq(seen.conv, half, d .. " conv")
    H.eq(seen.bn, half, d .. " bn takes half input with f32 weights")
    H.eq(seen.matmul, half, d .. " matmul")
    H.eq(seen.bmm, half, d .. " bmm")
    H.eq(seen.relu, half, d .. " relu follows its input")
    for _, k in ipairs { "softmax", "log_softmax", "ce", "sum", "mean", "interp", "exp", "log", "pow" } do
      H.eq(seen[k], "f32", d .. " " .. k)
    end
    H.eq(ms.conv2d(x, w, nil, { padding = 1 }):type(), "f32", "autocast off again after the call")
  end
end)

H.case("autocast casts are differentiable: gradients reach f32 leaves, close to the f32 ones", function()
  local x = ms.randn({ 2, 3, 6, 6 }):requires_grad_()
  local w = ms.randn({ 4, 3, 3, 3 }):requires_grad_()
  local function loss() return ms.conv2d(x, w, nil, { padding = 1 }):softmax(2):pow(2):sum() end
  loss():backward()
  local gx, gw = x.grad:clone(), w.grad:clone()
  for d, tol in pairs { bf16 = 3e-2, f16 = 5e-3 } do
    x.grad, w.grad = nil, nil
    ms.autocast(d, loss):backward()
    H.eq(x.grad:type(), "f32", d)
    H.eq(w.grad:type(), "f32", d)
    local ex = (x.grad - gx):abs():max():item() / gx:abs():max():item()
    local ew = (w.grad - gw):abs():max():item() / gw:abs():max():item()
    assert(ex < tol and ew < tol, string.format("%s: relative gradient error x %.3g, w %.3g (tol %g)", d, ex, ew, tol))
  end
end)

H.case("autocast leaves f64 alone and restores its state after an error", function()
  local x = ms.randn({ 2, 3 }, { dtype = "f64" })
  ms.autocast("bf16", function() H.eq(ms.matmul(x, x:t()):type(), "f64") end)
  H.raises(function() ms.autocast("bf16", function() error("boom") end) end, "boom")
  H.eq(amp.is_autocast_enabled(), false)
  H.raises(function() ms.autocast("f8", function() end) end, "f16 or bf16")
  local s = amp.scope("f16")
  H.eq(ms.matmul(ms.randn({ 2, 2 }), ms.randn({ 2, 2 })):type(), "f16")
  s.close()
  H.eq(amp.is_autocast_enabled(), false)
end)

H.case("O2: half weights except norms, f32 masters, f32 checkpoint weights", function()
  local model = tiny()
  local ref = {}
  for k, t in pairs(model:state_dict()) do ref[k] = t:clone() end
  local opt = ms.optim.SGD { model, lr = 0.05, momentum = 0.9 }
  amp.decorate(model, opt, "bf16")
  local sd = model:state_dict()
  H.eq(sd["0.weight"]:type(), "bf16")
  H.eq(sd["1.weight"]:type(), "f32", "BN weight stays f32")
  H.eq(sd["1._mean"]:type(), "f32", "BN running mean stays f32")
  local saved = amp.f32_state_dict(model, opt)
  bits_equal(saved["0.weight"], ref["0.weight"], "checkpoint weight is the f32 master")
  local x = ms.randn({ 2, 3, 8, 8 })
  local loss = ms.autocast("bf16", function()
    local y = model(x)
    return ms.functional.cross_entropy(y, ms.randint(0, 4, { 2, 8, 8 }))
  end)
  H.eq(loss:type(), "f32")
  opt:zero_grad()
  loss:backward()
  opt:step()
  bits_equal(model:state_dict()["0.weight"], opt.master[1]:to("bf16"), "weights follow masters")
end)

H.case("GradScaler state round-trips (scale, good-step count, skipped count)", function()
  local a = amp.GradScaler {}
  local c = a.counters
  c:copy_(ms.tensor({ 17, 3 }, { dtype = "i64" }))
  a.scale_t:fill_(256)
  local b = amp.GradScaler {}
  b:load_state_dict(require("moonseg.json").decode(require("moonseg.json").encode(a:state_dict())))
  H.eq(b:get_scale(), 256)
  H.same_list(b.counters:tolist(), { 17, 3 })
end)

H.case("--scale_loss is refused with bf16, naming the reason", function()
  local src = os.getenv("MOONSEG_SOURCE_DIR") or "."
  local p = io.popen("cd " .. src .. " && luajit recipes/pp_liteseg.lua --precision bf16 --scale_loss 512 --iters 1 2>&1; echo rc=$?")
  local out = p:read("*a")
  p:close()
  assert(out:find("--scale_loss", 1, true) and out:find("bf16", 1, true) and out:find("no loss scaling", 1, true), out)
  assert(out:find("rc=2", 1, true), out)
  p = io.popen("cd " .. src .. " && luajit recipes/pp_liteseg.lua --precision fp16 --scale_loss zero --iters 1 2>&1; echo rc=$?")
  out = p:read("*a")
  p:close()
  assert(out:find("'dynamic' or a number", 1, true) and out:find("rc=2", 1, true), out)
end)

H.done()
