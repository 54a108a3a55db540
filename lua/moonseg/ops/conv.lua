-- conv.lua: 2-d convolution (F.conv2d, T.conv2d) with autograd.
local ffi = require "ffi"

return function(ms, T, A, L)
  local C, ctx, out, check = L.C, L.ctx, L.out, L.check
  local handle = T.handle

  -- A number or {h, w} -> h, w (integers).
  local function pair(v, name, default)
    if v == nil then return default, default end
    local a, b
    if type(v) == "number" then a, b = v, v
    elseif type(v) == "table" and #v == 2 then a, b = v[1], v[2]
    else error("conv2d: " .. name .. " must be a number or {h, w}, got " .. tostring(v), 4) end
    if type(a) ~= "number" or type(b) ~= "number" or a ~= math.floor(a) or b ~= math.floor(b) then
      error("conv2d: " .. name .. " must be integers, got {" .. tostring(a) .. ", " .. tostring(b) .. "}", 4)
    end
    return a, b
  end

  local function make_params(opts)
    local p = ffi.new("ms_conv2d_params")
    p.stride[0], p.stride[1] = pair(opts.stride, "stride", 1)
    p.padding[0], p.padding[1] = pair(opts.padding, "padding", 0)
    p.dilation[0], p.dilation[1] = pair(opts.dilation, "dilation", 1)
    local g = opts.groups or 1
    if type(g) ~= "number" or g ~= math.floor(g) then
      error("conv2d: groups must be an integer, got " .. tostring(g), 3)
    end
    p.groups = g
    return p
  end

  local function backward(node, g)
    local s = node.saved
    local want_x, want_w, want_b = node.next[1], node.next[2], node.next[3]
    out[0], out[1], out[2] = nil, nil, nil
    check(C.ms_conv2d_backward(ctx, handle(g), handle(s.x), handle(s.w), s.p,
      want_x and out or nil, want_w and out + 1 or nil, want_b and out + 2 or nil))
    local dx = want_x and T.wrap(out[0]) or nil
    local dw = want_w and T.wrap(out[1]) or nil
    local db = want_b and T.wrap(out[2]) or nil
    return dx, dw, db
  end

  -- conv2d(x [N, Cin, H, W], w [Cout, Cin/groups, kh, kw], b [Cout] or nil,
  --        {stride=, padding=, dilation=, groups=}); stride/padding/dilation a number or {h, w}.
  local function conv2d(x, w, b, opts)
    if not T.is_tensor(x) or not T.is_tensor(w) then
      error("conv2d: x and w must be tensors", 2)
    end
    if b ~= nil and not T.is_tensor(b) then
      if type(b) == "table" and opts == nil then b, opts = nil, b
      else error("conv2d: bias must be a tensor or nil", 2) end
    end
    local p = make_params(opts or {})
    local y = T.take(C.ms_conv2d(ctx, handle(x), handle(w), b and handle(b) or nil, p, out), 2)
    if A.needs(x, w, b) then
      A.record("conv2d", { x, w, b }, { y }, backward, { x = A.save(x), w = A.save(w), p = p })
    end
    return y
  end

  ms.functional.conv2d = conv2d
  ms.conv2d = conv2d
  T.conv2d = conv2d
end
