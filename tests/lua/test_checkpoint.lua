-- test_checkpoint.lua: gradient checkpointing (moonseg.nn.checkpoint, `with_cp`): the same
-- outputs and gradients as without it, batch norm running statistics moved once per step,
-- dropout masks replayed in the recompute, nothing recorded without gradients, and a lower
-- peak of tensor memory (ResNet blocks and UNet conv blocks).
local H = require "harness"
local ms = require "moonseg"
local F = ms.functional
local nn = ms.nn
local cp = require "moonseg.nn.checkpoint"
local G = require "moonseg.gradcheck"

ms.set_num_threads(2)

-- conv -> BN -> ReLU -> dropout -> conv, plus the input (a residual), checkpointed when asked.
local Block = nn.class("Block")
function Block:__init(c, with_cp, p)
  self.conv1 = nn.Conv2d(c, c, 3, { padding = 1 })
  self.bn = nn.BatchNorm2d(c)
  self.drop = nn.Dropout(p or 0.3)
  self.conv2 = nn.Conv2d(c, c, 3, { padding = 2, dilation = 2 })
  self.with_cp = with_cp
end
function Block:_forward(x) return x + self.conv2(self.drop(F.relu(self.bn(self.conv1(x))))) end
function Block:forward(x)
  if self.with_cp then return cp.run(self, self._forward, self, x) end
  return self:_forward(x)
end

local function net(with_cp, dtype)
  ms.manual_seed(5)
  local s = nn.Sequential(Block(4, with_cp), Block(4, with_cp))
  if dtype then
    ms.no_grad(function()
      for _, m in ipairs(s:modules()) do
        for _, n in ipairs(m._param_names) do m._parameters[n] = nn.Parameter(m._parameters[n]:to(dtype)) end
        for _, n in ipairs(m._buffer_names) do m._buffers[n] = m._buffers[n]:to(dtype) end
      end
    end)
  end
  return s
end

local function step(with_cp, x_requires_grad)
  local m = net(with_cp)
  ms.manual_seed(9)
  local x = ms.randn(2, 4, 6, 5)
  if x_requires_grad then x:requires_grad_() end
  local y = m(x)
  local w = ms.randn(2, 4, 6, 5)
  local after_fwd = ms.get_rng_state()
  ;(y * w):sum():backward()
  return m, y, x, after_fwd
end

H.case("same output and gradients (params, input) with and without with_cp; dropout replayed", function()
  local m0, y0, x0 = step(false, true)
  local m1, y1, x1, rng1 = step(true, true)
  H.near(H.values(y1), H.values(y0), 0, "outputs")
  local p0, p1 = m0:named_parameters(), m1:named_parameters()
  for i = 1, #p0 do
    H.eq(p1[i][2].grad ~= nil, true, p1[i][1])
    H.near(H.values(p1[i][2].grad), H.values(p0[i][2].grad), 1e-6, p0[i][1])
  end
  H.near(H.values(x1.grad), H.values(x0.grad), 1e-6, "input grad")
  -- the recompute leaves the generator where it was: backward draws nothing visible
  local md = net(true)
  ms.manual_seed(9)
  local y = md(ms.randn(2, 4, 6, 5))
  local w = ms.randn(2, 4, 6, 5)
  local before = ms.get_rng_state()
  ;(y * w):sum():backward()
  local after = ms.get_rng_state()
  H.eq(after.seed, before.seed)
  H.eq(after.offset, before.offset)
  H.eq(rng1.offset > 0, true)
end)

H.case("batch norm running statistics move once per step, as without checkpointing", function()
  local m0 = step(false, true)
  local m1 = step(true, true)
  for _, k in ipairs { "0.bn._mean", "0.bn._variance", "1.bn._mean", "1.bn._variance" } do
    local a, b = m0:state_dict()[k], m1:state_dict()[k]
    H.near(H.values(b), H.values(a), 0, k)
  end
  -- and they did move (momentum 0.9: mean 0.1 * batch mean), once: a second update would differ
  local v = H.values(m1:state_dict()["0.bn._mean"])
  local moved = false
  for _, e in ipairs(v) do if e ~= 0 then moved = true end end
  H.eq(moved, true)
end)

H.case("first block's input needs no grad (the image): parameters still get gradients", function()
  local m0 = step(false, false)
  local m1 = step(true, false)
  local p0, p1 = m0:named_parameters(), m1:named_parameters()
  for i = 1, #p0 do H.near(H.values(p1[i][2].grad), H.values(p0[i][2].grad), 1e-6, p0[i][1]) end
end)

H.case("no recording without gradients: no_grad and eval run the plain forward", function()
  local m = net(true)
  local y = ms.no_grad(function() return m(ms.randn(1, 4, 5, 5)) end)
  H.eq(y.grad_fn, nil)
  -- frozen parameters and an input without grad: nothing to checkpoint
  for _, p in ipairs(m:parameters()) do p.requires_grad = false end
  H.eq(m(ms.randn(1, 4, 5, 5)).grad_fn, nil)
  H.eq(cp.active(m, ms.randn(1, 4, 5, 5)), false)
  -- an output that is the input (identity) gets its own node, the input stays a leaf
  local id = nn.Identity()
  local x = ms.randn(3):requires_grad_()
  local out = cp.run(id, function(a) return a end, x)
  H.eq(x.grad_fn, nil)
  out:sum():backward()
  H.near(H.values(x.grad), { 1, 1, 1 }, 0)
end)

H.case("gradcheck through a checkpointed block (f64, dropout mask replayed)", function()
  local m = net(true, "f64")
  local x = ms.randn(1, 4, 4, 3, { dtype = "f64" }):requires_grad_()
  G.gradcheck(function(a)
    ms.manual_seed(21) -- same masks for every evaluation
    return m(a)
  end, { x })
end)

H.case("list outputs and several tensor inputs (HRNet-style branches)", function()
  local c1, c2 = nn.Conv2d(2, 2, 1), nn.Conv2d(2, 2, 1)
  local holder = nn.Sequential(c1, c2)
  local function f(a, b) return { c1(a) + b, c2(b) } end
  local a, b = ms.randn(1, 2, 3, 3):requires_grad_(), ms.randn(1, 2, 3, 3):requires_grad_()
  local o = cp.run(holder, f, a, b)
  ;(o[1]:sum() + o[2]:sum() * 2):backward()
  local ga, gb, gw1, gw2 = a.grad:clone(), b.grad:clone(), c1.weight.grad:clone(), c2.weight.grad:clone()
  a.grad, b.grad, c1.weight.grad, c2.weight.grad = nil, nil, nil, nil
  local p = f(a, b)
  ;(p[1]:sum() + p[2]:sum() * 2):backward()
  H.near(H.values(ga), H.values(a.grad), 1e-6)
  H.near(H.values(gb), H.values(b.grad), 1e-6)
  H.near(H.values(gw1), H.values(c1.weight.grad), 1e-6)
  H.near(H.values(gw2), H.values(c2.weight.grad), 1e-6)
  -- only the second output used: the first output's gradient is zero-filled
  a.grad, b.grad = nil, nil
  cp.run(holder, f, a, b)[2]:sum():backward()
  H.near(H.values(a.grad), H.values(ms.zeros(1, 2, 3, 3)), 0)
end)

H.case("peak tensor memory drops with with_cp, whenever the collector runs", function()
  -- six blocks at 8 channels; the collector is stopped, so only deterministic frees count
  local function peak(with_cp)
    ms.manual_seed(4)
    local blocks = {}
    for k = 1, 6 do blocks[k] = Block(8, with_cp) end
    local m = nn.Sequential(unpack(blocks))
    local x = ms.randn(2, 8, 32, 32)
    m(x):sum():backward() -- the parameters' gradients exist from here on
    H.settle_memory()
    collectgarbage("stop")
    ms.reset_peak_memory()
    local base = ms.memory_stats().allocated
    local y = m(x)
    local after_fwd = ms.memory_stats().allocated - base
    y:sum():backward()
    local p = ms.memory_stats().peak - base
    collectgarbage("restart")
    return p, after_fwd
  end
  local p0, f0 = peak(false)
  local p1, f1 = peak(true)
  local act = 2 * 8 * 32 * 32 * 4 -- bytes of one activation
  -- without: every block's temporaries (5 activations and a mask) stay until backward;
  -- with: each block's input, and one block's temporaries at a time
  H.eq(f0 > 6 * 4 * act, true, "without with_cp, after forward: " .. f0)
  H.eq(f1 < 6 * 1.5 * act, true, "with_cp, after forward: " .. f1)
  H.eq(p1 < 0.5 * p0, true, string.format("peak %d with_cp vs %d without", p1, p0))
end)

-- Two training steps on the same batch: gradients of the first; peak tensor bytes of the
-- second (its parameter gradients exist already, so the peak is activations and transients).
local function model_step(build, with_cp, shape)
  ms.manual_seed(2)
  local m = build(with_cp)
  ms.manual_seed(3)
  local x = ms.randn(shape)
  local function loss_of(outs) return (ms.is_tensor(outs) and outs or outs[#outs]):square():mean() end
  loss_of(m(x)):backward()
  local grads = {}
  for i, p in ipairs(m:parameters()) do grads[i] = p.grad and H.values(p.grad) or false end
  H.settle_memory()
  ms.reset_peak_memory()
  local base = ms.memory_stats().allocated
  local held, loss = H.held_by(function() return loss_of(m(x)) end) -- what the graph keeps for backward
  loss:backward()
  return m, grads, ms.memory_stats().peak - base, held
end

local function compare(name, build, shape)
  local m0, g0, peak0, held0 = model_step(build, false, shape)
  local m1, g1, peak1, held1 = model_step(build, true, shape)
  H.eq(#g0, #g1)
  local worst, n = 0, 0
  for i = 1, #g0 do
    H.eq(not g0[i], not g1[i], name .. " gradient presence " .. i)
    if g0[i] then
      local a, b = g0[i], g1[i]
      local scale = 0
      for _, v in ipairs(a) do scale = math.max(scale, math.abs(v)) end
      for j = 1, #a do worst = math.max(worst, math.abs(a[j] - b[j]) / (scale + 1e-30)) end
      n = n + 1
    end
  end
  H.eq(n > 0, true)
  H.eq(worst < 1e-5, true, name .. ": worst relative gradient difference " .. worst)
  local sd0, sd1 = m0:state_dict(), m1:state_dict()
  for _, kv in ipairs(m0:named_buffers()) do
    H.near(H.values(sd1[kv[1]]), H.values(sd0[kv[1]]), 1e-6, name .. " buffer " .. kv[1])
  end
  H.eq(held1 < 0.5 * held0, true, string.format("%s: held after forward %d with_cp vs %d without", name, held1, held0))
  -- the no-grad forward's temporaries are freed at each block's end, so the peak drops too
  H.eq(peak1 < 0.8 * peak0, true, string.format("%s: peak %d with_cp vs %d without", name, peak1, peak0))
  print(string.format("%s %s: tensor bytes held after forward %.1f MB without, %.1f MB with_cp; " ..
    "step peak above weights and grads %.1f MB without, %.1f MB with_cp; worst rel grad diff %.2g",
    name, table.concat(shape, "x"), held0 / 2 ^ 20, held1 / 2 ^ 20, peak0 / 2 ^ 20, peak1 / 2 ^ 20, worst))
end

H.case("UNet with_cp: gradients and BN statistics agree to f32 rounding, peak memory drops", function()
  compare("UNet", function(with_cp) return ms.models.UNet { num_classes = 3, with_cp = with_cp } end, { 2, 3, 48, 48 })
end)

H.case("ResNet50_vd with_cp: gradients and BN statistics agree, peak memory drops", function()
  compare("ResNet50_vd OS8", function(with_cp)
    return ms.models.backbones.ResNet50_vd { output_stride = 8, with_cp = with_cp }
  end, { 2, 3, 48, 48 })
end)

H.done()
