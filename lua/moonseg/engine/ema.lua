-- ema.lua: an exponential moving average of a model's parameters and buffers (--use_ema):
-- ema = d * ema + (1 - d) * value with d = min(decay, (1 + step) / (10 + step)).
local ms = require "moonseg"

local EMA = {}
EMA.__index = EMA

function EMA.new(model, decay)
  local self = setmetatable({ decay = decay or 0.99, step = 0, shadow = {} }, EMA)
  ms.no_grad(function()
    for k, t in pairs(model:state_dict()) do self.shadow[k] = t:detach():clone() end
  end)
  return self
end

function EMA:update(model)
  self.step = self.step + 1
  local d = math.min(self.decay, (1 + self.step) / (10 + self.step))
  ms.no_grad(function()
    for k, t in pairs(model:state_dict()) do
      local s = self.shadow[k]
      if t:is_floating_point() then
        s:mul_(d):add_(t, 1 - d)
      else
        s:copy_(t)
      end
    end
  end)
end

function EMA:state_dict() return self.shadow end
function EMA:load_state_dict(sd, step)
  for k, s in pairs(self.shadow) do
    if not sd[k] then error("EMA state lacks " .. k, 2) end
    ms.no_grad(function() s:copy_(sd[k]) end)
  end
  self.step = step or self.step
end

-- Runs fn with the model holding the averaged weights, then puts the trained ones back.
function EMA:with_weights(model, fn)
  local backup = {}
  ms.no_grad(function()
    for k, t in pairs(model:state_dict()) do
      backup[k] = t:clone()
      t:copy_(self.shadow[k])
    end
  end)
  local ok, r = pcall(fn)
  ms.no_grad(function()
    for k, t in pairs(model:state_dict()) do t:copy_(backup[k]) end
  end)
  if not ok then error(r, 0) end
  return r
end

return EMA
