-- test_devices.lua: devices in Lua: names (cpu:N, gpu alias), the default device, to(device,
-- dtype) with gradients, *_like / new_*, mixed-device errors, Module:to, checkpoints across
-- devices, and every tensor the library makes (backward, optimizer state, EMA, metrics,
-- losses, inference) following the device of the tensors it serves.
local H = require "harness"
local ms = require "moonseg"
local nn, F = ms.nn, ms.functional

-- `there` is never the default device, so a tensor the library made on the default device
-- instead of its operands' one shows up as a mixed-device error.
local here = ms.get_default_device()
local there = here == "cpu:1" and "cpu:2" or "cpu:1"

local function all_on(list, dev, what)
  for i, t in ipairs(list) do H.eq(t.device, dev, (what or "tensor") .. " " .. i .. " device") end
end

H.case("device names: cpu, cpu:N, gpu and cuda aliases, canonical strings", function()
  local cd = ms.Tensor.canonical_device
  H.eq(cd("cpu"), "cpu")
  H.eq(cd("cpu:0"), "cpu")
  H.eq(cd("cpu:3"), "cpu:3")
  H.eq(cd("cuda"), "cuda:0")
  H.eq(cd("gpu"), "cuda:0")
  H.eq(cd("gpu:2"), "cuda:2")
  H.eq(cd("cuda:1"), "cuda:1")
  for _, bad in ipairs { "tpu", "cpu:", "cpu:x", "gpu1", "cuda:-1", "" } do
    H.raises(function() cd(bad) end, "unknown device '" .. bad .. "'")
  end
  H.raises(function() ms.zeros(2, { device = "npu:0" }) end, "unknown device 'npu:0'", "cpu:N", "gpu:N")
  local t = ms.zeros(2, { device = "cpu:1" })
  H.eq(t.device, "cpu:1")
  H.eq(t:device_str(), "cpu:1")
  H.eq(ms.zeros(2, { device = "cpu:0" }).device, "cpu")
  H.raises(function() ms.zeros(2, { device = "cpu:8" }) end, "cpu:8")
end)

H.case("the default device: factories use it, set/get round trip, bad names refused", function()
  local before = ms.get_default_device()
  ms.set_default_device("cpu:2")
  local ok, err = pcall(function()
    H.eq(ms.get_default_device(), "cpu:2")
    for _, t in ipairs { ms.zeros(2), ms.ones(2, 3), ms.empty(4), ms.full({ 2 }, 7), ms.arange(3),
      ms.tensor({ 1, 2 }), ms.rand(2), ms.randn(2), ms.randint(0, 5, { 3 }) } do
      H.eq(t.device, "cpu:2", "factory result")
    end
    H.eq(ms.zeros(2, { device = "cpu" }).device, "cpu", "explicit device wins")
  end)
  ms.set_default_device(before)
  if not ok then error(err, 0) end
  H.raises(function() ms.set_default_device("tpu") end, "unknown device 'tpu'")
  H.eq(ms.get_default_device(), before)
end)

H.case("MOONSEG_DEFAULT_DEVICE sets the default device when moonseg loads", function()
  local lua = os.getenv("MOONSEG_LUAJIT") or "luajit"
  local function run(value)
    local p = io.popen("MOONSEG_DEFAULT_DEVICE='" .. value .. "' " .. lua ..
      " -e 'local ms = require \"moonseg\"; io.write(ms.zeros(1).device)' 2>&1")
    local out = p:read("*a")
    p:close()
    return out
  end
  H.eq(run("cpu:3"), "cpu:3")
  H.eq(run("cpu"), "cpu")
  local bad = run("tpu:1")
  assert(bad:find("MOONSEG_DEFAULT_DEVICE", 1, true) and bad:find("unknown device 'tpu:1'", 1, true), bad)
end)

H.case("to(device), to(dtype), to(device, dtype), to{...}, to(tensor): values, and gradients flow back", function()
  local x = ms.tensor({ 1.5, -2, 3 }, { dtype = "f64", device = here }):requires_grad_()
  local y = x:to(there)
  H.eq(y.device, there)
  H.eq(y.dtype, "f64")
  H.same_list(y:tolist(), { 1.5, -2, 3 })
  H.eq(x:to(here), x, "no move: the same tensor")
  local z = x:to(there, "f32")
  H.eq(z.device, there)
  H.eq(z.dtype, "f32")
  local w = x:to { device = there, dtype = "f32" }
  H.eq(w.device, there)
  H.eq(w.dtype, "f32")
  local like = ms.zeros(1, { device = there, dtype = "f32" })
  local v = x:to(like)
  H.eq(v.device, there)
  H.eq(v.dtype, "f32")
  -- d/dx sum(3 * x moved to `there` in f32) = 3, back on x's device in x's dtype
  local loss = (z * 3):sum() + (y * y):sum()
  loss:backward()
  H.eq(x.grad.device, here)
  H.eq(x.grad.dtype, "f64")
  H.same_list(x.grad:tolist(), { 3 + 2 * 1.5, 3 - 4, 3 + 6 })
end)

H.case("zeros_like, ones_like, full_like, empty_like and new_* keep dtype and device", function()
  local x = ms.zeros({ 2, 3 }, { dtype = "f64", device = there })
  for _, t in ipairs { ms.zeros_like(x), ms.ones_like(x), ms.full_like(x, 4), ms.empty_like(x) } do
    H.eq(t.device, there)
    H.eq(t.dtype, "f64")
    H.same_list(t:size(), { 2, 3 })
  end
  H.same_list(H.flat(ms.full_like(x, 4)), { 4, 4, 4, 4, 4, 4 })
  H.same_list(H.flat(ms.ones_like(x)), { 1, 1, 1, 1, 1, 1 })
  H.eq(ms.zeros_like(x, { dtype = "i64" }).dtype, "i64")
  H.eq(ms.zeros_like(x, { device = here }).device, here)
  local n = x:new_zeros(4)
  H.eq(n.device, there)
  H.eq(n.dtype, "f64")
  H.same_list(n:size(), { 4 })
  H.same_list(x:new_ones(2, 2):size(), { 2, 2 })
  H.same_list(H.flat(x:new_ones({ 2 })), { 1, 1 })
  H.same_list(H.flat(x:new_full({ 3 }, 2.5)), { 2.5, 2.5, 2.5 })
  H.eq(x:new_empty(5).device, there)
  H.eq(x:new_zeros(3, { dtype = "u8" }).dtype, "u8")
  local t = x:new_tensor({ 1, 2 })
  H.eq(t.device, there)
  H.eq(t.dtype, "f64")
end)

H.case("an op on two devices errors, naming the op and both devices", function()
  local a = ms.ones({ 2, 2 }, { device = "cpu:0" })
  local b = ms.ones({ 2, 2 }, { device = "cpu:1" })
  H.raises(function() return a + b end, "add", "cpu:0", "cpu:1")
  H.raises(function() return ms.matmul(a, b) end, "matmul", "cpu:0", "cpu:1")
  H.raises(function() return ms.cat({ a, b }, 1) end, "cat", "cpu:0", "cpu:1")
  local x = ms.ones({ 1, 2, 4, 4 }, { device = "cpu:1" })
  local w = ms.ones({ 3, 2, 3, 3 }, { device = "cpu:0" })
  H.raises(function() return F.conv2d(x, w) end, "conv2d", "cpu:0", "cpu:1")
  H.raises(function() return ms.where(a:gt(0), a, b) end, "where", "cpu:0", "cpu:1")
  -- copy_ moves values between devices (the explicit way across)
  local d = ms.zeros({ 2, 2 }, { device = "cpu:1" }):copy_(ms.full({ 2, 2 }, 3, { device = "cpu:0" }))
  H.same_list(H.flat(d), { 3, 3, 3, 3 })
end)

local Net = nn.class("DevNet")
function Net:__init()
  self.conv = nn.Conv2d(3, 4, 3, { padding = 1 })
  self.bn = nn.BatchNorm2d(4)
  self.head = nn.Conv2d(4, 3, 1)
  self:register_buffer("steps", ms.zeros({ 1 }, { dtype = "i64" }))
end
function Net:forward(x)
  local y = F.relu(self.bn(self.conv(x)))
  local a, b = y:split(2, 2)[1], y:split(2, 2)[2]
  y = ms.cat({ a, b }, 2)
  local m = y:max(2, true) -- max's backward builds its mask on the values' device
  y = ms.where(y:gt(-1), y, 0) + m * 0.1
  return self.head(F.dropout(y, 0.2, self.training, { generator = self.gen }))
end

local function batch(dev)
  local rnd = H.rng(5)
  local x = H.rand_tensor(rnd, { 2, 3, 6, 5 }, "f32"):to(dev)
  local vals = {}
  for i = 1, 2 * 6 * 5 do vals[i] = (i * 7) % 3 end
  vals[4] = 255
  local y = ms.tensor(vals, { dtype = "i64", device = dev }):view(2, 6, 5)
  return x, y
end

-- n steps of SGD with momentum (or AdamW) on dev; returns losses and the final state dict.
local function train(dev, n, opt_name, dtype)
  ms.manual_seed(11)
  local m = Net()
  m.gen = ms.Generator(3)
  m:to(dev, dtype)
  local opt = opt_name == "adamw" and ms.optim.AdamW { m, lr = 0.01 } or
    ms.optim.SGD { m, lr = 0.1, momentum = 0.9, weight_decay = 1e-4 }
  local ce = ms.losses.CrossEntropyLoss { weight = { 1, 2, 0.5 } }
  local dice = ms.losses.DiceLoss and ms.losses.DiceLoss {} or nil
  local x, y = batch(dev)
  if dtype then x = x:to(dtype) end
  local losses = {}
  for i = 1, n do
    local out = m(x)
    local loss = ce(out, y)
    if dice then loss = loss + dice(out, y) * 0.5 end
    opt:zero_grad()
    loss:backward()
    for _, p in ipairs(m:parameters()) do H.eq(p.grad.device, dev, "gradient device") end
    opt:step()
    losses[i] = loss:item()
  end
  return losses, m, opt
end

H.case("a training step on another device is bit-identical; every library tensor follows the device", function()
  for _, name in ipairs { "sgd", "adamw" } do
    local l0, m0, o0 = train(here, 3, name)
    local l1, m1, o1 = train(there, 3, name)
    H.same_list(l1, l0, name .. " losses bit for bit")
    local s0, s1 = m0:state_dict(), m1:state_dict()
    for k, v in pairs(s0) do
      H.eq(s1[k].device, there, k .. " device")
      H.same_list(H.flat(s1[k]), H.flat(v), name .. " " .. k .. " bit for bit")
    end
    for k, v in pairs(o1:state_dict()) do
      H.eq(v.device, there, name .. " optimizer state " .. k .. " device")
      H.eq(v.dtype, "f32", name .. " optimizer state " .. k .. " dtype")
    end
    H.eq(#(function() local n = {} for k in pairs(o0:state_dict()) do n[#n + 1] = k end return n end)() > 0, true)
  end
end)

H.case("optimizer state takes the parameter's dtype as well as its device", function()
  local _, m, opt = train(there, 1, "adamw", "f64")
  for k, v in pairs(opt:state_dict()) do
    H.eq(v.device, there, k)
    H.eq(v.dtype, "f64", k)
  end
  H.eq(m.steps.dtype, "i64", "integer buffer keeps its dtype under model:to(dtype)")
  local _, _, sgd = train(there, 1, "sgd", "f64")
  for k, v in pairs(sgd:state_dict()) do H.eq(v.dtype, "f64", k) end
end)

H.case("model:to moves parameters and buffers in place; the optimizer keeps seeing them", function()
  ms.manual_seed(2)
  local m = Net()
  local params = m:parameters()
  local opt = ms.optim.SGD { m, lr = 0.5 }
  local w_before = H.flat(m.conv.weight)
  H.eq(m:to(there), m, "returns the module")
  H.eq(m:device(), there)
  for i, p in ipairs(m:parameters()) do
    H.eq(p, params[i], "same parameter object")
    H.eq(p.device, there)
    H.eq(p.requires_grad, true)
  end
  for _, kv in ipairs(m:named_buffers()) do H.eq(kv[2].device, there, kv[1]) end
  H.same_list(H.flat(m.conv.weight), w_before, "values unchanged")
  local x = batch(there)
  m(x):sum():backward()
  local g = H.flat(m.conv.weight.grad)
  opt:step()
  local after = H.flat(m.conv.weight)
  for i = 1, #after do H.near(after[i], w_before[i] - 0.5 * g[i], 1e-6, "step " .. i) end
  -- dtype: floats convert, the i64 buffer stays; gradients move with their parameter
  m:to("f64")
  H.eq(m.conv.weight.dtype, "f64")
  H.eq(m.conv.weight.grad.dtype, "f64")
  H.eq(m.bn._mean.dtype, "f64")
  H.eq(m.steps.dtype, "i64")
  m:to(here, "f32")
  H.eq(m.conv.weight.device, here)
  H.eq(m.conv.weight.dtype, "f32")
  H.raises(function() m:to("f128") end, "unknown device or dtype 'f128'")
  H.raises(function() m:to("tpu:0") end, "unknown device or dtype 'tpu:0'")
  H.raises(function() m:to("cpu:x") end, "unknown device 'cpu:x'")
  H.raises(function() ms.zeros(1):to("half-ish") end, "unknown device or dtype 'half-ish'")
end)

H.case("load_state_dict copies into each tensor's own device and dtype, from any device", function()
  ms.manual_seed(4)
  local src = Net():to(there)
  ms.no_grad(function() src.bn._mean:fill_(0.25) end)
  ms.manual_seed(5)
  local dst = Net()
  dst:load_state_dict(src:state_dict())
  for k, v in pairs(dst:state_dict()) do
    H.eq(v.device, here, k)
    H.same_list(H.flat(v), H.flat(src:state_dict()[k]), k)
  end
  -- and back, into f64 parameters on `there`
  local back = Net():to(there, "f64")
  back:load_state_dict(dst:state_dict())
  H.eq(back.conv.weight.device, there)
  H.eq(back.conv.weight.dtype, "f64")
  H.near(H.flat(back.conv.weight), H.flat(dst.conv.weight), 1e-7)
  -- an optimizer's saved state loads onto its parameters' device
  local _, _, opt = train(here, 1, "adamw")
  local _, m2, opt2 = train(there, 1, "adamw")
  opt2:load_state_dict(opt:state_dict())
  for k, v in pairs(opt2:state_dict()) do H.eq(v.device, there, k) end
  H.eq(m2:device(), there)
end)

H.case("ms.save from one device, ms.load onto any (cpu:0 by default, or {device=})", function()
  local path = os.tmpname()
  local w = ms.tensor({ { 1.5, -2 }, { 0.25, 8 } }, { device = there })
  ms.save(path, { w = w, n = ms.arange(3, { device = there }) })
  local a = ms.load(path)
  H.eq(a.w.device, "cpu")
  H.same_list(H.flat(a.w), { 1.5, -2, 0.25, 8 })
  local b = ms.load(path, { device = there })
  H.eq(b.w.device, there)
  H.eq(b.n.device, there)
  H.eq(b.n.dtype, "i64")
  H.same_list(H.flat(b.n), { 0, 1, 2 })
  H.raises(function() ms.load(path, { device = "tpu" }) end, "unknown device 'tpu'")
  os.remove(path)
end)

H.case("EMA, confusion matrix, losses and inference follow the model's device", function()
  local EMA = require "moonseg.engine.ema"
  local infer = require "moonseg.engine.infer"
  ms.manual_seed(6)
  local m = Net():to(there)
  local ema = EMA.new(m, 0.9)
  ema:update(m)
  for k, s in pairs(ema:state_dict()) do H.eq(s.device, there, "EMA " .. k) end
  m:eval()
  local x = batch(here) -- an image as the loader gives it: on the host's default device
  local logits = infer.logits(m, x, { size = { 6, 5 } })
  H.eq(logits.device, there)
  local slid = infer.logits(m, x:narrow(1, 1, 1), { is_slide = true, crop_size = { 4, 4 }, stride = { 2, 2 } })
  H.eq(slid.device, there)
  local flip = infer.logits(m, x, { flip_horizontal = true })
  H.eq(flip.device, there)
  local _, y = batch(there)
  local cm = ms.metrics.ConfusionMatrix(3)
  cm:update(logits, y)
  H.eq(cm.mat.device, there)
  local total = 0
  for _, row in ipairs(cm:matrix()) do for _, v in ipairs(row) do total = total + v end end
  H.eq(total, 2 * 6 * 5 - 1, "every non-ignored pixel counted")
  for _, loss in ipairs { ms.losses.CrossEntropyLoss { weight = { 1, 2, 3 } },
    ms.losses.OhemCrossEntropyLoss { min_kept = 4 } } do
    local l = loss(logits, y)
    H.eq(l.device, there)
  end
end)

H.case("backward closures make their tensors on the gradient's device", function()
  local x = ms.tensor({ { 1, 5, 2 }, { 4, 0, 3 } }, { dtype = "f64", device = there }):requires_grad_()
  local v = x:max(2) -- values only: indices unused
  local parts = x:split(1, 2) -- only the first part used: zeros for the others
  local e = ms.cat({ x, ms.zeros({ 0 }, { dtype = "f64", device = there }):requires_grad_() }, 1)
  local loss = v:sum() + parts[1]:sum() * 2 + ms.where(x:gt(2), x, 0):sum() + e:sum() +
    F.dropout(x, 1, true):sum()
  loss:backward()
  H.eq(x.grad.device, there)
  -- max: 1 at each row's max; split: 2 on column 1; where: 1 where x > 2; cat: 1 everywhere
  H.same_list(H.flat(x.grad), { 0 + 2 + 0 + 1, 1 + 0 + 1 + 1, 0 + 0 + 0 + 1,
    1 + 2 + 1 + 1, 0 + 0 + 0 + 1, 0 + 0 + 1 + 1 })
end)

H.done()
