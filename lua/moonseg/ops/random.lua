-- random.lua: rand, randn, randint, in-place fills and dropout from Philox generators.
local ffi = require "ffi"

return function(ms, T, A, L)
  local C, ctx, out, check = L.C, L.ctx, L.out, L.check
  local handle = T.handle
  local F = ms.functional

  -- A separate generator: pass it as {generator = g} to any random function.
  function ms.Generator(seed)
    return ffi.new("ms_generator", { seed = seed or 0, offset = 0 })
  end

  local function gen_of(opts)
    local g = opts and opts.generator
    if g == nil then return ms.default_generator end
    if type(g) ~= "cdata" or not ffi.istype("ms_generator", g) then
      error("generator must come from ms.Generator(seed) (or be ms.default_generator)", 4)
    end
    return g
  end

  -- A trailing table with named keys (and no list part) is the options table.
  -- (Plain table indexing, not select(n, ...): LuaJIT 2.1-beta3 traces mishandle the latter.)
  local function split_args(...)
    local args = { ... }
    local n = select("#", ...)
    local last = args[n]
    local opts = {}
    if type(last) == "table" and not T.is_tensor(last) and next(last) ~= nil and last[1] == nil then
      opts, n = last, n - 1
    end
    local shape
    if n == 1 and type(args[1]) == "table" then
      shape = args[1]
    else
      shape = {}
      for i = 1, n do shape[i] = args[i] end
    end
    return shape, opts
  end

  local function new_tensor(shape, opts, default_dtype)
    local s, nd = T.shape_arg(shape)
    local dt, di = T.device_arg(opts.device)
    return T.take(C.ms_empty(ctx, s, nd, T.dtype_arg(opts.dtype or default_dtype), dt, di, out), 3)
  end
  local function finish(t, opts)
    if opts.requires_grad then t.requires_grad = true end
    return t
  end

  -- rand(2, 3[, opts]) / rand({2, 3}[, opts]): uniform in [0, 1).
  function ms.rand(...)
    local shape, opts = split_args(...)
    local t = new_tensor(shape, opts, "f32")
    check(C.ms_uniform_(ctx, gen_of(opts), handle(t), 0, 1))
    return finish(t, opts)
  end

  -- randn(2, 3[, opts]): standard normal.
  function ms.randn(...)
    local shape, opts = split_args(...)
    local t = new_tensor(shape, opts, "f32")
    check(C.ms_normal_(ctx, gen_of(opts), handle(t), 0, 1))
    return finish(t, opts)
  end

  -- randint([low,] high, shape[, opts]): integers in [low, high), i64 unless told.
  function ms.randint(a, b, c, d)
    local low, high, shape, opts
    if type(b) == "table" then low, high, shape, opts = 0, a, b, c
    else low, high, shape, opts = a, b, c, d end
    opts = opts or {}
    if type(low) ~= "number" or type(high) ~= "number" or type(shape) ~= "table" then
      error("randint: expected randint([low,] high, shape[, opts])", 2)
    end
    local t = new_tensor(shape, opts, "i64")
    check(C.ms_randint_(ctx, gen_of(opts), handle(t), low, high))
    return t
  end

  local function like(x, opts)
    opts = opts or {}
    return { dtype = opts.dtype or x:type(), device = opts.device or x:device_str(),
             generator = opts.generator, requires_grad = opts.requires_grad }
  end
  function ms.rand_like(x, opts)
    local o = like(x, opts)
    return ms.rand(x:size(), o)
  end
  function ms.randn_like(x, opts)
    local o = like(x, opts)
    return ms.randn(x:size(), o)
  end
  function ms.randint_like(x, low, high, opts)
    if type(high) ~= "number" then low, high, opts = 0, low, high end
    local o = like(x, opts)
    return ms.randint(low, high, x:size(), o)
  end

  -- x:uniform_(a = 0, b = 1[, opts]), x:normal_(mean = 0, std = 1[, opts]) fill x in place.
  function T.uniform_(x, a, b, opts)
    T.check_inplace(x, "uniform_")
    check(C.ms_uniform_(ctx, gen_of(opts), handle(x), a or 0, b or 1))
    return x
  end
  function T.normal_(x, mean, std, opts)
    T.check_inplace(x, "normal_")
    check(C.ms_normal_(ctx, gen_of(opts), handle(x), mean or 0, std or 1))
    return x
  end
  function T.random_(x, low, high, opts)
    T.check_inplace(x, "random_")
    if high == nil then low, high = 0, low end
    check(C.ms_randint_(ctx, gen_of(opts), handle(x), low, high))
    return x
  end

  -- dropout(x, p = 0.5, training = true[, opts]): zeroes elements with probability p and
  -- scales the rest by 1 / (1 - p); identity when not training.
  function F.dropout(x, p, training, opts)
    p = p or 0.5
    if training == nil then training = true end
    if type(p) ~= "number" or p < 0 or p > 1 then
      error("dropout: p must be in [0, 1], got " .. tostring(p), 2)
    end
    if not training or p == 0 then return x end
    if p == 1 then
      local dev = x:device_str()
      local z = ms.zeros(x:size(), { dtype = x:type(), device = dev })
      if A.needs(x) then
        A.record("dropout", { x }, { z }, function(node) return A.zeros_for(node, 1, dev) end)
      end
      return z
    end
    check(C.ms_dropout(ctx, gen_of(opts), handle(x), p, out, out + 1))
    local y, mask = T.wrap(out[0]), T.wrap(out[1])
    if A.needs(x) then
      A.record("dropout", { x }, { y }, function(node, g)
        return T.take(C.ms_binary(ctx, 2, handle(g), handle(node.saved.mask), out)) -- MS_MUL
      end, { mask = mask })
    else
      mask:free()
    end
    return y
  end
end
