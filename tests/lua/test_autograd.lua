-- test_autograd.lua: the engine: accumulation, shared inputs, no_grad, detach, hooks, views, errors.
local H = require "harness"
local ms = require "moonseg"
local gc = require "moonseg.gradcheck"

local function f64(t) return ms.tensor(t, { dtype = "f64", requires_grad = true }) end

H.case("gradient of a simple expression", function()
  local x = f64({ 1, 2, 3 })
  local y = (x * x + x * 2):sum()
  y:backward()
  H.same_list(x.grad:tolist(), { 4, 6, 8 }) -- 2x + 2
end)

H.case("gradients accumulate across backward calls until cleared", function()
  local x = f64({ 1, 2 })
  ;(x * 3):sum():backward()
  ;(x * 3):sum():backward()
  H.same_list(x.grad:tolist(), { 6, 6 })
  x.grad = nil
  ;(x * 1):sum():backward()
  H.same_list(x.grad:tolist(), { 1, 1 })
end)

H.case("an input used twice gets both contributions; y = a + b shares no grad storage", function()
  local a, b = f64({ 1 }), f64({ 2 })
  local y = a + b
  y:sum():backward()
  H.same_list(a.grad:tolist(), { 1 })
  H.same_list(b.grad:tolist(), { 1 })
  a.grad:add_(10) -- must not change b.grad
  H.same_list(b.grad:tolist(), { 1 })
  local x = f64({ 3 })
  local z = x * x * x
  z:sum():backward()
  H.same_list(x.grad:tolist(), { 27 })
end)

H.case("no_grad and detach stop recording", function()
  local x = f64({ 1, 2 })
  local y = ms.no_grad(function() return x * 2 end)
  H.eq(y.requires_grad, nil)
  H.eq(y.grad_fn, nil)
  local d = (x * 2):detach()
  H.eq(d.requires_grad, nil)
  H.eq(ms.is_grad_enabled(), true)
  H.raises(function() ms.no_grad(function() error("inner") end) end, "inner")
  H.eq(ms.is_grad_enabled(), true) -- restored after an error
end)

H.case("views are differentiable", function()
  local x = f64({ { 1, 2, 3 }, { 4, 5, 6 } })
  gc.gradcheck(function(t) return t:t():reshape(3, 2) * ms.tensor({ 1, 2 }, { dtype = "f64" }) end, { x })
  gc.gradcheck(function(t) return t[{ 2, { 2, 3 } }] end, { x })
  gc.gradcheck(function(t) return t:select(2, -1) end, { x })
  gc.gradcheck(function(t) return t:narrow(2, 2, 2):permute(2, 1) end, { x })
  gc.gradcheck(function(t) return t:unsqueeze(2):expand(2, 4, 3) end, { x })
  gc.gradcheck(function(t) return t:view(6):slice(1, 1, 6, 2) end, { x })
  gc.gradcheck(function(t) return t:flatten():unsqueeze(1):squeeze(1) end, { x })
  -- f32 rounding needs a wide finite-difference step to stay below the tolerance
  gc.gradcheck(function(t) return t:to("f32"):to("f64") end, { x }, { eps = 1e-2, atol = 1e-4 })
  gc.gradcheck(function(t) return t:clone() end, { x })
end)

H.case("gradient-ready hooks fire once per leaf after all contributions", function()
  local w = f64({ 1, 1 })
  local fired, seen = 0, nil
  w:register_hook(function(p) fired = fired + 1; seen = p.grad:tolist() end)
  local y = (w * 2):sum() + (w * 3):sum()
  y:backward()
  H.eq(fired, 1)
  H.same_list(seen, { 5, 5 })
end)

H.case("backward errors are clear", function()
  local x = f64({ 1, 2 })
  H.raises(function() (x * 2):backward() end, "scalar", "[2]")
  H.raises(function() ms.ones(2):sum():backward() end, "does not require grad")
  local y = (x * x):sum()
  y:backward()
  H.raises(function() y:backward() end, "second time", "retain_graph")
  local z = (x * x):sum()
  z:backward(nil, true)
  z:backward()
  H.same_list(x.grad:tolist(), { 2 + 4, 4 + 8 }) -- first y, then z twice
  H.raises(function() x:add_(1) end, "in-place", "requires grad")
end)

H.case("backward frees saved tensors as it goes", function()
  local x = ms.randn(64, 64, { requires_grad = true })
  -- of what the forward and backward made, only x's gradient is left
  local held = H.held_by(function() ((x * x):exp() * x):sum():backward() end)
  H.eq(held, 64 * 64 * 4)
  H.same_list(x.grad:size(), { 64, 64 })
end)

H.case("an op recorded without a backward raises naming it when a gradient reaches it", function()
  local x = f64({ 1, 2 })
  local y = ms.no_grad(function() return x * 2 end)
  ms.autograd.record("frobnicate", { x }, { y })
  -- forward use and no_grad are fine; the error comes only when a gradient flows in
  local z = (y + x):sum()
  H.raises(function() z:backward() end, "frobnicate", "no backward")
  -- a branch that does not reach the op is unaffected
  x.grad = nil
  ;(x * 3):sum():backward()
  H.same_list(x.grad:tolist(), { 3, 3 })
end)

-- Every floating-point op on a tensor that requires grad either records a backward or is a
-- documented non-differentiable one; none may silently return a tensor cut from the graph.
H.case("no differentiable-looking op silently drops the gradient", function()
  local x = ms.tensor({ { 0.5, 1.5, 2 }, { 3, 0.25, 1 } }, { dtype = "f64", requires_grad = true })
  local calls = {
    sum = { 2 }, mean = { 1 }, var = { 2 }, std = { 2 }, prod = { 1 }, max = {}, min = {},
    amax = { 2 }, amin = { 1 }, norm = { 2, 2 }, neg = {}, abs = {}, exp = {}, log = {}, sqrt = {},
    rsqrt = {}, sigmoid = {}, tanh = {}, relu = {}, hardswish = {}, hardsigmoid = {}, sign = {},
    reciprocal = {}, square = {}, leaky_relu = {}, gelu = {}, clamp = { 0.5, 2 }, pow = { 2 },
    softmax = { 2 }, log_softmax = { 2 }, clone = {}, flip = { 2 }, t = {}, contiguous = {},
    transpose = { 1, 2 }, reshape = { { 3, 2 } }, flatten = {}, unsqueeze = { 1 }, narrow = { 2, 1, 2 },
    select = { 1, 1 }, expand = { { 2, 2, 3 } }, permute = { 2, 1 }, squeeze = {},
  }
  for name, args in pairs(calls) do
    local y = x[name](x, unpack(args))
    if not y.requires_grad then error(name .. " returned a tensor cut from the autograd graph") end
    local y1 = select(1, x[name](x, unpack(args)))
    y1:sum():backward()
    H.eq(x.grad ~= nil, true, name .. " gave no gradient")
    x.grad = nil
  end
end)

H.done()
