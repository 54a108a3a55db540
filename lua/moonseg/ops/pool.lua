-- pool.lua: 2-d max, average and adaptive average pooling (F.max_pool2d, ...) with autograd.
local ffi = require "ffi"

return function(ms, T, A, L)
  local C, ctx, out, check = L.C, L.ctx, L.out, L.check
  local handle, wrap = T.handle, T.wrap

  -- A number or {h, w} -> h, w (integers).
  local function pair(op, v, name)
    local a, b
    if type(v) == "number" then a, b = v, v
    elseif type(v) == "table" and #v == 2 then a, b = v[1], v[2]
    else error(op .. ": " .. name .. " must be a number or {h, w}, got " .. tostring(v), 4) end
    if type(a) ~= "number" or type(b) ~= "number" or a ~= math.floor(a) or b ~= math.floor(b) then
      error(op .. ": " .. name .. " must be integers, got {" .. tostring(a) .. ", " .. tostring(b) .. "}", 4)
    end
    return a, b
  end

  local function is_opts(v) return type(v) == "table" and v[1] == nil and next(v) ~= nil end

  -- (x, kernel, stride, padding, opts) with PyTorch defaults: stride = kernel, padding = 0;
  -- opts may also come in place of stride or padding.
  local function make_params(op, x, kernel, stride, padding, opts)
    if not T.is_tensor(x) then error(op .. ": input must be a tensor", 3) end
    if is_opts(stride) then stride, padding, opts = stride.stride, stride.padding, stride
    elseif is_opts(padding) then padding, opts = padding.padding, padding end
    opts = opts or {}
    if kernel == nil then kernel = opts.kernel_size end
    if stride == nil or (type(stride) == "table" and #stride == 0) then stride = opts.stride or kernel end
    if padding == nil then padding = opts.padding or 0 end
    local p = ffi.new("ms_pool2d_params")
    p.kernel[0], p.kernel[1] = pair(op, kernel, "kernel")
    p.stride[0], p.stride[1] = pair(op, stride, "stride")
    p.padding[0], p.padding[1] = pair(op, padding, "padding")
    p.ceil_mode = opts.ceil_mode and 1 or 0
    local cip = opts.count_include_pad
    if cip == nil then cip = true end
    p.count_include_pad = cip and 1 or 0
    return p
  end

  -- max_pool2d(x [N, C, H, W], kernel, stride=kernel, padding=0, {ceil_mode=false})
  local function max_pool2d(x, kernel, stride, padding, opts)
    local p = make_params("max_pool2d", x, kernel, stride, padding, opts)
    check(C.ms_max_pool2d(ctx, handle(x), p, out, out + 1), 2)
    local y, idx = wrap(out[0]), wrap(out[1])
    if A.needs(x) then
      A.record("max_pool2d", { x }, { y }, function(node, g)
        local s = node.saved
        check(C.ms_max_pool2d_backward(ctx, handle(g), handle(s.x), handle(s.idx), out))
        return wrap(out[0])
      end, { x = A.save(x), idx = idx })
    else
      idx:free()
    end
    return y
  end

  -- avg_pool2d(x, kernel, stride=kernel, padding=0, {ceil_mode=false, count_include_pad=true})
  local function avg_pool2d(x, kernel, stride, padding, opts)
    local p = make_params("avg_pool2d", x, kernel, stride, padding, opts)
    local y = T.take(C.ms_avg_pool2d(ctx, handle(x), p, out), 2)
    if A.needs(x) then
      A.record("avg_pool2d", { x }, { y }, function(node, g)
        local s = node.saved
        check(C.ms_avg_pool2d_backward(ctx, handle(g), handle(s.x), s.p, out))
        return wrap(out[0])
      end, { x = A.save(x), p = p })
    end
    return y
  end

  -- adaptive_avg_pool2d(x, {oh, ow} or n): PyTorch's windows floor(i*H/oh) .. ceil((i+1)*H/oh).
  local function adaptive_avg_pool2d(x, size)
    if not T.is_tensor(x) then error("adaptive_avg_pool2d: input must be a tensor", 2) end
    local oh, ow = pair("adaptive_avg_pool2d", size, "output size")
    local y = T.take(C.ms_adaptive_avg_pool2d(ctx, handle(x), oh, ow, out), 2)
    if A.needs(x) then
      A.record("adaptive_avg_pool2d", { x }, { y }, function(node, g)
        check(C.ms_adaptive_avg_pool2d_backward(ctx, handle(g), handle(node.saved.x), out))
        return wrap(out[0])
      end, { x = A.save(x) })
    end
    return y
  end

  for name, fn in pairs { max_pool2d = max_pool2d, avg_pool2d = avg_pool2d,
    adaptive_avg_pool2d = adaptive_avg_pool2d } do
    ms.functional[name] = fn
    ms[name] = fn
    T[name] = fn
  end
end
