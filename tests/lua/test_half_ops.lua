-- test_half_ops.lua: every op family in f16 and bf16 against the same op in f32, forward and
-- gradients, within per-dtype tolerances (bf16 keeps 8 mantissa bits, f16 11).
local H = require "harness"
local ms = require "moonseg"
local F = ms.functional

local TOL = { bf16 = 4e-2, f16 = 6e-3 }

-- max |a - b| / max |b| over the whole tensor (b is the f32 reference).
local function rel_err(a, b)
  local d = (a:to("f64") - b:to("f64")):abs():max():item()
  local m = b:to("f64"):abs():max():item()
  return d / math.max(m, 1e-12)
end

-- op(inputs...) -> output tensor; run with f32 inputs and with inputs in dt; compare outputs and
-- the gradients of sum(out * probe) with respect to every float input.
local function check(name, op, inputs, dt, opts)
  opts = opts or {}
  local function run(d)
    local xs = {}
    for i, x in ipairs(inputs) do
      if x:is_floating_point() and not (opts.keep and opts.keep[i]) then
        xs[i] = ms.no_grad(function() return x:to(d):clone() end):requires_grad_(not opts.no_grad)
      else
        xs[i] = x
      end
    end
    local y = op(unpack(xs))
    local grads = {}
    if not opts.no_grad then
      -- a fixed, uneven weighting so that every output element's gradient differs
      ms.manual_seed(99)
      local w = ms.randn(y:size())
      local s = (y:to("f32") * w):sum()
      s:backward()
      for i, x in ipairs(xs) do if x.grad then grads[i] = x.grad end end
    end
    return y, grads
  end
  local y32, g32 = run("f32")
  local yh, gh = run(dt)
  if not opts.out_dtype then H.eq(yh:type(), dt, name .. " " .. dt .. " output dtype") end
  local tol = (opts.tol or 1) * TOL[dt]
  local e = rel_err(yh, y32)
  assert(e <= tol, string.format("%s %s forward: relative error %.3g > %.3g", name, dt, e, tol))
  for i, g in pairs(g32) do
    assert(gh[i], name .. " " .. dt .. ": no gradient for input " .. i)
    H.eq(gh[i]:type(), inputs[i] and dt, name .. " grad dtype")
    local eg = rel_err(gh[i], g)
    assert(eg <= tol, string.format("%s %s grad %d: relative error %.3g > %.3g", name, dt, i, eg, tol))
  end
end

ms.manual_seed(5)
local x4 = ms.randn({ 2, 8, 10, 10 })
local w4 = ms.randn({ 8, 8, 3, 3 }) * 0.2
local dw4 = ms.randn({ 8, 1, 3, 3 }) * 0.2
local b8 = ms.randn({ 8 })
local probe4 = ms.randn({ 2, 8, 10, 10 })
local target = ms.randint(0, 8, { 2, 10, 10 })

local cases = {
  { "conv2d", function(x, w, b) return ms.conv2d(x, w, b, { padding = 1 }) end, { x4, w4, b8 } },
  { "conv2d stride 2", function(x, w) return ms.conv2d(x, w, nil, { padding = 1, stride = 2 }) end, { x4, w4 } },
  { "conv2d depthwise", function(x, w) return ms.conv2d(x, w, nil, { padding = 1, groups = 8 }) end, { x4, dw4 } },
  { "conv2d 1x1", function(x, w) return ms.conv2d(x, w) end, { x4, ms.randn({ 4, 8, 1, 1 }) } },
  { "matmul", function(a, b) return ms.matmul(a, b) end, { ms.randn({ 6, 16 }), ms.randn({ 16, 5 }) } },
  { "bmm", function(a, b) return ms.bmm(a, b) end, { ms.randn({ 2, 6, 16 }), ms.randn({ 2, 16, 5 }) } },
  { "batch_norm train", function(x, w, b) return F.batch_norm(x, ms.zeros({ 8 }), ms.ones({ 8 }), w, b, true, 0.1, 1e-5) end,
    { x4, ms.rand({ 8 }) + 0.5, b8 }, { keep = { [2] = true, [3] = true } } },
  { "layer_norm", function(x) return F.layer_norm(x, { 10 }) end, { x4 } },
  { "max_pool2d", function(x) return F.max_pool2d(x, 3, 2, 1) end, { x4 } },
  { "avg_pool2d", function(x) return F.avg_pool2d(x, 2, 2, 0) end, { x4 } },
  { "adaptive_avg_pool2d", function(x) return F.adaptive_avg_pool2d(x, { 3, 3 }) end, { x4 } },
  { "interpolate bilinear", function(x) return F.interpolate(x, { size = { 17, 13 } }, "bilinear", false) end, { x4 } },
  { "interpolate nearest", function(x) return F.interpolate(x, { size = { 20, 20 } }, "nearest") end, { x4 } },
  { "softmax", function(x) return x:softmax(2) end, { x4 } },
  { "log_softmax", function(x) return x:log_softmax(2) end, { x4 } },
  { "cross_entropy", function(x) return F.cross_entropy(x, target) end, { x4 }, { out_dtype = true } },
  { "relu", function(x) return x:relu() end, { x4 } },
  { "sigmoid", function(x) return x:sigmoid() end, { x4 } },
  { "tanh", function(x) return x:tanh() end, { x4 } },
  { "hardswish", function(x) return x:hardswish() end, { x4 } },
  { "gelu", function(x) return x:gelu() end, { x4 } },
  { "exp", function(x) return x:exp() end, { x4 } },
  { "log", function(x) return (x:abs() + 0.5):log() end, { x4 } },
  { "sqrt", function(x) return (x:abs() + 0.1):sqrt() end, { x4 } },
  { "add mul sub div", function(a, b) return (a + b) * a - b / (b:abs() + 1) end, { x4, probe4 } },
  { "sum", function(x) return x:sum(2) end, { x4 } },
  { "mean", function(x) return x:mean() end, { x4 } },
  { "cat", function(a, b) return ms.cat({ a, b }, 2) end, { x4, probe4 } },
}

-- The chunked half kernels (csrc/cpu/half_loop.c, batch_norm.c): rows longer than a chunk (512)
-- with a tail, strided and broadcast operands, bool outputs, half mixed with f32.
local xl = ms.randn({ 2, 3, 33, 37 }) -- planes of 1221 elements: two full chunks and a tail
local bias = ms.randn({ 1, 3, 1, 1 })
cases[#cases + 1] = { "batch_norm train, long planes", function(x, w, b)
  return F.batch_norm(x, ms.zeros({ 3 }), ms.ones({ 3 }), w, b, true, 0.1, 1e-5) end,
  { xl * 3 + 2, ms.rand({ 3 }) + 0.5, ms.randn({ 3 }) }, { keep = { [2] = true, [3] = true } } }
cases[#cases + 1] = { "batch_norm eval, long planes", function(x, w, b)
  return F.batch_norm(x, ms.rand({ 3 }), ms.rand({ 3 }) + 0.5, w, b, false) end,
  { xl, ms.rand({ 3 }) + 0.5, ms.randn({ 3 }) }, { keep = { [2] = true, [3] = true } } }
cases[#cases + 1] = { "relu, long rows", function(x) return x:relu() end, { xl } }
cases[#cases + 1] = { "avg_pool2d, odd planes", function(x) return F.avg_pool2d(x, 3, 2, 1) end, { xl } }
cases[#cases + 1] = { "adaptive_avg_pool2d, odd planes", function(x) return F.adaptive_avg_pool2d(x, { 4, 5 }) end, { xl } }
cases[#cases + 1] = { "sigmoid, transposed input", function(x) return x:transpose(3, 4):sigmoid() end, { xl } }
cases[#cases + 1] = { "add, broadcast bias", function(a, b) return a + b end, { xl, bias } }
cases[#cases + 1] = { "mul, transposed operand", function(a, b) return a:transpose(3, 4) * b:transpose(3, 4) end,
  { xl, xl * 0.5 + 1 } }
cases[#cases + 1] = { "sub, half with f32", function(a, b) return a - b end, { xl, xl * 0.3 },
  { keep = { [2] = true }, out_dtype = true } }

for _, dt in ipairs { "bf16", "f16" } do
  for _, c in ipairs(cases) do
    H.case(c[1] .. " in " .. dt .. " vs f32", function() check(c[1], c[2], c[3], dt, c[4]) end)
  end
end

local same_values = H.same_values

-- Half pooling kernels compute in f32 on the half values and round once: forward and backward
-- equal the f32 op on the same (half-valued) inputs, rounded to half, exactly. (Max pooling's
-- value test above cannot use long planes: rounding to half makes ties that move the argmax.)
for _, dt in ipairs { "bf16", "f16" } do
  H.case("pools in " .. dt .. ": the f32 kernel on half values, rounded once", function()
    ms.manual_seed(6)
    local xh = ms.randn({ 2, 3, 33, 37 }):to(dt)
    for _, c in ipairs {
      { "max_pool2d", function(x) return F.max_pool2d(x, 3, 2, 1) end },
      { "avg_pool2d", function(x) return F.avg_pool2d(x, 3, 2, 1) end },
      { "adaptive_avg_pool2d", function(x) return F.adaptive_avg_pool2d(x, { 4, 5 }) end },
    } do
      local a = xh:clone():requires_grad_()
      local b = xh:to("f32"):requires_grad_()
      local ya, yb = c[2](a), c[2](b)
      H.eq(ya:type(), dt, c[1] .. " output dtype")
      same_values(ya, yb:to(dt), c[1] .. " forward")
      local g = ms.randn(ya:size()):to(dt)
      ya:backward(g)
      yb:backward(g:to("f32"))
      same_values(a.grad, b.grad:to(dt), c[1] .. " backward")
    end
  end)
end

-- Mixed half and f32 operands compute in f32 (the result is f32); comparisons give bool.
for _, dt in ipairs { "bf16", "f16" } do
  H.case("half with f32 and comparisons in " .. dt, function()
    ms.manual_seed(4)
    local a = ms.randn({ 3, 700 })
    local ah = a:to(dt)
    local r = ah - a
    H.eq(r:type(), "f32", "half - f32 promotes to f32")
    H.eq((r - (ah:to("f32") - a)):abs():max():item(), 0, "computed in f32 on the half values")
    local gt = ah:gt(ah * 0.5)
    H.eq(gt:type(), "bool", "comparison output")
    local af = ah:to("f32")
    H.same_list(gt:to("i64"):view(-1):tolist(), af:gt(af * 0.5):to("i64"):view(-1):tolist(), "comparison values")
  end)
end

-- The vectorised f32 -> half conversion (contiguous rows) rounds exactly as the scalar one
-- (strided rows): nearest even on ties, overflow to inf, NaN kept, subnormals; and back.
for _, dt in ipairs { "bf16", "f16" } do
  H.case("contiguous and strided casts agree bit for bit in " .. dt, function()
    local vals = { 0, -0.0, 1, -1, 1 + 2 ^ -8, 1 + 3 * 2 ^ -8, 1 + 2 ^ -11, 1 + 3 * 2 ^ -11,
      65504, 65520, 70000, 3.4e38, -3.4e38, 1 / 0, -1 / 0, 0 / 0, 2 ^ -24, 2 ^ -25, 3 * 2 ^ -26,
      1e-40, -1e-40, 2 ^ -126, 2 ^ -133, 0.1, -0.3, 123.456, 1e10, -7.7e-5 }
    ms.manual_seed(3)
    local all = ms.cat({ ms.tensor(vals, { dtype = "f32" }), ms.randn({ 600 }) * 100 }, 1)
    local m = all:numel()
    local contig = all:to(dt) -- the contiguous row kernel
    local two = ms.stack({ all, all }, 2) -- [m, 2]: a column has stride 2, the scalar path
    same_values(contig, two:select(2, 1):to(dt), dt .. " narrowing, contiguous vs strided")
    local wide = contig:to("f32")
    same_values(wide, ms.stack({ contig, contig }, 2):select(2, 2):to("f32"),
      dt .. " widening, contiguous vs strided")
    H.eq(wide[16]:item() ~= wide[16]:item(), true, "NaN stays NaN")
    H.eq(wide[14]:item(), 1 / 0, "inf stays inf")
  end)
end

H.done()
