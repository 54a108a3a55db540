-- test_amp_conv_weights.lua: autocast's conv with f32 weights beside bf16/f16 activations. The op
-- converts the weights itself and gives dw and db in f32 (on AVX512-BF16 CPUs straight from
-- oneDNN's bf16 backward-weights): the forward and dx must equal the conv on weights cast to bf16
-- beforehand bit for bit, dw and db must be the f32 gradients (not rounded to bf16), and a changed
-- weight is used at once.
local H = require "harness"
local ms = require "moonseg"
local F = ms.functional

-- Whether this CPU runs bf16 convolutions natively (oneDNN avx512_core_bf16), as precision.c
-- decides: else bf16 activations are computed in f32 and f32 weights are used unrounded.
local function native_bf16()
  if os.getenv("MS_CPU_BF16") == "convert" or os.getenv("ONEDNN_MAX_CPU_ISA") or os.getenv("DNNL_MAX_CPU_ISA") then
    return false
  end
  local f = io.open("/proc/cpuinfo")
  if not f then return false end
  local s = f:read("*a")
  f:close()
  return s:find("avx512_bf16", 1, true) ~= nil
end
local NATIVE = native_bf16()
-- MS_CPU_BF16=bf16_dw (for comparisons): native bf16 convs with bf16 dw cast back to f32
local CAST_WEIGHTS = NATIVE and os.getenv("MS_CPU_BF16") == "bf16_dw"

local function bits_equal(a, b, what)
  H.eq(a:type(), b:type(), what .. " dtype")
  H.same_list(a:size(), b:size(), what .. " shape")
  local x, y = H.values(a), H.values(b)
  for i = 1, #x do
    if x[i] ~= y[i] then
      error(string.format("%s: element %d differs: %.9g vs %.9g", what, i, x[i], y[i]), 2)
    end
  end
end

-- max |a - b| / max |b|, in f64
local function rel_err(a, b)
  local d = (a:to("f64") - b:to("f64")):abs():max():item()
  return d / math.max(b:to("f64"):abs():max():item(), 1e-30)
end

-- bf16-representable values (so an f32 bias and its bf16 cast hold the same numbers)
local function bf16_exact(t) return t:to("bf16"):to("f32") end

-- The geometries PP-LiteSeg's layers use: blocked 3x3, pointwise (plain layouts in bf16
-- forward), strided, depthwise, dilated; with and without bias.
local cases = {
  { n = 2, c = 16, h = 12, w = 10, o = 32, k = 3, opts = { padding = 1 }, bias = true },
  { n = 2, c = 32, h = 9, w = 9, o = 16, k = 1, opts = {}, bias = false },
  { n = 1, c = 8, h = 11, w = 13, o = 24, k = 3, opts = { stride = 2, padding = 1 }, bias = false },
  { n = 2, c = 16, h = 8, w = 8, o = 16, k = 3, opts = { padding = 1, groups = 16 }, bias = true },
  { n = 2, c = 16, h = 10, w = 10, o = 16, k = 3, opts = { padding = 2, dilation = 2 }, bias = true },
  { n = 3, c = 3, h = 16, w = 16, o = 32, k = 3, opts = { stride = 2, padding = 1 }, bias = false },
}

local function make(cs)
  local x = ms.randn({ cs.n, cs.c, cs.h, cs.w }):to("bf16")
  local w = ms.randn({ cs.o, cs.c / (cs.opts.groups or 1), cs.k, cs.k }) * 0.2
  local b = cs.bias and bf16_exact(ms.randn({ cs.o })) or nil
  return x, w, b
end

H.case("f32 weights beside bf16 x: forward and dx equal the conv on pre-cast weights bit for bit", function()
  ms.manual_seed(3)
  for i, cs in ipairs(cases) do
    local what = "case " .. i
    local x, w, b = make(cs)
    local y = F.conv2d(x, w, b, cs.opts)
    H.eq(y:type(), "bf16", what .. " output dtype")
    local ref
    if NATIVE then
      ref = F.conv2d(x, w:to("bf16"), b and b:to("bf16"), cs.opts)
    else -- converted to f32: the f32 weights are used as they are
      ref = F.conv2d(x:to("f32"), w, b, cs.opts):to("bf16")
    end
    bits_equal(y, ref, what .. " forward")
    local gy = ms.randn(y:size()):to("bf16")
    local xr, wr = x:clone():requires_grad_(), w:clone():requires_grad_()
    local br = b and b:clone():requires_grad_()
    F.conv2d(xr, wr, br, cs.opts):backward(gy)
    H.eq(xr.grad:type(), "bf16", what .. " dx dtype")
    H.eq(wr.grad:type(), "f32", what .. " dw comes back in w's dtype")
    if br then H.eq(br.grad:type(), "f32", what .. " db in f32") end
    local xq, wq = x:clone():requires_grad_(), (NATIVE and w:to("bf16") or w:clone()):requires_grad_()
    local yq = NATIVE and F.conv2d(xq, wq, b and b:to("bf16"), cs.opts) or F.conv2d(xq:to("f32"), wq, b, cs.opts):to("bf16")
    yq:backward(gy)
    bits_equal(xr.grad, xq.grad, what .. " dx")
  end
end)

H.case("f32 weights beside bf16 x: dw and db are f32 gradients, not rounded to bf16", function()
  ms.manual_seed(4)
  for i, cs in ipairs(cases) do
    local what = "case " .. i
    local x, w, b = make(cs)
    local gy = ms.randn({ cs.n, cs.o, F.conv2d(x, w, b, cs.opts):size(3), F.conv2d(x, w, b, cs.opts):size(4) }):to("bf16")
    local wr = w:clone():requires_grad_()
    local br = b and b:clone():requires_grad_()
    F.conv2d(x, wr, br, cs.opts):backward(gy)
    -- the reference: f32 backward on the same (bf16-valued) x and grad_out; dw does not depend on w
    local w32, b32 = w:clone():requires_grad_(), b and b:clone():requires_grad_()
    F.conv2d(x:to("f32"), w32, b32, cs.opts):backward(gy:to("f32"))
    local e = rel_err(wr.grad, w32.grad)
    local r = rel_err(wr.grad, wr.grad:to("bf16"))
    if CAST_WEIGHTS then -- the comparison mode: bf16 gradients cast back to f32
      assert(e < 8e-3 and r == 0, string.format("%s: bf16_dw: dw error %.3g, rounding %.3g", what, e, r))
      goto continue
    end
    assert(e < 2e-5, string.format("%s: dw relative error %.3g vs the f32 reference (want < 2e-5)", what, e))
    -- a bf16 dw would be off by ~2^-9 relative: the f32 result must hold bits bf16 cannot
    assert(r > 1e-4, string.format("%s: dw looks bf16-rounded (rel. difference to its bf16 cast %.3g)", what, r))
    if br then
      local eb = rel_err(br.grad, b32.grad)
      assert(eb < 2e-5, string.format("%s: db relative error %.3g (want < 2e-5)", what, eb))
    end
    ::continue::
  end
end)

H.case("autocast hands f32 conv weights to the op: no weight casts, gradients reach the f32 parameter", function()
  ms.manual_seed(5)
  local conv = ms.nn.Conv2d(8, 16, 3, { padding = 1 })
  local x = ms.randn({ 2, 8, 10, 10 })
  local casts = 0
  local to = ms.Tensor.to
  ms.Tensor.to = function(t, ...)
    local r = to(t, ...)
    if r ~= t and (t == conv.weight or t == conv.bias) then casts = casts + 1 end
    return r
  end
  local ok, err = pcall(function()
    local y = ms.autocast("bf16", function() return conv(x) end)
    H.eq(y:type(), "bf16", "autocast conv output")
    y:to("f32"):sum():backward()
  end)
  ms.Tensor.to = to
  assert(ok, err)
  H.eq(casts, 0, "weight and bias casts under autocast")
  H.eq(conv.weight.grad:type(), "f32")
  H.eq(conv.bias.grad:type(), "f32")
  -- the same gradient as the explicit mixed-dtype call
  local w2, b2 = conv.weight:detach():clone():requires_grad_(), conv.bias:detach():clone():requires_grad_()
  F.conv2d(x:to("bf16"), w2, b2, { padding = 1 }):to("f32"):sum():backward()
  bits_equal(conv.weight.grad, w2.grad, "weight grad")
  bits_equal(conv.bias.grad, b2.grad, "bias grad")
end)

H.case("a weight changed in place (optimizer step, load_state_dict, fill_) is used by the next forward", function()
  ms.manual_seed(6)
  local conv = ms.nn.Conv2d(8, 8, 3, { padding = 1, bias = false })
  local opt = ms.optim.SGD { conv, lr = 0.5, momentum = 0.9 }
  local x = ms.randn({ 1, 8, 6, 6 })
  local function fwd() return ms.autocast("bf16", function() return conv(x) end) end
  local function expect(what)
    local ref = NATIVE and F.conv2d(x:to("bf16"), conv.weight:detach():to("bf16"), nil, { padding = 1 })
      or F.conv2d(x:to("bf16"):to("f32"), conv.weight:detach(), nil, { padding = 1 }):to("bf16")
    bits_equal(fwd(), ref, what)
  end
  local y0 = fwd()
  expect("initial")
  y0:to("f32"):pow(2):sum():backward()
  opt:step()
  local y1 = fwd()
  assert(rel_err(y1, y0) > 1e-2, "the optimizer step changed the output")
  expect("after an optimizer step")
  local sd = conv:state_dict()
  sd.weight = ms.randn(conv.weight:size())
  conv:load_state_dict(sd)
  expect("after load_state_dict")
  ms.no_grad(function() conv.weight:fill_(0.25) end)
  expect("after fill_")
  local y = fwd():to("f64")
  H.near(y[{ 1, 1, 3, 3 }]:item(), 0.25 * x:to("bf16"):to("f64")[{ 1, {}, { 2, 4 }, { 2, 4 } }]:sum():item(), 1e-2, "fill_ value used")
end)

H.case("f16 x with f32 weights; dtype errors name the operands", function()
  ms.manual_seed(7)
  local x = ms.randn({ 2, 4, 6, 6 })
  local w = ms.randn({ 8, 4, 3, 3 })
  local y = F.conv2d(x:to("f16"), w, nil, { padding = 1 })
  H.eq(y:type(), "f16")
  assert(rel_err(y, F.conv2d(x, w, nil, { padding = 1 })) < 2e-3, "f16 forward close to f32")
  local wr = w:clone():requires_grad_()
  F.conv2d(x:to("f16"), wr, nil, { padding = 1 }):backward(ms.ones(y:size()):to("f16"))
  H.eq(wr.grad:type(), "f32", "f16 x, f32 w: dw in f32")
  H.raises(function() F.conv2d(x:to("bf16"), w:to("f16")) end, "conv2d", "same dtype", "f32 w with f16/bf16 x")
  H.raises(function() F.conv2d(x, w:to("bf16")) end, "conv2d", "same dtype")
  H.raises(function() F.conv2d(x:to("bf16"), w, ms.zeros({ 8 }):to("bf16")) end, "bias", "w's dtype")
end)

H.done()
