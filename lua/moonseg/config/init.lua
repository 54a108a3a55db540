-- config: PaddleSeg's YAML configs for moonseg (recipes/train.lua --config, val.lua, predict.lua).
--
--   local config = require "moonseg.config"
--   local cfg = config.load("my.yml")            -- _base_ chain merged
--   print(config.dump(cfg))                      -- as YAML, each key's file:line as a comment
--   local parts = config.build(cfg, { iters = 1000, batch_size = 4 })
local yaml = require "moonseg.config.yaml"
local load = require "moonseg.config.load"
local build = require "moonseg.config.build"

local M = { null = yaml.null, load = load.load, merge = load.merge, pos = load.pos, build = build.build,
  parse_yaml = yaml.parse, weights = require "moonseg.config.weights", registry = require "moonseg.config.registry",
  opts = require "moonseg.config.opts" }

local function scalar(v)
  if v == yaml.null then return "null" end
  if type(v) == "boolean" then return v and "true" or "false" end
  if type(v) == "number" then
    if v == math.floor(v) and math.abs(v) < 2 ^ 53 then return string.format("%d", v) end
    local s = string.format("%.15g", v)
    if tonumber(s) ~= v then s = string.format("%.17g", v) end
    if not s:find("[.eEn]") then s = s .. ".0" end
    return s
  end
  if v:match("^[%w_./-]+$") and type(yaml.parse(v, "")) == "string" then return v end
  return string.format("%q", v)
end

local function is_list(v) return type(v) == "table" and v ~= yaml.null and (yaml.where(v) or {}).list end

-- dump(cfg) -> YAML text of the merged config; each key ends with "# file:line".
function M.dump(cfg)
  local out = {}
  local function emit(v, indent, prefix, where)
    if type(v) ~= "table" or v == yaml.null then
      out[#out + 1] = prefix .. " " .. scalar(v) .. where
    elseif is_list(v) then
      local flat = true
      for _, x in ipairs(v) do if type(x) == "table" and x ~= yaml.null then flat = false end end
      if flat then
        local items = {}
        for i, x in ipairs(v) do items[i] = scalar(x) end
        out[#out + 1] = prefix .. " [" .. table.concat(items, ", ") .. "]" .. where
      else
        out[#out + 1] = prefix .. where
        for _, x in ipairs(v) do emit(x, indent .. "  ", indent .. "-", "") end
      end
    else
      local keys = {}
      for k in pairs(v) do keys[#keys + 1] = k end
      table.sort(keys, function(a, b)
        if a == "type" then return b ~= "type" end
        if b == "type" then return false end
        return a < b
      end)
      local first = true
      if prefix ~= "" then
        if prefix:match("%-$") then -- a list item: its first key follows the dash
          for _, k in ipairs(keys) do
            emit(v[k], indent .. "  ", (first and prefix .. " " or indent .. "  ") .. k .. ":",
              "  # " .. load.pos(v, k))
            first = false
          end
          return
        end
        out[#out + 1] = prefix .. where
      end
      for _, k in ipairs(keys) do
        emit(v[k], indent .. (prefix ~= "" and "  " or ""), indent .. (prefix ~= "" and "  " or "") .. k .. ":",
          "  # " .. load.pos(v, k))
      end
    end
  end
  emit(cfg, "", "", "")
  return table.concat(out, "\n") .. "\n"
end

return M
