-- models/registry.lua: building a model from a plain description (a registry name and an
-- arguments table), so a checkpoint's state.json can record what to rebuild:
--   { name = "DeepLabV3P", args = { num_classes = 19, aspp_ratios = { 1, 12, 24, 36 },
--     backbone = { name = "ResNet50_vd", args = { output_stride = 8 } } } }
-- An argument that is itself { name =, args = } is built first (a backbone).
local M = {}

local function is_spec(v) return type(v) == "table" and type(v.name) == "string" and v.args ~= nil end

-- build(spec) -> module, with the spec kept on it (model.model_spec) for checkpoints.
function M.build(spec)
  local ms = require "moonseg"
  if not is_spec(spec) then error("models.build: expected { name = <model>, args = { ... } }", 2) end
  local ctor = ms.models[spec.name] or ms.models.backbones[spec.name]
  if type(ctor) ~= "table" and type(ctor) ~= "function" then
    error("models.build: unknown model '" .. spec.name .. "'", 2)
  end
  local args = {}
  for k, v in pairs(spec.args) do args[k] = is_spec(v) and M.build(v) or v end
  local m = ctor(args)
  rawset(m, "model_spec", spec)
  return m
end

-- The spec recorded next to a checkpoint's weights (dir/state.json "model"), or nil.
function M.spec_of_checkpoint(model_path)
  local json = require "moonseg.json"
  local dir = model_path:match("%.safetensors$") and (model_path:match("^(.*)/[^/]*$") or ".") or model_path
  local f = io.open(dir .. "/state.json", "rb")
  if not f then return nil end
  f:close()
  local state = json.read_file(dir .. "/state.json")
  return is_spec(state.model) and state.model or nil
end

return M
