-- dropout2d.lua: channel dropout (F.dropout2d, nn.Dropout2d), composed from dropout and a
-- broadcast multiply so autograd and the generator come for free.
local Module = require "moonseg.nn.module"

return function(nn, ms)
  local F = ms.functional

  -- dropout2d(x [N, C, ...], p = 0.5, training = true[, {generator=}]): zeroes whole channels
  -- with probability p and scales the kept ones by 1 / (1 - p); identity when not training.
  function F.dropout2d(x, p, training, opts)
    if not ms.is_tensor(x) then error("dropout2d: input must be a tensor", 2) end
    p = p or 0.5
    if training == nil then training = true end
    if type(p) ~= "number" or p < 0 or p > 1 then
      error("dropout2d: p must be in [0, 1], got " .. tostring(p), 2)
    end
    local size = x:size()
    if #size < 3 then
      error("dropout2d: input must be [N, C, ...] with at least 3 dims, got [" ..
        table.concat(size, ", ") .. "]", 2)
    end
    if not training or p == 0 then return x end
    local ms_shape = { size[1], size[2] }
    for i = 3, #size do ms_shape[i] = 1 end
    -- One mask value per (sample, channel): dropout of ones gives 0 or 1 / (1 - p).
    local mask = ms.no_grad(function()
      return F.dropout(ms.ones(ms_shape, { dtype = x:type(), device = x:device_str() }), p, true, opts)
    end)
    return x * mask
  end

  nn.Dropout2d = Module.class("Dropout2d")
  function nn.Dropout2d:__init(p) self.p = p or 0.5 end
  function nn.Dropout2d:forward(x) return F.dropout2d(x, self.p, self.training) end
  function nn.Dropout2d:extra_repr() return "p=" .. self.p end
end
