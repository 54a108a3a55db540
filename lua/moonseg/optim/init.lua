-- optim: SGD (momentum, L2 weight decay as Paddle applies it), AdamW, LR schedules.
local ms = require "moonseg"
local mt = require "moonseg.multi_tensor"
local optim = {}

-- A copy of saved state v on param p's device, in v's own dtype (state serves the f32 master
-- when there is one): a checkpoint from another device loads.
local function state_like(v, p)
  local t = v:to(p:device_str())
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

-- The tensor each step updates: the f32 master copy when there is one, else the parameter.
local function target(self, i) return self.master and self.master[i] or self.params[i] end

-- Parameters that have a gradient, with their grads (and masters): the lists one C call takes.
local function with_grads(self)
  local idx, ps, gs, ws = {}, {}, {}, self.master and {} or nil
  for i, p in ipairs(self.params) do
    if p.grad then
      idx[#idx + 1], ps[#ps + 1], gs[#gs + 1] = i, p, p.grad
      if ws then ws[#ws + 1] = self.master[i] end
    end
  end
  return idx, ps, gs, ws
end

-- State tensors follow the dtype and device of the tensor they serve.
local function zeros_like(t) return ms.zeros(t:size(), { dtype = t:type(), device = t:device_str() }) end

-- Keeps f32 master copies of the parameters (O2: the model then holds half weights); call it
-- while the parameters are still f32. The update is made on the masters; checkpoints save them.
function optim.enable_master_weights(self)
  self.master = {}
  for i, p in ipairs(self.params) do
    self.master[i] = ms.no_grad(function() return p:to("f32"):clone() end)
  end
end

-- "master.i" entries of a state dict (O2): the f32 weights the updates are made on.
local function load_master(self, k, v)
  local i = tonumber(k:match("^master%.(%d+)$"))
  if not i then return false end
  if not self.params[i] then error("load_state_dict: master weight " .. k .. " has no parameter", 3) end
  self.master = self.master or {}
  self.master[i] = v:to(self.params[i]:device_str(), "f32"):clone()
  return true
end

-- step(found_inf): one fused C call over all parameters with a gradient; nothing changes when
-- found_inf (an f32 [1] tensor, GradScaler's) is set.
function optim.SGD:step(found_inf)
  local idx, ps, gs, ws = with_grads(self)
  if #ps == 0 then return end
  local bufs
  if self.momentum ~= 0 then
    bufs = {}
    for k, i in ipairs(idx) do
      if not self.state[i] then self.state[i] = zeros_like(target(self, i)) end
      bufs[k] = self.state[i]
    end
  end
  mt.sgd_step(ps, gs, bufs, ws, self, found_inf)
end
optim.SGD.enable_master_weights = optim.enable_master_weights

function optim.SGD:zero_grad()
  for _, p in ipairs(self.params) do p.grad = nil end
end

function optim.SGD:state_dict()
  local sd = {}
  for i, v in pairs(self.state) do sd["momentum." .. i] = v end
  for i, w in pairs(self.master or {}) do sd["master." .. i] = w end
  return sd
end

function optim.SGD:load_state_dict(sd)
  for k, v in pairs(sd) do
    if not load_master(self, k, v) then
      local i = tonumber(k:match("^momentum%.(%d+)$"))
      if not i or not self.params[i] then error("SGD:load_state_dict: unexpected key " .. k, 2) end
      self.state[i] = state_like(v, self.params[i])
    end
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

function optim.AdamW:step(found_inf)
  local idx, ps, gs, ws = with_grads(self)
  if #ps == 0 then return end
  if not self.step_t then self.step_t = ms.full({ 1 }, self.t, { dtype = "i64", device = ps[1]:device_str() }) end
  local m, v = {}, {}
  for k, i in ipairs(idx) do
    if not self.m[i] then self.m[i], self.v[i] = zeros_like(target(self, i)), zeros_like(target(self, i)) end
    m[k], v[k] = self.m[i], self.v[i]
  end
  mt.adamw_step(ps, gs, m, v, ws, self, self.step_t, found_inf)
  if not found_inf then self.t = self.t + 1 end -- else step_t says (read back at save time)
end
optim.AdamW.enable_master_weights = optim.enable_master_weights
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
  for i, w in pairs(self.master or {}) do sd["master." .. i] = w end
  return sd
end
function optim.AdamW:load_state_dict(sd)
  for k, t in pairs(sd) do
    if load_master(self, k, t) then goto continue end
    local kind, i = k:match("^([mv])%.(%d+)$")
    i = tonumber(i)
    if not kind or not self.params[i] then error("AdamW:load_state_dict: unexpected key " .. k, 2) end
    self[kind][i] = state_like(t, self.params[i])
    ::continue::
  end
end
function optim.AdamW:extra_state()
  if self.step_t then self.t = math.floor(self.step_t:item()) end
  return { t = self.t }
end
function optim.AdamW:load_extra_state(s)
  self.t = s.t or 0
  self.step_t = nil
end

-- Scales all gradients so their global L2 norm is at most max_norm; returns the norm before.
function optim.clip_grad_norm(params, max_norm)
  local gs = {}
  for _, p in ipairs(params) do if p.grad then gs[#gs + 1] = p.grad end end
  if #gs == 0 then return 0 end
  local norm = mt.norm(gs) -- one C call; the clipping reads the norm where it lives
  mt.clip_(gs, norm, max_norm)
  return norm:item()
end

return optim
