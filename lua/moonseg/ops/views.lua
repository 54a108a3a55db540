-- views.lua: differentiable views (view, permute, slicing, expand...), copies, casts and indexing.
local ffi = require "ffi"

return function(ms, T, A, L)
  local C, ctx, out, check = L.C, L.ctx, L.out, L.check
  local take, handle, cdim, shape_arg = T.take, T.handle, T.cdim, T.shape_arg

  local function new_view(x, h, name, backward, saved)
    local y = T.wrap(h)
    if A.needs(x) then A.record(name, { x }, { y }, backward, saved) end
    return y
  end

  -- Sums g (shaped as a broadcast result) down to shape: the backward of broadcasting.
  function T.sum_to(g, shape)
    local s, nd = shape_arg(shape)
    return take(C.ms_sum_to(ctx, handle(g), s, nd, out), 2)
  end

  local function infer_shape(x, ...)
    local first = ...
    local s = type(first) == "table" and { unpack(first) } or { ... }
    local known, infer = 1, nil
    for i, v in ipairs(s) do
      if v == -1 then
        if infer then error("view: only one dim may be -1", 3) end
        infer = i
      else
        known = known * v
      end
    end
    if infer then
      local n = x:numel()
      if known == 0 or n % known ~= 0 then
        error("view: shape [" .. table.concat(s, ", ") .. "] is invalid for " .. n .. " elements", 3)
      end
      s[infer] = n / known
    end
    return s
  end

  function T.view(x, ...)
    local shape = infer_shape(x, ...)
    local s, nd = shape_arg(shape)
    check(C.ms_view(handle(x), s, nd, out))
    local xs = x.requires_grad and x:size()
    return new_view(x, out[0], "view", function(node, g) return g:reshape(node.saved.shape) end,
      { shape = xs })
  end

  function T.reshape(x, ...)
    local shape = infer_shape(x, ...)
    local s, nd = shape_arg(shape)
    if C.ms_view(handle(x), s, nd, out) == 0 then
      local xs = x.requires_grad and x:size()
      return new_view(x, out[0], "reshape", function(node, g) return g:reshape(node.saved.shape) end,
        { shape = xs })
    end
    return x:contiguous():view(shape)
  end

  function T.view_as(x, y) return x:view(y:size()) end
  function T.reshape_as(x, y) return x:reshape(y:size()) end

  function T.flatten(x, d1, d2)
    d1, d2 = d1 or 1, d2 or -1
    local shape = x:size()
    local n = #shape
    if n == 0 then return x:reshape { 1 } end
    local a = d1 < 0 and n + d1 + 1 or d1
    local b = d2 < 0 and n + d2 + 1 or d2
    local s, p = {}, 1
    for i = 1, a - 1 do s[#s + 1] = shape[i] end
    for i = a, b do p = p * shape[i] end
    s[#s + 1] = p
    for i = b + 1, n do s[#s + 1] = shape[i] end
    return x:reshape(s)
  end

  local dims_buf = ffi.new("int[8]")
  function T.permute(x, ...)
    local first = ...
    local dims = type(first) == "table" and first or { ... }
    local n = x:dim()
    for i = 1, #dims do dims_buf[i - 1] = cdim(dims[i], n) end
    check(C.ms_permute(handle(x), dims_buf, #dims, out))
    local inv
    if x.requires_grad then
      inv = {}
      for i = 1, #dims do
        local d = dims[i] < 0 and n + dims[i] + 1 or dims[i]
        inv[d] = i
      end
    end
    return new_view(x, out[0], "permute", function(node, g) return g:permute(node.saved.inv) end,
      { inv = inv })
  end

  function T.transpose(x, d0, d1)
    local n = x:dim()
    check(C.ms_transpose(handle(x), cdim(d0, n), cdim(d1, n), out))
    return new_view(x, out[0], "transpose", function(_, g) return g:transpose(d0, d1) end)
  end
  function T.t(x)
    if x:dim() < 2 then return x:alias() end
    return x:transpose(1, 2)
  end

  -- Gradient of a view that picked part of x: zeros of x's shape with g copied in.
  local function scatter_back(node, g)
    local z = ms.zeros(node.saved.shape, { dtype = g:type(), device = g:device_str() })
    local part = node.saved.pick(z)
    part:copy_(g)
    part:free()
    return z
  end

  local function c_start(s, n)
    if s < 0 then return n + s end
    if s == 0 then error("indices are 1-based in moonseg; got 0", 4) end
    return s - 1
  end

  -- narrow(dim, start, length): start is 1-based (negative counts from the end).
  function T.narrow(x, dim, start, length)
    local n = x:size(dim)
    local s = c_start(start, n)
    if length < 0 or s < 0 or s + length > n then
      error(string.format("narrow: start %d length %d out of range for dim %d of size %d", start, length, dim, n), 2)
    end
    return x:slice(dim, s + 1, s + length)
  end

  -- slice(dim, first, last, step): 1-based inclusive bounds, negatives from the end.
  function T.slice(x, dim, first, last, step)
    local nd = x:dim()
    local d = cdim(dim, nd)
    local n = x:size(dim)
    first = first or 1
    last = last or n
    local s = c_start(first, n)
    local e = last < 0 and n + last + 1 or last
    check(C.ms_slice(handle(x), d, s, e, step or 1, out))
    local saved
    if x.requires_grad then
      saved = { shape = x:size(), pick = function(z) return z:slice(dim, first, last, step) end }
    end
    return new_view(x, out[0], "slice", scatter_back, saved)
  end

  function T.select(x, dim, index)
    local nd = x:dim()
    local d = cdim(dim, nd)
    local n = nd > 0 and x:size(dim) or 0
    local i = index
    if type(i) ~= "number" or i ~= math.floor(i) then error("select: index must be an integer", 2) end
    if i == 0 or i > n or i < -n then
      error(string.format("select: index %d out of range for dim %d of size %d (1-based)", i, dim, n), 2)
    end
    check(C.ms_select(handle(x), d, i > 0 and i - 1 or i, out))
    local saved
    if x.requires_grad then
      saved = { shape = x:size(), pick = function(z) return z:select(dim, index) end }
    end
    return new_view(x, out[0], "select", scatter_back, saved)
  end

  function T.expand(x, ...)
    local first = ...
    local shape = type(first) == "table" and first or { ... }
    local s, nd = shape_arg(shape)
    check(C.ms_expand(handle(x), s, nd, out))
    local xs = x.requires_grad and x:size()
    return new_view(x, out[0], "expand", function(node, g) return g:sum_to(node.saved.shape) end,
      { shape = xs })
  end
  function T.expand_as(x, y) return x:expand(y:size()) end

  function T.squeeze(x, dim)
    if dim then check(C.ms_squeeze(handle(x), cdim(dim, x:dim()), out))
    else check(C.ms_squeeze_all(handle(x), out)) end
    local xs = x.requires_grad and x:size()
    return new_view(x, out[0], "squeeze", function(node, g) return g:reshape(node.saved.shape) end,
      { shape = xs })
  end

  function T.unsqueeze(x, dim)
    check(C.ms_unsqueeze(handle(x), cdim(dim, x:dim() + 1), out))
    local xs = x.requires_grad and x:size()
    return new_view(x, out[0], "unsqueeze", function(node, g) return g:reshape(node.saved.shape) end,
      { shape = xs })
  end

  -- flip(dim or {dims}): a copy with the order along those dims reversed (as torch.flip).
  local sh_buf, st_buf = ffi.new("int64_t[8]"), ffi.new("int64_t[8]")
  function T.flip(x, dims)
    if type(dims) ~= "table" then dims = { dims } end
    local nd = x:dim()
    local shape, strides = x:size(), x:stride()
    local offset = x:storage_offset()
    for _, d in ipairs(dims) do
      local i = cdim(d, nd) % nd + 1
      if shape[i] > 0 then offset = offset + (shape[i] - 1) * strides[i] end
      strides[i] = -strides[i]
    end
    for i = 1, nd do sh_buf[i - 1], st_buf[i - 1] = shape[i], strides[i] end
    check(C.ms_as_strided(handle(x), sh_buf, st_buf, nd, offset, out))
    local v = T.wrap(out[0])
    local y = take(C.ms_cast(ctx, v._h, x:dtype_code(), out), 2)
    v:free()
    if A.needs(x) then A.record("flip", { x }, { y }, function(_, g) return g:flip(dims) end) end
    return y
  end

  -- A new handle on the same view; shares autograd history like an identity op.
  function T.alias(x)
    check(C.ms_tensor_alias(handle(x), out))
    return new_view(x, out[0], "alias", function(_, g) return g end)
  end

  function T.detach(x) return T.wrap((function() check(C.ms_tensor_alias(handle(x), out)); return out[0] end)()) end

  function T.contiguous(x)
    if x:is_contiguous() then return x end
    return x:clone()
  end

  function T.clone(x)
    local y = take(C.ms_cast(ctx, handle(x), x:dtype_code(), out), 2)
    if A.needs(x) then A.record("clone", { x }, { y }, function(_, g) return g end) end
    return y
  end

  -- to(dtype) / to(device) / to(device, dtype) / to{dtype=, device=} / to(other tensor): a copy
  -- when anything changes, else x; gradients flow back through both moves.
  function T.to(x, a, b)
    local dtype, device
    if T.is_tensor(a) then dtype, device = a:type(), a:device_str()
    elseif type(a) == "table" then dtype, device = a.dtype, a.device
    elseif a ~= nil and T.device_or_dtype(a, 2) == "device" then device, dtype = a, b
    else dtype = a end
    if device ~= nil then device = T.canonical_device(device) end
    local y = x
    if dtype ~= nil then
      local code = T.dtype_arg(dtype)
      if code ~= x:dtype_code() then
        y = take(C.ms_cast(ctx, handle(x), code, out), 2)
        if A.needs(x) then
          local from = x:type()
          A.record("to", { x }, { y }, function(_, g) return g:to(from) end)
        end
      end
    end
    if device ~= nil and device ~= y:device_str() then
      local dt, di = T.device_arg(device)
      local src = y
      y = take(C.ms_to_device(ctx, handle(src), dt, di, out), 2)
      if A.needs(src) then
        local back = src:device_str()
        A.record("to_device", { src }, { y }, function(_, g) return g:to(back) end)
      end
    end
    return y
  end
  function T.type_as(x, y) return x:to(y:type()) end
  for name, code in pairs { double = "f64", float = "f32", half = "f16", bfloat16 = "bf16", long = "i64", int = "i32", byte = "u8", bool = "bool" } do
    T[name] = function(x) return x:to(code) end
  end
  function T.cpu(x) return x:to("cpu") end
  function T.cuda(x, i) return x:to("cuda:" .. (i or 0)) end

  local function no_grad_inplace(x, op)
    if A.is_enabled() and x.requires_grad then
      error(op .. ": in-place change of a tensor that requires grad; use ms.no_grad or an out-of-place op", 3)
    end
  end
  T.check_inplace = no_grad_inplace

  function T.copy_(x, src)
    no_grad_inplace(x, "copy_")
    if type(src) == "number" then return x:fill_(src) end
    check(C.ms_copy_(ctx, handle(x), handle(src)))
    return x
  end
  function T.fill_(x, v)
    no_grad_inplace(x, "fill_")
    if type(v) == "boolean" then v = v and 1 or 0 end
    check(C.ms_fill_(ctx, handle(x), v))
    return x
  end
  function T.zero_(x) return x:fill_(0) end
  function T.requires_grad_(x, on)
    if on == nil then on = true end
    if x.grad_fn and not on then error("requires_grad_(false) on a non-leaf; use detach()", 2) end
    x.requires_grad = on or nil
    return x
  end
  function T.register_hook(x, fn)
    if x.grad_fn then error("register_hook: only leaf tensors take gradient-ready hooks", 2) end
    x._hooks = x._hooks or {}
    x._hooks[#x._hooks + 1] = fn
  end

  -- t:backward([grad], [retain_graph])
  function T.backward(x, grad, retain)
    if not x.requires_grad then
      error("backward: tensor does not require grad (no op on its way needed gradients)", 2)
    end
    if grad == nil then
      if x:numel() ~= 1 then
        error("backward: grad can be implied only for a scalar output; this one has shape [" ..
              table.concat(x:size(), ", ") .. "]: pass a gradient tensor", 2)
      end
      grad = ms.ones(x:size(), { dtype = x:type(), device = x:device_str() })
    elseif T.is_tensor(grad) then
      local a, b = table.concat(grad:size(), ","), table.concat(x:size(), ",")
      if a ~= b then error("backward: gradient of shape [" .. a .. "] for a tensor of shape [" .. b .. "]", 2) end
    end
    A.backward({ x }, { grad }, retain)
  end

  -- ---- indexing: x[i], x[{i, {a, b}, {}, ...}], assignment -------------------------
  local function apply_index(x, idx)
    if type(idx) == "number" then return x:select(1, idx) end
    local y, dim = x, 1
    for _, k in ipairs(idx) do
      if type(k) == "number" then
        y = y:select(dim, k)
      elseif type(k) == "table" then
        if #k == 0 then
          dim = dim + 1
        else
          y = y:slice(dim, k[1], k[2] or k[1], k[3])
          dim = dim + 1
        end
      elseif k == ":" then
        dim = dim + 1
      else
        error("index: expected number, {first, last[, step]} or {} per dim, got " .. type(k), 3)
      end
    end
    if y == x then y = x:alias() end
    return y
  end
  function T.index(x, idx) return apply_index(x, idx) end
  function T.index_assign(x, idx, v)
    local part = apply_index(x, idx)
    if T.is_tensor(v) then part:copy_(v) else part:fill_(v) end
    part:free()
  end
end
