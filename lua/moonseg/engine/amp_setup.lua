-- amp_setup.lua: what the training loop does for --precision fp16|bf16, --amp_level O1|O2 and
-- --scale_loss: autocast around forward and loss, the GradScaler around backward and step,
-- O2's f32 master weights, the scale in the log line, TensorBoard and iter_N checkpoints.
local ms = require "moonseg"
local log = require "moonseg.engine.log"

local M = {}
local MP = {}
MP.__index = MP

local half_of = { fp16 = "f16", bf16 = "bf16" }
local fp16_cpu_noted = false

-- setup(cfg, model, opt) -> the object the loop calls; fp32 gives one that does nothing extra.
function M.setup(cfg, model, opt)
  local self = setmetatable({ model = model, opt = opt, half = half_of[cfg.precision or "fp32"],
    level = cfg.amp_level or "O1" }, MP)
  if not self.half then return self end
  if cfg.precision == "fp16" and (cfg.device or "cpu") == "cpu" and not fp16_cpu_noted then
    fp16_cpu_noted = true
    log.info("fp16 on the CPU: no native f16 convolution without AVX512-FP16, so f16 tensors are " ..
      "converted to f32 and computed (correct, not faster); bf16 runs natively")
  end
  if cfg.precision == "fp16" then
    local sl = cfg.scale_loss or "dynamic"
    local static = sl ~= "dynamic" and tonumber(sl) or nil
    if sl ~= "dynamic" and not (static and static > 0 and static < math.huge) then
      error("--scale_loss must be 'dynamic' or a number > 0, got " .. tostring(sl), 0)
    end
    self.scaler = ms.amp.GradScaler { init_scale = static or cfg.init_loss_scaling or 1024, dynamic = static == nil }
  end
  if self.level == "O2" then ms.amp.decorate(model, opt, self.half) end
  log.info(string.format("mixed precision: %s %s%s", cfg.precision, self.level, self.scaler and
    string.format(", %s loss scale %g", self.scaler.dynamic and "dynamic" or "static", self.scaler:get_scale()) or ""))
  return self
end

-- fn() -> logits, loss: under autocast when mixed precision is on.
function MP:forward(fn)
  if not self.half then return fn() end
  return ms.autocast(self.half, fn)
end

-- Evaluation: O2's half weights need autocast; O1 evaluates in f32 as PaddleSeg does.
function MP:eval_scope(fn)
  if self.half and self.level == "O2" then return ms.autocast(self.half, fn) end
  return fn()
end

function MP:backward(loss)
  if self.scaler then self.scaler:scale(loss):backward() else loss:backward() end
end

function MP:unscale(opt) if self.scaler then self.scaler:unscale_(opt) end end

-- The step, skipped (weights and optimizer state untouched) when gradients hold inf/nan.
function MP:step(opt)
  if not self.scaler then return opt:step() end
  self.scaler:step(opt)
  self.scaler:update()
end

function MP:log_text()
  if not self.scaler then return "" end
  return string.format(", loss_scale: %g, skipped: %d", self.scaler:get_scale(), self.scaler:skipped_steps())
end

function MP:add_scalars(writer, iter)
  if not self.scaler then return end
  writer:add_scalar("Train/loss_scale", self.scaler:get_scale(), iter)
  writer:add_scalar("Train/skipped_steps", self.scaler:skipped_steps(), iter)
end

-- What checkpoints save as the model: f32 weights (O2: the optimizer's masters).
function MP:checkpoint_model()
  if self.level ~= "O2" or not self.half then return self.model end
  local model, opt = self.model, self.opt
  return { state_dict = function() return ms.amp.f32_state_dict(model, opt) end }
end

function MP:scaler_state() return self.scaler and self.scaler:state_dict() or nil end

function MP:load_state(s)
  if self.scaler and s.scaler then self.scaler:load_state_dict(s.scaler) end
end

return M
