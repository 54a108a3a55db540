-- config/yaml.lua: YAML text -> Lua tables through libyaml (C side: csrc/io/yaml.c).
--
--   local yaml = require "moonseg.config.yaml"
--   local tree = yaml.parse(text, "a.yml")   -- mappings and sequences as tables
--   yaml.where(tree)  -> { file=, line=, keys = { key = line } }  (positions for error messages)
--
-- Plain scalars are typed as PyYAML's safe_load types them (YAML 1.1: yes/no/on/off are
-- booleans, ~ and null are yaml.null), plus exponent-only floats (1e-4) as numbers; quoted
-- scalars stay strings. Anchors, aliases and tags are refused by the C side, naming file:line.
local ffi = require "ffi"
local L = require "moonseg.lib"
local C = L.C

local M = {}

-- The null value (a Lua nil cannot sit in a table and still say "the key was given").
M.null = setmetatable({}, { __tostring = function() return "null" end })

local info = setmetatable({}, { __mode = "k" })
function M.where(t) return info[t] end
function M.set_where(t, w) info[t] = w end

local bools = { ["true"] = true, ["True"] = true, ["TRUE"] = true, yes = true, Yes = true, YES = true,
  on = true, On = true, ON = true, ["false"] = false, ["False"] = false, ["FALSE"] = false, no = false,
  No = false, NO = false, off = false, Off = false, OFF = false }
local nulls = { [""] = true, ["~"] = true, null = true, Null = true, NULL = true }

local function plain(s)
  if nulls[s] then return M.null end
  if bools[s] ~= nil then return bools[s] end
  local t = s:gsub("_", "")
  if t:match("^[-+]?%d+$") then return tonumber(t) end
  if t:match("^[-+]?0x%x+$") then return tonumber(t) end
  if t:match("^[-+]?%d*%.?%d+[eE][-+]?%d+$") or t:match("^[-+]?%d+%.%d*[eE][-+]?%d+$") or
    t:match("^[-+]?%d*%.%d+$") or t:match("^[-+]?%d+%.$") then return tonumber(t) end
  if t:match("^[-+]?%.[iI][nN][fF]$") then return t:sub(1, 1) == "-" and -math.huge or math.huge end
  if t:match("^%.[nN][aA][nN]$") then return 0 / 0 end
  return s
end

-- parse(text, name) -> the document's value (a table, scalar, or yaml.null for an empty file).
function M.parse(text, name)
  local out, len = ffi.new("char*[1]"), ffi.new("int64_t[1]")
  if C.ms_yaml_events(text, #text, name, out, len) ~= 0 then error(ffi.string(C.ms_last_error()), 0) end
  local s = ffi.string(out[0], len[0])
  C.ms_yaml_free(out[0])
  local pos = 1
  local function record()
    local kind, line, n = s:match("^(%u)(%d+) (%d+)\n", pos)
    if not kind then return nil end
    pos = pos + #kind + #line + #n + 2
    local val
    if kind == "S" then
      n = tonumber(n)
      local style = s:sub(pos, pos)
      val = s:sub(pos + 1, pos + n - 1)
      pos = pos + n + 1
      if style == "p" then val = plain(val) end
    end
    return kind, tonumber(line), val
  end
  local value
  local function node(kind, line, val)
    if kind == "S" then return val end
    local t, w = {}, { file = name, line = line, keys = {} }
    info[t] = w
    if kind == "Q" then
      while true do
        local k2, l2, v2 = record()
        if k2 == "E" then break end
        local v = node(k2, l2, v2)
        t[#t + 1] = v
        w.keys[#t] = l2
      end
      w.list = true
      return t
    end
    while true do -- mapping: key, value, key, value, ... E
      local k2, l2, v2 = record()
      if k2 == "E" then break end
      if k2 ~= "S" then error(string.format("%s:%d: mapping keys must be plain words", name, l2), 0) end
      local key = tostring(v2 == M.null and "null" or v2)
      if w.keys[key] then
        error(string.format("%s:%d: key '%s' appears twice in this mapping (first at line %d)", name, l2,
          key, w.keys[key]), 0)
      end
      w.keys[key] = l2
      t[key] = node(record())
    end
    return t
  end
  local k, line, v = record()
  if not k then return M.null end
  value = node(k, line, v)
  return value
end

return M
