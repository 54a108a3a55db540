-- reduce.lua: reductions (sum, mean, max/min with indices, var/std, prod, all/any, norm) with autograd.
local ffi = require "ffi"

return function(ms, T, A, L)
  local C, ctx, out, check = L.C, L.ctx, L.out, L.check
  local take, handle, is_tensor = T.take, T.handle, T.is_tensor
  local SUM, MEAN, MAX, MIN, VAR, PROD = 0, 1, 2, 3, 4, 5
  local dims_buf = ffi.new("int[8]")

  -- Normalises dim (nil, a 1-based number, or a list) to {reduced = {[cdim]=true}, n = count}
  -- and fills dims_buf with the 0-based dims.
  local function dim_list(x, dim, op)
    local nd = x:dim()
    local list = dim == nil and {} or (type(dim) == "table" and dim or { dim })
    if #list > 8 then error(op .. ": too many dims", 3) end
    local red = {}
    for i, d in ipairs(list) do
      if type(d) ~= "number" or d ~= math.floor(d) then
        error(op .. ": dim must be an integer, got " .. tostring(d), 3)
      end
      if d == 0 then error(op .. ": dims are 1-based (1 is the first, -1 the last); got 0", 3) end
      if nd > 0 and (d > nd or d < -nd) or nd == 0 and (d > 1 or d < -1) then
        error(string.format("%s: dim %d out of range for a %d-d tensor of shape [%s]", op, d, nd,
          table.concat(x:size(), ", ")), 3)
      end
      local c = d > 0 and d - 1 or (nd > 0 and nd + d or 0)
      dims_buf[i - 1] = c
      red[c + 1] = true
    end
    if #list == 0 then for i = 1, nd do red[i] = true end end
    return red, #list
  end

  -- x's shape with reduced dims set to 1 (the keepdim shape) and the reduced count.
  local function keep_shape(x, red)
    local s, r = x:size(), 1
    for i = 1, #s do if red[i] then r = r * s[i]; s[i] = 1 end end
    return s, r
  end

  -- g (shaped as the reduction result) laid out over x's shape as a fresh tensor.
  local function spread(g, kshape, xshape)
    local gk = g:reshape(kshape)
    local e = gk:expand(xshape)
    local r = e:clone()
    return r
  end

  local function raw_reduce(op, x, red, n, keepdim, p, name)
    return take(C.ms_reduce(ctx, op, handle(x), dims_buf, n, keepdim and 1 or 0, p or 0, out), 3)
  end

  function T.sum(x, dim, keepdim)
    if type(dim) == "boolean" then dim, keepdim = nil, dim end
    local red, n = dim_list(x, dim, "sum")
    local y = raw_reduce(SUM, x, red, n, keepdim)
    if A.needs(x) and x:is_floating_point() then
      local xs = x:size()
      local ks = keep_shape(x, red)
      A.record("sum", { x }, { y }, function(_, g) return spread(g, ks, xs) end)
    end
    return y
  end

  function T.mean(x, dim, keepdim)
    if type(dim) == "boolean" then dim, keepdim = nil, dim end
    local red, n = dim_list(x, dim, "mean")
    local y = raw_reduce(MEAN, x, red, n, keepdim)
    if A.needs(x) then
      local xs = x:size()
      local ks, r = keep_shape(x, red)
      A.record("mean", { x }, { y }, function(_, g)
        local s = spread(g, ks, xs)
        return s:mul_(1 / r)
      end)
    end
    return y
  end

  -- var(dim, unbiased=true, keepdim=false) or var(dim, {unbiased=, correction=, keepdim=}).
  local function var_args(dim, a, b)
    local correction, keepdim = 1, false
    if type(dim) == "table" and (dim.unbiased ~= nil or dim.correction or dim.keepdim ~= nil or dim.dim) then
      a, dim = dim, dim.dim
    end
    if type(a) == "table" then
      if a.correction then correction = a.correction
      elseif a.unbiased == false then correction = 0 end
      keepdim = a.keepdim or false
    else
      if a == false then correction = 0 end
      keepdim = b or false
    end
    return dim, correction, keepdim
  end

  function T.var(x, d, a, b)
    local dim, correction, keepdim = var_args(d, a, b)
    local red, n = dim_list(x, dim, "var")
    local y = raw_reduce(VAR, x, red, n, keepdim, correction)
    if A.needs(x) then
      local xs = x:size()
      local ks, r = keep_shape(x, red)
      local saved = { x = A.save(x) }
      A.record("var", { x }, { y }, function(node, g)
        local xv = node.saved.x
        local red2, n2 = dim_list(xv, dim, "var")
        local m = raw_reduce(MEAN, xv, red2, n2, true)
        local dev = xv:sub(m)
        local scale = 2 / math.max(r - correction, 0)
        return dev:mul_(spread(g, ks, xs)):mul_(scale)
      end, saved)
    end
    return y
  end
  function T.std(x, d, a, b) return x:var(d, a, b):sqrt() end

  function T.prod(x, dim, keepdim)
    if type(dim) == "boolean" then dim, keepdim = nil, dim end
    local red, n = dim_list(x, dim, "prod")
    local y = raw_reduce(PROD, x, red, n, keepdim)
    if A.needs(x) then
      local xs = x:size()
      local ks = keep_shape(x, red)
      -- d prod / d x_i = prod / x_i (inputs must be non-zero for this gradient)
      A.record("prod", { x }, { y }, function(node, g)
        local s = node.saved
        return spread(g:mul(s.y), ks, xs):div_(s.x)
      end, { x = A.save(x), y = A.save(y) })
    end
    return y
  end

  -- ---- max / min ---------------------------------------------------------------------
  -- x:max() -> 0-dim value; x:max(dim[, keepdim]) -> values, indices (1-based, i64);
  -- x:max(other_tensor) -> maximum.
  local function minmax(opname, op, x, dim, keepdim)
    if is_tensor(dim) then return opname == "max" and x:maximum(dim) or x:minimum(dim) end
    if dim == nil then
      local y = take(C.ms_reduce(ctx, op, handle(x), dims_buf, 0, 0, 0, out), 3)
      if A.needs(x) then
        -- the gradient goes to the maximal elements, shared evenly between ties
        A.record(opname, { x }, { y }, function(node, g)
          local s = node.saved
          local mask = s.x:eq(s.y)
          local count = mask:sum():item()
          return mask:mul(g):mul_(1 / count):to(s.x:type())
        end, { x = A.save(x), y = A.save(y) })
      end
      return y
    end
    local nd = x:dim()
    local red = dim_list(x, dim, opname)
    local c = dims_buf[0]
    check(C.ms_reduce_arg(ctx, op, handle(x), c, keepdim and 1 or 0, out, out + 1), 3)
    local values, idx0 = T.wrap(out[0]), T.wrap(out[1])
    -- indices are 1-based in Lua, like every other index in moonseg
    local indices = idx0:add(1)
    if A.needs(x) then
      local xs = x:size()
      local ks = keep_shape(x, red)
      A.record(opname, { x }, { values }, function(node, g)
        local n = xs[c + 1]
        local shape = {}
        for i = 1, math.max(nd, 1) do shape[i] = 1 end
        shape[c + 1] = n
        local pos = ms.arange(n, { device = g:device_str() }):reshape(shape)
        local mask = pos:eq(node.saved.idx:reshape(ks))
        local zero = ms.zeros({}, { dtype = g:type(), device = g:device_str() })
        return ms.where(mask, g:reshape(ks), zero)
      end, { idx = A.save(idx0) })
    else
      idx0:free()
    end
    return values, indices
  end
  function T.max(x, dim, keepdim) return minmax("max", MAX, x, dim, keepdim) end
  function T.min(x, dim, keepdim) return minmax("min", MIN, x, dim, keepdim) end
  -- amax/amin over dims: the gradient of each result goes to the extremal elements of its
  -- slice, shared evenly between ties (as PyTorch's amax/amin).
  local function amaxmin(opname, op, x, dim, keepdim)
    if dim == nil then return opname == "amax" and x:max() or x:min() end
    local red, n = dim_list(x, dim, opname)
    local y = raw_reduce(op, x, red, n, keepdim)
    if A.needs(x) and x:is_floating_point() then
      local ks = keep_shape(x, red)
      A.record(opname, { x }, { y }, function(node, g)
        local s = node.saved
        local mask = s.x:eq(s.y:reshape(ks)):to(g:type())
        local red2, n2 = dim_list(s.x, dim, opname)
        local count = raw_reduce(SUM, mask, red2, n2, true)
        return mask:mul_(g:reshape(ks)):div_(count)
      end, { x = A.save(x), y = A.save(y) })
    end
    return y
  end
  function T.amax(x, dim, keepdim) return amaxmin("amax", MAX, x, dim, keepdim) end
  function T.amin(x, dim, keepdim) return amaxmin("amin", MIN, x, dim, keepdim) end

  -- argmax(dim[, keepdim]) -> 1-based i64 indices; with no dim, the 1-based flat index (0-dim).
  local function argminmax(opname, op, x, dim, keepdim)
    local src, c = x, nil
    if dim == nil then
      src = x:reshape { -1 }
      c = 0
      keepdim = false
    else
      dim_list(x, dim, opname)
      c = dims_buf[0]
    end
    check(C.ms_reduce_arg(ctx, op, handle(src), c, keepdim and 1 or 0, out, out + 1), 3)
    local v, i0 = T.wrap(out[0]), T.wrap(out[1])
    v:free()
    local r = i0:add(1)
    i0:free()
    return r
  end
  function T.argmax(x, dim, keepdim) return argminmax("argmax", MAX, x, dim, keepdim) end
  function T.argmin(x, dim, keepdim) return argminmax("argmin", MIN, x, dim, keepdim) end

  -- all/any -> bool tensors.
  function T.all(x, dim, keepdim)
    local zeros = x:eq(0)
    local red, n = dim_list(x, dim, "all")
    local c = raw_reduce(SUM, zeros, red, n, keepdim)
    return c:eq(0)
  end
  function T.any(x, dim, keepdim)
    local nz = x:ne(0)
    local red, n = dim_list(x, dim, "any")
    local c = raw_reduce(SUM, nz, red, n, keepdim)
    return c:gt(0)
  end

  -- norm(p=2, dim, keepdim); p = 1 or 2. The gradient at a zero norm is 0.
  function T.norm(x, p, dim, keepdim)
    p = p or 2
    if p == "fro" then p = 2 end
    if p == 1 then return x:abs():sum(dim, keepdim) end
    if p ~= 2 then error("norm: only p = 1 and p = 2 are supported, got " .. tostring(p), 2) end
    local red, n = dim_list(x, dim, "norm")
    local y = A.no_grad(function()
      local sq = x:square()
      dim_list(x, dim, "norm")
      local s = raw_reduce(SUM, sq, red, n, keepdim)
      return s:sqrt_()
    end)
    if A.needs(x) then
      local ks = keep_shape(x, red)
      A.record("norm", { x }, { y }, function(node, g)
        local s = node.saved
        local q = g:div(s.y)
        q = ms.where(s.y:eq(0), 0, q)
        return s.x:mul(q:reshape(ks))
      end, { x = A.save(x), y = A.save(y) })
    end
    return y
  end

  for _, name in ipairs { "sum", "mean", "var", "std", "prod", "max", "min", "amax", "amin",
    "argmax", "argmin", "all", "any", "norm" } do
    ms[name] = function(x, ...) return T[name](x, ...) end
  end
end
