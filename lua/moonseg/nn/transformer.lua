-- transformer.lua: the layers the transformer models need (Linear, LayerNorm, GELU, DropPath),
-- composed from existing ops (matmul, layer_norm, gelu, rand) with Paddle's names.
local Module = require "moonseg.nn.module"

return function(nn, ms)
  local F = ms.functional
  local class = Module.class

  -- F.linear(x [..., in], w [in, out], b [out] or nil): x @ w + b. The weight is stored
  -- [in, out] as Paddle stores it (PyTorch's is [out, in]), so Paddle checkpoints load as is.
  function F.linear(x, w, b)
    local y = ms.matmul(x, w)
    if b then y = y + b end
    return y
  end

  -- F.drop_path(x, p, training): stochastic depth as Paddle/timm compute it: per sample,
  -- keep the whole tensor with probability 1 - p and scale it by 1 / (1 - p), else zero.
  -- The mask is a constant of the graph, so the gradient is g * mask / (1 - p).
  function F.drop_path(x, p, training, opts)
    if type(p) ~= "number" or p < 0 or p >= 1 then
      error("drop_path: p must be in [0, 1), got " .. tostring(p), 2)
    end
    if not training or p == 0 then return x end
    local shape = { x:size(1) }
    for i = 2, x:dim() do shape[i] = 1 end
    local keep = ms.no_grad(function()
      local u = ms.rand(shape, { dtype = x:type(), device = x:device_str(), generator = opts and opts.generator })
      -- Paddle: floor(keep + u) is 1 exactly when u >= p.
      return u:greater_equal(p):to(x:type()) / (1 - p)
    end)
    return x * keep
  end

  -- Linear(in, out, {bias=true}): weight [in, out] ~ truncated N(0, 0.02^2) (the transformer
  -- init PaddleSeg applies, approximated by clipping at 2 std), bias zero; keys `weight`, `bias`.
  nn.Linear = class("Linear")
  function nn.Linear:__init(cin, cout, o)
    o = o or {}
    self.in_features, self.out_features = cin, cout
    local w = ms.randn(cin, cout):clamp(-2, 2) * 0.02
    self:register_parameter("weight", w)
    if o.bias ~= false then self:register_parameter("bias", ms.zeros(cout)) end
  end
  function nn.Linear:forward(x) return F.linear(x, self.weight, self.bias) end
  function nn.Linear:extra_repr()
    return string.format("in_features=%d, out_features=%d%s", self.in_features, self.out_features,
      self.bias and "" or ", bias=false")
  end

  -- LayerNorm(dim, {epsilon=1e-5}): over the last dim; Paddle's default eps is 1e-5.
  nn.LayerNorm = class("LayerNorm")
  function nn.LayerNorm:__init(dim, o)
    o = o or {}
    self.dim, self.epsilon = dim, o.epsilon or o.eps or 1e-5
    self:register_parameter("weight", ms.ones(dim))
    self:register_parameter("bias", ms.zeros(dim))
  end
  function nn.LayerNorm:forward(x) return F.layer_norm(x, self.dim, self.weight, self.bias, self.epsilon) end
  function nn.LayerNorm:extra_repr() return string.format("%d, epsilon=%g", self.dim, self.epsilon) end

  -- GELU(approximate=false): exact (erf) GELU unless approximate.
  nn.GELU = class("GELU")
  function nn.GELU:__init(approximate) self.approximate = approximate and "tanh" or nil end
  function nn.GELU:forward(x) return F.gelu(x, self.approximate) end

  nn.DropPath = class("DropPath")
  function nn.DropPath:__init(p) self.drop_prob = p or 0 end
  function nn.DropPath:forward(x) return F.drop_path(x, self.drop_prob, self.training) end
  function nn.DropPath:extra_repr() return "p=" .. self.drop_prob end
end
