-- elementwise.lua: broadcasting arithmetic, comparisons, activations, where, with autograd and Lua operators.
return function(ms, T, A, L)
  local C, ctx, out, check = L.C, L.ctx, L.out, L.check
  local take, handle, is_tensor = T.take, T.handle, T.is_tensor
  local F = ms.functional

  local BIN = { add = 0, sub = 1, mul = 2, div = 3, pow = 4, maximum = 5, minimum = 6, eq = 7,
    ne = 8, lt = 9, le = 10, gt = 11, ge = 12, logical_and = 13, logical_or = 14 }
  local UN = { neg = 0, abs = 1, exp = 2, log = 3, sqrt = 4, rsqrt = 5, sigmoid = 6, tanh = 7,
    relu = 8, leaky_relu = 9, gelu = 10, hardswish = 11, clamp = 12, pow_scalar = 13, sign = 14,
    reciprocal = 15, square = 16, logical_not = 17, hardsigmoid = 18 }
  T.BINOP, T.UNOP = BIN, UN

  local function num(v, op)
    if type(v) == "boolean" then return v and 1 or 0 end
    if type(v) ~= "number" then
      error(op .. ": expected a tensor or a number, got " .. type(v), 4)
    end
    return v
  end

  -- Raw (no autograd) a op b where either side may be a number (not both).
  local function raw_bin(name, a, b)
    local op = BIN[name]
    if is_tensor(a) then
      if is_tensor(b) then return take(C.ms_binary(ctx, op, handle(a), handle(b), out), 3) end
      return take(C.ms_binary_scalar(ctx, op, handle(a), num(b, name), 0, out), 3)
    end
    if not is_tensor(b) then error(name .. ": needs at least one tensor operand", 3) end
    return take(C.ms_binary_scalar(ctx, op, handle(b), num(a, name), 1, out), 3)
  end

  -- What backward needs to know of an operand: a number, or {requires_grad, shape, dtype}.
  local function shell(v)
    if not is_tensor(v) then return v end
    return { requires_grad = v.requires_grad, shape = v:size(), dtype = v:type() }
  end
  local function wants(sh) return type(sh) == "table" and sh.requires_grad end

  -- The gradient g for the operand described by shell sh, summed back over broadcast dims.
  local function fit(g, sh)
    if not wants(sh) then return nil end
    local gs, ts = g:size(), sh.shape
    local same = #gs == #ts
    if same then for i = 1, #gs do if gs[i] ~= ts[i] then same = false; break end end end
    if not same then g = g:sum_to(ts) end
    if g:type() ~= sh.dtype and L.dtypes[sh.dtype] <= 3 then g = g:to(sh.dtype) end
    return g
  end

  local function save(v) if is_tensor(v) then return A.save(v) end return v end

  -- Backward formulas: (node, g) -> ga, gb. saved.ra/.rb are shells, saved.a/.b the values.
  local backward = {
    add = function(n, g) return fit(g, n.saved.ra), fit(g, n.saved.rb) end,
    sub = function(n, g)
      local s = n.saved
      return fit(g, s.ra), wants(s.rb) and fit(g:neg(), s.rb) or nil
    end,
    mul = function(n, g)
      local s = n.saved
      return wants(s.ra) and fit(g:mul(s.b), s.ra) or nil, wants(s.rb) and fit(g:mul(s.a), s.rb) or nil
    end,
    div = function(n, g)
      local s = n.saved
      local ga = wants(s.ra) and fit(g:div(s.b), s.ra) or nil
      local gb = wants(s.rb) and fit(g:mul(s.a):div(s.b:square()):neg(), s.rb) or nil
      return ga, gb
    end,
    pow = function(n, g)
      local s = n.saved
      local ga, gb
      if wants(s.ra) then
        local e = is_tensor(s.b) and s.b:sub(1) or s.b - 1
        ga = fit(g:mul(s.b):mul(ms.pow(s.a, e)), s.ra)
      end
      if wants(s.rb) then
        local la = is_tensor(s.a) and s.a:log() or math.log(s.a)
        gb = fit(g:mul(ms.pow(s.a, s.b)):mul(la), s.rb)
      end
      return ga, gb
    end,
  }
  -- maximum/minimum: the larger (smaller) operand gets g, ties split it evenly.
  local function minmax_backward(cmp)
    return function(n, g)
      local s = n.saved
      local win = raw_bin(cmp, s.a, s.b)
      local tie = raw_bin("eq", s.a, s.b)
      local half = g:mul(tie):mul(0.5)
      local ga, gb
      if wants(s.ra) then ga = fit(g:mul(win):add(half), s.ra) end
      if wants(s.rb) then
        local lose = raw_bin("logical_or", win, tie):logical_not()
        gb = fit(g:mul(lose):add(half), s.rb)
      end
      return ga, gb
    end
  end
  backward.maximum = minmax_backward("gt")
  backward.minimum = minmax_backward("lt")

  local NEEDS_VALUES = { mul = true, div = true, pow = true, maximum = true, minimum = true }

  -- a op b with autograd; a or b may be a number.
  local function binary(name, a, b)
    local y = raw_bin(name, a, b)
    local bw = backward[name]
    if bw and A.needs(a, b) then
      local saved = { ra = shell(a), rb = shell(b) }
      if NEEDS_VALUES[name] then saved.a, saved.b = save(a), save(b) end
      A.record(name, { a, b }, { y }, bw, saved)
    end
    return y
  end
  T.binary = binary
  local real_is_tensor = is_tensor

  -- In-place a op= b.
  local function binary_(name, a, b)
    T.check_inplace(a, name .. "_")
    if A.needs(b) then
      error(name .. "_: in-place op with an operand that requires grad; use the out-of-place " .. name, 3)
    end
    local op = BIN[name]
    if real_is_tensor(b) then check(C.ms_binary_into(ctx, op, handle(a), handle(b), handle(a)), 3)
    else check(C.ms_binary_scalar_into(ctx, op, handle(a), num(b, name), 0, handle(a)), 3) end
    return a
  end

  -- add(y, alpha) / sub(y, alpha): x + alpha * y, as in PyTorch.
  function T.add(x, y, alpha)
    if alpha ~= nil and alpha ~= 1 then
      y = real_is_tensor(y) and binary("mul", y, alpha) or num(y, "add") * alpha
    end
    return binary("add", x, y)
  end
  function T.sub(x, y, alpha)
    if alpha ~= nil and alpha ~= 1 then
      y = real_is_tensor(y) and binary("mul", y, alpha) or num(y, "sub") * alpha
    end
    return binary("sub", x, y)
  end
  function T.add_(x, y, alpha)
    if alpha ~= nil and alpha ~= 1 and real_is_tensor(y) and x:is_floating_point() then
      T.check_inplace(x, "add_")
      if A.needs(y) then error("add_: in-place op with an operand that requires grad", 2) end
      check(C.ms_axpy_(ctx, handle(x), alpha, handle(y)))
      return x
    end
    if alpha ~= nil and alpha ~= 1 then
      y = real_is_tensor(y) and raw_bin("mul", y, alpha) or num(y, "add_") * alpha
    end
    return binary_("add", x, y)
  end
  function T.sub_(x, y, alpha)
    if alpha ~= nil and alpha ~= 1 then return x:add_(y, -alpha) end
    return binary_("sub", x, y)
  end
  for _, name in ipairs { "mul", "div", "maximum", "minimum" } do
    T[name] = function(x, y) return binary(name, x, y) end
    T[name .. "_"] = function(x, y) return binary_(name, x, y) end
  end
  for _, name in ipairs { "eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or" } do
    T[name] = function(x, y) return raw_bin(name, x, y) end
  end
  T.greater, T.less, T.greater_equal, T.less_equal, T.not_equal =
    T.gt, T.lt, T.ge, T.le, T.ne
  for _, name in ipairs { "add", "sub", "mul", "div", "maximum", "minimum", "eq", "ne", "lt", "le",
    "gt", "ge", "logical_and", "logical_or" } do
    ms[name] = function(a, b, alpha)
      if real_is_tensor(a) then return T[name](a, b, alpha) end
      return binary(name, a, b)
    end
  end

  -- ---- unary ---------------------------------------------------------------------
  local INF = math.huge
  local USES_Y = { exp = true, sigmoid = true, tanh = true, relu = true }

  local function unary(name, x, p0, p1)
    local code = UN[name]
    local y = take(C.ms_unary(ctx, code, handle(x), p0 or 0, p1 or 0, out), 3)
    if name ~= "logical_not" and A.needs(x) and x:is_floating_point() then
      local saved
      if USES_Y[name] then saved = { y = A.save(y) } else saved = { x = A.save(x) } end
      A.record(name, { x }, { y }, function(n, g)
        local s = n.saved
        return take(C.ms_unary_backward(ctx, code, handle(g), s.x and handle(s.x) or nil,
          s.y and handle(s.y) or nil, p0 or 0, p1 or 0, out))
      end, saved)
    end
    return y
  end
  local function unary_(name, x, p0, p1)
    T.check_inplace(x, name .. "_")
    check(C.ms_unary_into(ctx, UN[name], handle(x), p0 or 0, p1 or 0, handle(x)), 3)
    return x
  end

  for _, name in ipairs { "neg", "abs", "exp", "log", "sqrt", "rsqrt", "sigmoid", "tanh", "relu",
    "hardswish", "hardsigmoid", "sign", "reciprocal", "square" } do
    T[name] = function(x) return unary(name, x) end
    T[name .. "_"] = function(x) return unary_(name, x) end
    ms[name] = T[name]
  end
  T.negative = T.neg
  function T.logical_not(x) return unary("logical_not", x) end
  ms.logical_not = T.logical_not

  function T.leaky_relu(x, slope) return unary("leaky_relu", x, slope or 0.01) end
  function T.leaky_relu_(x, slope) return unary_("leaky_relu", x, slope or 0.01) end

  local function gelu_mode(approximate)
    if approximate == nil or approximate == "none" then return 0 end
    if approximate == "tanh" then return 1 end
    error("gelu: approximate must be 'none' or 'tanh', got " .. tostring(approximate), 3)
  end
  function T.gelu(x, approximate) return unary("gelu", x, gelu_mode(approximate)) end
  function T.gelu_(x, approximate) return unary_("gelu", x, gelu_mode(approximate)) end

  local function clamp_args(lo, hi)
    if lo == nil and hi == nil then error("clamp: give at least one of min and max", 3) end
    if type(lo) == "table" then lo, hi = lo.min, lo.max end
    return lo or -INF, hi or INF
  end
  function T.clamp(x, lo, hi) local a, b = clamp_args(lo, hi); return unary("clamp", x, a, b) end
  function T.clamp_(x, lo, hi) local a, b = clamp_args(lo, hi); return unary_("clamp", x, a, b) end
  function T.clamp_min(x, lo) return unary("clamp", x, lo, INF) end
  function T.clamp_max(x, hi) return unary("clamp", x, -INF, hi) end
  T.clip, T.clip_ = T.clamp, T.clamp_
  ms.clamp = T.clamp

  -- pow: tensor ^ number is a unary op; tensor ^ tensor and number ^ tensor are binary.
  function T.pow(x, e)
    if real_is_tensor(e) then return binary("pow", x, e) end
    return unary("pow_scalar", x, num(e, "pow"))
  end
  function T.pow_(x, e)
    if real_is_tensor(e) then return binary_("pow", x, e) end
    return unary_("pow_scalar", x, num(e, "pow_"))
  end
  function ms.pow(a, b)
    if real_is_tensor(a) then return T.pow(a, b) end
    return binary("pow", a, b)
  end

  -- ---- where ------------------------------------------------------------------------
  -- A number operand of where as a 0-d tensor: the other operand's dtype and the device of the
  -- tensors it meets (cond's when both operands are numbers).
  local function as_tensor(v, like, cond)
    if real_is_tensor(v) then return v end
    return ms.full({}, num(v, "where"), { dtype = like and like:type() or "f32",
      device = (like or cond):device_str() })
  end
  function ms.where(cond, a, b)
    if not real_is_tensor(cond) then error("where: condition must be a bool tensor", 2) end
    local ta = as_tensor(a, real_is_tensor(b) and b or nil, cond)
    local tb = as_tensor(b, ta, cond)
    local y = take(C.ms_where(ctx, handle(cond), handle(ta), handle(tb), out), 2)
    if A.needs(ta, tb) then
      local sa, sb = shell(ta), shell(tb)
      A.record("where", { ta, tb }, { y }, function(n, g)
        local c = n.saved.cond
        local zero = ms.zeros({}, { dtype = g:type(), device = g:device_str() })
        local ga = wants(sa) and fit(ms.where(c, g, zero), sa) or nil
        local gb = wants(sb) and fit(ms.where(c, zero, g), sb) or nil
        return ga, gb
      end, { cond = A.save(cond) })
    end
    return y
  end
  -- x:where(cond, y): x where cond, else y (PyTorch's Tensor.where).
  function T.where(x, cond, y) return ms.where(cond, x, y) end

  -- ---- Lua operators ---------------------------------------------------------------------
  local mt = T.__mt
  mt.__add = function(a, b) return binary("add", a, b) end
  mt.__sub = function(a, b) return binary("sub", a, b) end
  mt.__mul = function(a, b) return binary("mul", a, b) end
  mt.__div = function(a, b) return binary("div", a, b) end
  mt.__pow = function(a, b) return ms.pow(a, b) end
  mt.__unm = function(a) return unary("neg", a) end

  -- ---- functional ----------------------------------------------------------------------------
  function F.relu(x, inplace) if inplace then return x:relu_() end return x:relu() end
  function F.leaky_relu(x, slope, inplace)
    if inplace then return x:leaky_relu_(slope) end
    return x:leaky_relu(slope)
  end
  function F.gelu(x, approximate) return x:gelu(approximate) end
  function F.sigmoid(x) return x:sigmoid() end
  function F.tanh(x) return x:tanh() end
  function F.hardswish(x, inplace) if inplace then return x:hardswish_() end return x:hardswish() end
  function F.hardsigmoid(x, inplace)
    if inplace then return x:hardsigmoid_() end
    return x:hardsigmoid()
  end
end
