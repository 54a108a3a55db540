-- test_memory.lua: 200 forward/backward/SGD steps of a small conv net keep tensor bytes flat.
local H = require "harness"
local ms = require "moonseg"
local F = ms.functional

H.case("host tensor bytes stay flat over 200 training steps", function()
  ms.manual_seed(3)
  local w1 = (ms.randn(8, 3, 3, 3) * 0.2):requires_grad_()
  local g1, b1 = ms.ones(8, { requires_grad = true }), ms.zeros(8, { requires_grad = true })
  local w2 = (ms.randn(4, 8, 1, 1) * 0.2):requires_grad_()
  local rm, rv = ms.zeros(8), ms.ones(8)
  local params = { w1, g1, b1, w2 }
  local x = ms.randn(2, 3, 16, 16)
  local y = ms.randint(0, 4, { 2, 16, 16 })
  local samples = {}
  for step = 1, 200 do
    local h = F.conv2d(x, w1, nil, { padding = 1, stride = 2 })
    h = F.relu(F.batch_norm(h, rm, rv, g1, b1, true, 0.1, 1e-5))
    local logits = F.interpolate(F.conv2d(h, w2), { size = { 16, 16 }, mode = "bilinear" })
    local loss = F.cross_entropy(logits, y)
    loss:backward()
    ms.no_grad(function()
      for _, p in ipairs(params) do
        p:add_(p.grad, -0.01)
        p.grad:zero_()
      end
    end)
    samples[step] = ms.memory_stats().allocated
  end
  -- After warm-up every step ends with exactly the same bytes alive.
  for step = 10, 200 do
    if samples[step] ~= samples[10] then
      error(string.format("allocated bytes drift: step 10 %d, step %d %d", samples[10], step, samples[step]))
    end
  end
end)

H.done()
