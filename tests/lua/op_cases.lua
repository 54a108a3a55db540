-- op_cases.lua: the registry of op cases that test_backend_ops.lua runs on every device against
-- the CPU reference (cpu:0), in the manner of ggml's test-backend-ops.
--
-- A case is { name, inputs = {spec...}, fn = function(ms, x1, x2, ...) -> tensor | {tensors},
--   dtypes = {...} (float dtypes by default), grad = true (gradients of the float inputs
--   marked grad), inplace = {i...} (inputs the op changes in place, compared too), tol = factor }.
-- An input spec: { shape, kind = "float" (default) | "label" | "bool" | "index", lo =, hi =,
--   grad = true, t = {d1, d2} (made contiguous in the other order, then transposed: a strided
--   view), step = n (every n-th element of the last dim: a strided view), round = true (whole
--   numbers, so comparisons meet ties) }; "label" takes classes = and ignore = (some pixels).
local F = require("moonseg").functional

local FLOATS = { "f32", "f64", "f16", "bf16" }
local F32 = { "f32", "f64" }

local cases = {}
local function case(c)
  c.dtypes = c.dtypes or FLOATS
  if c.grad == nil then c.grad = true end
  cases[#cases + 1] = c
end

local function x(shape, o)
  o = o or {}
  o.shape = shape
  if o.grad == nil and (o.kind or "float") == "float" then o.grad = true end
  return o
end

-- ---- elementwise binary: plain, broadcast, strided -----------------------------------------------
for _, op in ipairs { "add", "sub", "mul", "div", "maximum", "minimum" } do
  local lo = op == "div" and 0.5 or nil
  case { name = op, inputs = { x { 3, 4 }, x({ 3, 4 }, { lo = lo }) },
    fn = function(_, a, b) return a[op](a, b) end }
  case { name = op .. " broadcast", inputs = { x { 2, 3, 4 }, x({ 3, 1 }, { lo = lo }) },
    fn = function(_, a, b) return a[op](a, b) end }
  case { name = op .. " strided", inputs = { x({ 4, 3 }, { t = { 1, 2 } }), x({ 4, 3 }, { step = 2, lo = lo }) },
    fn = function(_, a, b) return a[op](a, b) end }
end
case { name = "pow tensor", inputs = { x({ 3, 4 }, { lo = 0.5, hi = 2 }), x({ 3, 4 }, { lo = -1, hi = 2 }) },
  fn = function(ms, a, b) return ms.pow(a, b) end }
case { name = "add scalar", inputs = { x { 5, 3 } }, fn = function(_, a) return a + 2.5 end }
case { name = "mul scalar", inputs = { x { 5, 3 } }, fn = function(_, a) return a * -1.5 end }
case { name = "rsub scalar", inputs = { x { 5, 3 } }, fn = function(_, a) return 1 - a end }
for _, op in ipairs { "eq", "ne", "lt", "le", "gt", "ge" } do
  case { name = op, inputs = { x({ 3, 4 }, { grad = false, round = true }), x({ 1, 4 }, { grad = false, round = true }) },
    grad = false, fn = function(_, a, b) return a[op](a, b) end }
end

-- ---- elementwise unary -----------------------------------------------------------------------------
for _, op in ipairs { "neg", "abs", "exp", "sigmoid", "tanh", "relu", "gelu", "hardswish",
  "hardsigmoid", "square", "sign" } do
  case { name = op, inputs = { x { 4, 5 } }, fn = function(_, a) return a[op](a) end,
    grad = op ~= "sign" }
end
for _, op in ipairs { "log", "sqrt", "rsqrt", "reciprocal" } do
  case { name = op, inputs = { x({ 4, 5 }, { lo = 0.5, hi = 3 }) }, fn = function(_, a) return a[op](a) end }
end
case { name = "unary strided", inputs = { x({ 6, 4 }, { t = { 1, 2 } }) }, fn = function(_, a) return a:sigmoid() end }
case { name = "leaky_relu", inputs = { x { 4, 5 } }, fn = function(_, a) return F.leaky_relu(a, 0.1) end }
case { name = "clamp", inputs = { x { 4, 5 } }, fn = function(_, a) return a:clamp(-0.5, 0.75) end }
case { name = "pow scalar", inputs = { x({ 4, 5 }, { lo = 0.5, hi = 2 }) }, fn = function(_, a) return a:pow(2.5) end }
case { name = "cast f32", inputs = { x { 3, 4 } }, fn = function(_, a) return a:to("f32") end }
case { name = "cast i64", inputs = { x({ 3, 4 }, { lo = -9, hi = 9 }) }, grad = false, fn = function(_, a) return a:to("i64") end }

-- ---- reductions --------------------------------------------------------------------------------------
case { name = "sum all", inputs = { x { 3, 4, 5 } }, fn = function(_, a) return a:sum() end }
case { name = "sum dim", inputs = { x { 3, 4, 5 } }, fn = function(_, a) return a:sum(2) end }
case { name = "sum dims keepdim", inputs = { x { 3, 4, 5 } }, fn = function(_, a) return a:sum({ 1, 3 }, true) end }
case { name = "mean strided", inputs = { x({ 5, 4 }, { t = { 1, 2 } }) }, fn = function(_, a) return a:mean(1) end }
case { name = "max dim", inputs = { x { 3, 7 } }, fn = function(_, a) return a:max(2) end }
case { name = "min dim", inputs = { x { 3, 7 } }, fn = function(_, a) return a:min(1) end }
case { name = "amax", inputs = { x { 3, 7 } }, fn = function(_, a) return a:amax(2) end }
case { name = "argmax", inputs = { x { 2, 5, 3 } }, grad = false, fn = function(_, a) return a:argmax(2) end }
case { name = "var", inputs = { x { 4, 6 } }, dtypes = F32, fn = function(_, a) return a:var(2) end }
case { name = "norm", inputs = { x { 4, 6 } }, dtypes = F32, fn = function(_, a) return a:norm() end }

-- ---- linear algebra ------------------------------------------------------------------------------------
case { name = "matmul", inputs = { x { 5, 7 }, x { 7, 3 } }, fn = function(ms, a, b) return ms.matmul(a, b) end }
case { name = "matmul transposed", inputs = { x({ 5, 7 }, { t = { 1, 2 } }), x({ 7, 3 }, { t = { 1, 2 } }) },
  fn = function(ms, a, b) return ms.matmul(a, b) end }
case { name = "bmm", inputs = { x { 2, 4, 6 }, x { 2, 6, 3 } }, fn = function(ms, a, b) return ms.bmm(a, b) end }
case { name = "matmul broadcast", inputs = { x { 2, 3, 4, 5 }, x { 5, 2 } },
  fn = function(ms, a, b) return ms.matmul(a, b) end }

-- ---- convolution ---------------------------------------------------------------------------------------
local function conv(name, xs, ws, bias, o, extra)
  local inputs = { x(xs, extra), x(ws) }
  if bias then inputs[3] = x { ws[1] } end
  case { name = name, inputs = inputs, tol = 4,
    fn = function(ms, a, w, b) return F.conv2d(a, w, b, o) end }
end
conv("conv2d 3x3", { 2, 3, 7, 6 }, { 4, 3, 3, 3 }, true, { padding = 1 })
conv("conv2d 1x1 no bias", { 2, 4, 5, 5 }, { 6, 4, 1, 1 }, false, {})
conv("conv2d stride 2", { 1, 3, 9, 8 }, { 5, 3, 3, 3 }, true, { stride = 2, padding = 1 })
conv("conv2d dilation 2", { 1, 2, 9, 9 }, { 3, 2, 3, 3 }, true, { dilation = 2, padding = 2 })
conv("conv2d grouped", { 2, 4, 6, 6 }, { 6, 2, 3, 3 }, true, { groups = 2, padding = 1 })
conv("conv2d depthwise", { 1, 4, 6, 5 }, { 4, 1, 3, 3 }, false, { groups = 4, padding = 1 })
conv("conv2d 1x3 asymmetric", { 1, 2, 5, 7 }, { 3, 2, 1, 3 }, true, { padding = { 0, 1 } })
conv("conv2d channels-last input", { 1, 3, 5, 5 }, { 2, 3, 3, 3 }, true, { padding = 1 }, { t = { 2, 4 } })

-- ---- normalisation ------------------------------------------------------------------------------------
case { name = "batch_norm train", inputs = { x { 3, 4, 5, 5 }, x { 4 }, x { 4 },
    x({ 4 }, { grad = false }), x({ 4 }, { grad = false, lo = 0.5, hi = 2 }) }, inplace = { 4, 5 }, tol = 4,
  fn = function(ms, a, w, b, rm, rv) return F.batch_norm(a, rm, rv, w, b, true, 0.1, 1e-5) end }
case { name = "batch_norm eval", inputs = { x { 2, 4, 3, 3 }, x { 4 }, x { 4 },
    x({ 4 }, { grad = false }), x({ 4 }, { grad = false, lo = 0.5, hi = 2 }) }, tol = 4,
  fn = function(ms, a, w, b, rm, rv) return F.batch_norm(a, rm, rv, w, b, false, 0.1, 1e-5) end }
-- planes of 667 elements: the CPU's f16/bf16 kernel converts rows in 512-element chunks
case { name = "batch_norm train, long planes", inputs = { x { 2, 3, 23, 29 }, x { 3 }, x { 3 },
    x({ 3 }, { grad = false }), x({ 3 }, { grad = false, lo = 0.5, hi = 2 }) }, inplace = { 4, 5 }, tol = 4,
  fn = function(ms, a, w, b, rm, rv) return F.batch_norm(a, rm, rv, w, b, true, 0.1, 1e-5) end }
case { name = "layer_norm", inputs = { x { 3, 5, 8 }, x { 8 }, x { 8 } }, tol = 4,
  fn = function(ms, a, w, b) return F.layer_norm(a, 8, w, b) end }

-- ---- pooling and resizing ------------------------------------------------------------------------------
case { name = "max_pool2d 3x3 s2", inputs = { x { 2, 3, 7, 7 } }, fn = function(_, a) return F.max_pool2d(a, 3, 2, 1) end }
case { name = "max_pool2d 2x2", inputs = { x { 1, 2, 6, 4 } }, fn = function(_, a) return F.max_pool2d(a, 2) end }
case { name = "avg_pool2d 3x3 s2", inputs = { x { 2, 3, 7, 7 } }, fn = function(_, a) return F.avg_pool2d(a, 3, 2, 1) end }
case { name = "adaptive_avg_pool2d 1", inputs = { x { 2, 3, 5, 6 } }, fn = function(_, a) return F.adaptive_avg_pool2d(a, 1) end }
case { name = "adaptive_avg_pool2d 3x2", inputs = { x { 1, 2, 7, 5 } }, fn = function(_, a) return F.adaptive_avg_pool2d(a, { 3, 2 }) end }
case { name = "interpolate bilinear up", inputs = { x { 1, 2, 4, 5 } },
  fn = function(_, a) return F.interpolate(a, { size = { 9, 7 }, mode = "bilinear", align_corners = false }) end }
case { name = "interpolate bilinear corners", inputs = { x { 1, 2, 4, 5 } },
  fn = function(_, a) return F.interpolate(a, { size = { 7, 9 }, mode = "bilinear", align_corners = true }) end }
case { name = "interpolate bilinear down", inputs = { x { 1, 3, 9, 8 } },
  fn = function(_, a) return F.interpolate(a, { size = { 4, 3 }, mode = "bilinear" }) end }
case { name = "interpolate nearest x2", inputs = { x { 2, 2, 3, 4 } },
  fn = function(_, a) return F.interpolate(a, { scale_factor = 2, mode = "nearest" }) end }

-- ---- softmax and losses ------------------------------------------------------------------------------
case { name = "softmax dim 2", inputs = { x { 2, 5, 3 } }, fn = function(_, a) return F.softmax(a, 2) end }
case { name = "log_softmax last", inputs = { x { 3, 7 } }, fn = function(_, a) return F.log_softmax(a, -1) end }
case { name = "cross_entropy", inputs = { x { 2, 4, 3, 3 }, { shape = { 2, 3, 3 }, kind = "label", classes = 4 } },
  fn = function(_, a, t) return F.cross_entropy(a, t) end }
case { name = "cross_entropy ignore+weight", inputs = { x { 2, 3, 4, 2 },
    { shape = { 2, 4, 2 }, kind = "label", classes = 3, ignore = 255 }, x({ 3 }, { grad = false, lo = 0.5, hi = 2 }) },
  fn = function(_, a, t, w) return F.cross_entropy(a, t, { weight = w, ignore_index = 255 }) end }
case { name = "cross_entropy sum", inputs = { x { 4, 5 }, { shape = { 4 }, kind = "label", classes = 5 } },
  fn = function(_, a, t) return F.cross_entropy(a, t, { reduction = "sum" }) end }

-- ---- joins, views, selection ---------------------------------------------------------------------------
case { name = "cat dim 2", inputs = { x { 2, 3, 4 }, x { 2, 1, 4 }, x { 2, 2, 4 } },
  fn = function(ms, a, b, c) return ms.cat({ a, b, c }, 2) end }
case { name = "cat strided", inputs = { x({ 3, 4 }, { t = { 1, 2 } }), x { 3, 4 } },
  fn = function(ms, a, b) return ms.cat({ a, b }, 1) end }
case { name = "stack", inputs = { x { 3, 4 }, x { 3, 4 } }, fn = function(ms, a, b) return ms.stack({ a, b }, 2) end }
case { name = "split", inputs = { x { 7, 3 } }, fn = function(_, a) return a:split(3, 1) end }
case { name = "where", inputs = { { shape = { 3, 4 }, kind = "bool" }, x { 3, 4 }, x { 1, 4 } },
  fn = function(ms, c, a, b) return ms.where(c, a, b) end }
case { name = "where scalar", inputs = { { shape = { 3, 4 }, kind = "bool" }, x { 3, 4 } },
  fn = function(ms, c, a) return ms.where(c, a, 0) end }
case { name = "permute contiguous", inputs = { x { 2, 3, 4 } }, fn = function(_, a) return a:permute(3, 1, 2):contiguous() end }
case { name = "expand", inputs = { x { 3, 1 } }, fn = function(_, a) return a:expand(3, 4) * 1 end }
case { name = "flip", inputs = { x { 2, 3, 4 } }, fn = function(_, a) return a:flip(3) end }
case { name = "narrow", inputs = { x { 5, 4 } }, fn = function(_, a) return a:narrow(1, 2, 3):contiguous() end }
case { name = "dropout seeded", inputs = { x { 6, 7 } },
  fn = function(ms, a) return F.dropout(a, 0.3, true, { generator = ms.Generator(7) }) end }

return cases
