-- test_nn.lua: modules: registration, Paddle key names, state-dict round trips and errors,
-- train/eval, printing; SGD/AdamW updates against hand-computed values; LR schedule.
local H = require "harness"
local ms = require "moonseg"
local nn, optim = ms.nn, ms.optim

local Block = nn.class("Block")
function Block:__init(cin, cout)
  self.conv = nn.Conv2d(cin, cout, 3, { padding = 1, bias = false })
  self._batch_norm = nn.BatchNorm2d(cout)
  self.relu = nn.ReLU()
end
function Block:forward(x) return self.relu(self._batch_norm(self.conv(x))) end

local function net()
  ms.manual_seed(0)
  return nn.Sequential(Block(3, 4), Block(4, 2), nn.Conv2d(2, 3, 1))
end

H.case("parameters, buffers and keys follow Paddle's names", function()
  local m = net()
  H.same_list(m:state_dict_keys(), {
    "0.conv.weight", "0._batch_norm.weight", "0._batch_norm.bias",
    "1.conv.weight", "1._batch_norm.weight", "1._batch_norm.bias",
    "2.weight", "2.bias",
    "0._batch_norm._mean", "0._batch_norm._variance", "1._batch_norm._mean", "1._batch_norm._variance" })
  H.eq(#m:parameters(), 8)
  H.eq(m:num_parameters(), 4 * 3 * 9 + 8 + 2 * 4 * 9 + 4 + 3 * 2 + 3)
  for _, p in ipairs(m:parameters()) do H.eq(p.requires_grad, true) end
  H.eq(m:get(1).conv.weight:size(1), 4)
end)

H.case("conv weights start N(0, 2/fan_in) as Paddle's default", function()
  ms.manual_seed(1)
  local c = nn.Conv2d(64, 64, 3)
  local w = c.weight
  local std = (w * w):mean():item() ^ 0.5
  H.near(std, math.sqrt(2 / (64 * 9)), 0.05)
  H.eq(c.bias:sum():item(), 0)
end)

H.case("state dict round trip and strict errors", function()
  local a, b = net(), net()
  ms.no_grad(function() for _, p in ipairs(b:parameters()) do p:add_(1) end end)
  a:load_state_dict(b:state_dict())
  local x = ms.randn(1, 3, 5, 5)
  a:eval(); b:eval()
  H.near(a(x):sum():item(), b(x):sum():item(), 1e-5)
  local sd = b:state_dict()
  sd["2.bias"] = nil
  sd["extra.key"] = ms.zeros(1)
  H.raises(function() a:load_state_dict(sd) end, "missing keys: 2.bias", "unexpected keys: extra.key")
  local r = a:load_state_dict(sd, false)
  H.same_list(r.missing, { "2.bias" })
  local bad = b:state_dict()
  bad["2.weight"] = ms.zeros(3, 2, 3, 3)
  H.raises(function() a:load_state_dict(bad, false) end, "2.weight", "[3, 2, 3, 3]", "[3, 2, 1, 1]")
end)

H.case("train and eval switch batch norm between batch and running statistics", function()
  local bn = nn.BatchNorm2d(2)
  local x = ms.randn(4, 2, 3, 3) * 3 + 5
  local y = bn(x)
  H.near(y:mean():item(), 0, 1e-5) -- batch statistics
  H.near(bn._mean:tolist()[1], 0.1 * x[{ {}, 1 }]:mean():item(), 1e-5) -- momentum 0.9: 10% of the batch mean
  bn:eval()
  H.eq(bn.training, false)
  local z = bn(x)
  assert(math.abs(z:mean():item()) > 1, "eval mode must use running statistics")
end)

H.case("modules print as a tree", function()
  local s = tostring(net())
  assert(s:find("Sequential(", 1, true), s)
  assert(s:find("(0): Block(", 1, true), s)
  assert(s:find("(conv): Conv2d(3, 4, kernel_size=[3, 3], padding=1, bias=false)", 1, true), s)
  assert(s:find("(_batch_norm): BatchNorm2d(4, momentum=0.9, epsilon=1e-05)", 1, true), s)
end)

H.case("SGD with momentum and Paddle-style L2 decay", function()
  local p = ms.tensor({ 1, 2 }):requires_grad_()
  local opt = optim.SGD { { p }, lr = 0.1, momentum = 0.9, weight_decay = 0.5 }
  p.grad = ms.tensor({ 1, 1 })
  opt:step() -- g' = g + 0.5 p = {1.5, 2}; v = g'; p = p - 0.1 v
  H.near(p:tolist(), { 0.85, 1.8 }, 1e-6)
  p.grad = ms.tensor({ 0, 0 })
  opt:step() -- g' = {0.425, 0.9}; v = 0.9 v + g' = {1.775, 2.7}
  H.near(p:tolist(), { 0.85 - 0.1775, 1.8 - 0.27 }, 1e-6)
end)

H.case("AdamW first step moves each weight by lr", function()
  local p = ms.tensor({ 1, -1 }):requires_grad_()
  local opt = optim.AdamW { { p }, lr = 0.01, weight_decay = 0 }
  p.grad = ms.tensor({ 0.3, -5 })
  opt:step()
  H.near(p:tolist(), { 0.99, -0.99 }, 1e-5)
end)

H.case("polynomial decay with linear warmup as PaddleSeg", function()
  local lr = optim.PolynomialDecay { learning_rate = 0.01, decay_steps = 90, power = 0.9, warmup_iters = 10 }
  H.near(lr(0), 0)
  H.near(lr(5), 0.005)
  H.near(lr(10), 0.01)
  H.near(lr(55), 0.01 * 0.5 ^ 0.9)
  H.near(lr(100), 0)
  H.near(lr(200), 0)
end)

H.done()
