-- test_half_resize.lua: the CPU's f16/bf16 resize kernels (csrc/cpu/resize.c): forward and
-- backward equal the f32 kernel run on the half values and rounded once, bit for bit; and they
-- run without f32 copies of the tensors (peak tensor memory), i.e. not through the converted path.
local H = require "harness"
local ms = require "moonseg"
local F = ms.functional

local same_values = H.same_values

-- (name, input shape, output size, transpose the input's last two dims first)
local shapes = {
  { "up, odd sizes", { 2, 3, 5, 7 }, { 13, 11 } },
  { "down, odd sizes", { 2, 3, 33, 37 }, { 8, 9 } },
  { "up h, down w", { 1, 4, 6, 21 }, { 17, 5 } },
  { "same size", { 1, 2, 9, 10 }, { 9, 10 } },
  { "to one pixel", { 1, 2, 5, 6 }, { 1, 1 } },
  { "rows longer than a conversion chunk", { 1, 2, 3, 600 }, { 5, 1111 } },
  { "transposed (non-contiguous) input", { 2, 3, 7, 12 }, { 15, 10 }, true },
}
local modes = {
  { "bilinear", false }, { "bilinear", true }, { "nearest", nil },
}

-- The f32 kernel's math on the same inputs, so forward and backward are equal after one
-- rounding: the half kernels convert rows to float, blend with the same f32 taps in the same
-- order and accumulate the backward in f32 scratch, rounding dx once when it is stored.
for _, dt in ipairs { "bf16", "f16" } do
  for _, m in ipairs(modes) do
    local mname = m[1] .. (m[1] == "bilinear" and (m[2] and ", align_corners" or ", half-pixel") or "")
    H.case(mname .. " in " .. dt .. ": the f32 kernel on half values, rounded once", function()
      ms.manual_seed(11)
      for _, s in ipairs(shapes) do
        local what = mname .. ", " .. s[1] .. ", " .. dt
        -- leaf: the half input (transposed after the leaf when the case says so); b: the same
        -- values in f32, contiguous
        local leaf = ms.randn(s[2]):to(dt):requires_grad_()
        local a = s[4] and leaf:transpose(3, 4) or leaf
        local b = ms.no_grad(function() return a:to("f32"):contiguous() end):requires_grad_()
        H.eq(a:is_contiguous(), not s[4], what .. ": input layout")
        local opts = { size = s[3], mode = m[1], align_corners = m[2] }
        local ya, yb = F.interpolate(a, opts), F.interpolate(b, opts)
        H.eq(ya:type(), dt, what .. ": output dtype")
        H.same_list(ya:size(), yb:size(), what .. ": output size")
        same_values(ya, yb:to(dt), what .. ": forward")
        local g = ms.randn(ya:size()):to(dt)
        ya:backward(g)
        yb:backward(g:to("f32"))
        H.eq(leaf.grad:type(), dt, what .. ": grad dtype")
        local ga = s[4] and leaf.grad:transpose(3, 4) or leaf.grad
        same_values(ga, b.grad:to(dt), what .. ": backward")
      end
    end)
  end
end

-- The half kernels ran, not the converted path: that path makes f32 copies of the input and of
-- the output (forward) or of the incoming gradient (backward), so its peak tensor memory is
-- 3x the half output (forward) and 34x dx (backward) here; the half kernels allocate only the
-- half output, the rest is per-thread row scratch outside tensor memory.
for _, dt in ipairs { "bf16", "f16" } do
  for _, m in ipairs(modes) do
    H.case(m[1] .. " in " .. dt .. ": no f32 copies of the tensors (peak tensor memory)", function()
      ms.manual_seed(12)
      local x = ms.randn({ 1, 4, 64, 64 }):to(dt):requires_grad_()
      local out_bytes, dx_bytes = 4 * 256 * 256 * 2, 4 * 64 * 64 * 2
      H.settle_memory()
      collectgarbage("stop")
      ms.reset_peak_memory()
      local base = ms.memory_stats().allocated
      local y = F.interpolate(x, { size = { 256, 256 }, mode = m[1], align_corners = m[2] })
      local pf = ms.memory_stats().peak - base
      local g = ms.randn(y:size()):to(dt)
      H.settle_memory() -- the f32 draw under g goes now, not inside the measurement
      ms.reset_peak_memory()
      base = ms.memory_stats().allocated
      y:backward(g)
      local pb = ms.memory_stats().peak - base
      collectgarbage("restart")
      H.eq(pf >= out_bytes and pf < 1.5 * out_bytes, true,
        string.format("forward peak %d bytes, the %s output alone is %d", pf, dt, out_bytes))
      H.eq(pb >= dx_bytes and pb < 1.5 * dx_bytes, true,
        string.format("backward peak %d bytes, the %s dx alone is %d", pb, dt, dx_bytes))
    end)
  end
end

H.done()
