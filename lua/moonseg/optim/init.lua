-- optim: SGD (momentum, L2 weight decay as Paddle applies it), AdamW, LR schedules.
local ms = require "moonseg"
local optim = {}

-- A copy of saved state v on param p's device, in p's dtype (a checkpoint from another device loads).
local function state_like(v, p)
  local t = v:to(p)
  if t == v then t = v:clone() end
  return t
end

local function param_list(params)
  if type(params) == "table" and params.parameters then return params:parameters() end
  return params
end

-- SGD{params, lr=, momentum=0, weight_decay=0}: g' = g + wd*p (Paddle's L2Decay adds the
-- decay to the gradient before momentum); v = mu*v + g'; p = p - lr*v.
optim.SGD = {}
optim.SGD.__index = optim.SGD
setmetatable(optim.SGD, { __call = function(cls, o)
  local self = setmetatable({ params = param_list(o.params or o[1]), lr = o.lr or o.learning_rate or 0.01,
    momentum = o.momentum or 0, weight_decay = o.weight_decay or 0, state = {} }, cls)
  if #self.params == 0 then error("SGD: no parameters given", 2) end
  return self
end })

function optim.SGD:step()
  ms.no_grad(function()
    for i, p in ipairs(self.params) do
      local g = p.grad
      if g then
        if self.weight_decay ~= 0 then g = g + p * self.weight_decay end
        if self.momentum ~= 0 then
          local v = self.state[i]
          if not v then
            v = ms.zeros_like(p)
            self.state[i] = v
          end
          v:mul_(self.momentum):add_(g)
          g = v
        end
        p:add_(g, -self.lr)
      end
    end
  end)
end

function optim.SGD:zero_grad()
  for _, p in ipairs(self.params) do p.grad = nil end
end

function optim.SGD:state_dict()
  local sd = {}
  for i, v in pairs(self.state) do sd["momentum." .. i] = v end
  return sd
end

function optim.SGD:load_state_dict(sd)
  for k, v in pairs(sd) do
    local i = tonumber(k:match("^momentum%.(%d+)$"))
    if not i or not self.params[i] then error("SGD:load_state_dict: unexpected key " .. k, 2) end
    self.state[i] = state_like(v, self.params[i])
  end
end

-- AdamW{params, lr=1e-3, betas={0.9, 0.999}, eps=1e-8, weight_decay=0.01}: decoupled decay.
optim.AdamW = {}
optim.AdamW.__index = optim.AdamW
setmetatable(optim.AdamW, { __call = function(cls, o)
  local b = o.betas or { 0.9, 0.999 }
  return setmetatable({ params = param_list(o.params or o[1]), lr = o.lr or 1e-3, beta1 = b[1], beta2 = b[2],
    eps = o.eps or 1e-8, weight_decay = o.weight_decay or 0.01, t = 0, m = {}, v = {} }, cls)
end })

function optim.AdamW:step()
  self.t = self.t + 1
  local bc1, bc2 = 1 - self.beta1 ^ self.t, 1 - self.beta2 ^ self.t
  ms.no_grad(function()
    for i, p in ipairs(self.params) do
      local g = p.grad
      if g then
        local m, v = self.m[i], self.v[i]
        if not m then
          m, v = ms.zeros_like(p), ms.zeros_like(p)
          self.m[i], self.v[i] = m, v
        end
        p:mul_(1 - self.lr * self.weight_decay)
        m:mul_(self.beta1):add_(g, 1 - self.beta1)
        v:mul_(self.beta2):add_(g * g, 1 - self.beta2)
        local denom = (v / bc2):sqrt():add_(self.eps)
        p:add_(m / denom, -self.lr / bc1)
      end
    end
  end)
end
optim.AdamW.zero_grad = optim.SGD.zero_grad

-- PolynomialDecay{learning_rate, decay_steps, end_lr=0, power=0.9, warmup_iters=0, warmup_start_lr=0}:
-- lr at step k (0-based) as PaddleSeg's LinearWarmup(PolynomialDecay): linear warmup over
-- warmup_iters, then (lr0 - end) * (1 - j/decay_steps)^power + end with j = k - warmup_iters
-- (PaddleSeg passes decay_steps = iters - warmup_iters).
function optim.PolynomialDecay(o)
  local lr0, steps = o.learning_rate, o.decay_steps
  local end_lr, power = o.end_lr or 0, o.power or 0.9
  local warm, warm_start = o.warmup_iters or 0, o.warmup_start_lr or 0
  return function(k)
    if k < warm then return warm_start + (lr0 - warm_start) * k / warm end
    local s = math.min(k - warm, steps)
    return (lr0 - end_lr) * (1 - s / steps) ^ power + end_lr
  end
end

function optim.AdamW:state_dict()
  local sd = {}
  for i, v in pairs(self.m) do sd["m." .. i] = v end
  for i, v in pairs(self.v) do sd["v." .. i] = v end
  return sd
end
function optim.AdamW:load_state_dict(sd)
  for k, t in pairs(sd) do
    local kind, i = k:match("^([mv])%.(%d+)$")
    i = tonumber(i)
    if not kind or not self.params[i] then error("AdamW:load_state_dict: unexpected key " .. k, 2) end
    self[kind][i] = state_like(t, self.params[i])
  end
end
function optim.AdamW:extra_state() return { t = self.t } end
function optim.AdamW:load_extra_state(s) self.t = s.t or 0 end

-- Scales all gradients so their global L2 norm is at most max_norm; returns the norm before.
function optim.clip_grad_norm(params, max_norm)
  local total = 0
  for _, p in ipairs(params) do
    if p.grad then
      local n = p.grad:norm():item()
      total = total + n * n
    end
  end
  total = math.sqrt(total)
  if total > max_norm then
    local scale = max_norm / (total + 1e-6)
    ms.no_grad(function()
      for _, p in ipairs(params) do if p.grad then p.grad:mul_(scale) end end
    end)
  end
  return total
end

return optim
