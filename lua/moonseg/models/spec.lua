-- models/spec.lua: a model as data ({name = "OCRNet", args = {..., backbone = {name = "HRNet_W18",
-- args = {}}}}), recorded in a checkpoint's state.json so that recipes/val.lua rebuilds it; and
-- loading converted backbone weights (--pretrained).
local ms = require "moonseg"

local M = {}

local function is_spec(v) return type(v) == "table" and type(v.name) == "string" and v.args ~= nil end

-- build(spec): the registered constructor ms.models[name] (or ms.models.backbones[name]) called
-- with args, whose nested specs are built first.
function M.build(spec)
  if not is_spec(spec) then error("model spec: expected {name = ..., args = {...}}", 2) end
  local ctor = ms.models[spec.name] or ms.models.backbones[spec.name]
  if type(ctor) ~= "function" and type(ctor) ~= "table" then
    error("model spec: no model or backbone named '" .. spec.name .. "' in ms.models", 2)
  end
  local args = {}
  for k, v in pairs(spec.args) do args[k] = is_spec(v) and M.build(v) or v end
  return ctor(args)
end

-- load_backbone(model, path): a converted PaddleSeg backbone checkpoint (keys as the backbone's
-- own, or prefixed `backbone.` as in a whole-model checkpoint) loaded strictly into model.backbone.
function M.load_backbone(model, path)
  local sd = ms.load(path)
  local prefixed = false
  for k in pairs(sd) do if k:match("^backbone%.") then prefixed = true break end end
  local own = sd
  if prefixed then -- a whole-model file: keep only the backbone's keys
    own = {}
    for k, v in pairs(sd) do
      local bk = k:match("^backbone%.(.*)$")
      if bk then own[bk] = v end
    end
  end
  model.backbone:load_state_dict(own)
end

return M
