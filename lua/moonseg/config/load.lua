-- config/load.lua: a PaddleSeg YAML config with its _base_ chain, merged as PaddleSeg merges:
-- a child's mapping overrides its base key by key, recursively; lists and scalars replace
-- whole; a mapping with `_inherited_: False` replaces the base's mapping. _base_ paths are
-- relative to the folder of the config naming them. Every merged value keeps where it came
-- from (file and line) so errors can name them: M.pos(tbl, key) -> "file:line".
local yaml = require "moonseg.config.yaml"

local M = {}

local function dirname(p) return p:match("^(.*)/[^/]*$") or "." end

local function read(path, from)
  local f = io.open(path, "rb")
  if not f then
    error((from and (from .. ": ") or "") .. "config file not found: " .. path, 0)
  end
  local text = f:read("*a")
  f:close()
  return text
end

local function is_map(v) return type(v) == "table" and v ~= yaml.null and not (yaml.where(v) or {}).list end

-- merge(base, child) -> a new table: child over base (PaddleSeg's _update_dic).
local function merge(base, child)
  local cw = yaml.where(child)
  if child._inherited_ ~= nil then
    if type(child._inherited_) ~= "boolean" then
      error(string.format("%s:%d: _inherited_ must be True or False", cw.file, cw.keys._inherited_), 0)
    end
  end
  if not is_map(base) or child._inherited_ == false then
    local r, w = {}, { file = cw.file, line = cw.line, keys = {}, files = {} }
    for k, v in pairs(child) do
      if k ~= "_inherited_" then
        r[k], w.keys[k], w.files[k] = v, cw.keys[k], (cw.files and cw.files[k]) or cw.file
      end
    end
    yaml.set_where(r, w)
    return r
  end
  local bw = yaml.where(base)
  local r, w = {}, { file = bw.file, line = bw.line, keys = {}, files = {} }
  for k, v in pairs(base) do r[k], w.keys[k], w.files[k] = v, bw.keys[k], (bw.files and bw.files[k]) or bw.file end
  for k, v in pairs(child) do
    if k ~= "_inherited_" then
      if is_map(v) and r[k] ~= nil then v = merge(r[k], v) end
      r[k], w.keys[k], w.files[k] = v, cw.keys[k], (cw.files and cw.files[k]) or cw.file
    end
  end
  yaml.set_where(r, w)
  return r
end
M.merge = merge

-- load(path) -> the merged config (a table); errors name the file and line at fault.
function M.load(path, seen, from)
  seen = seen or {}
  if seen[path] then error(path .. ": _base_ chain loops back to this file", 0) end
  seen[path] = true
  local tree = yaml.parse(read(path, from), path)
  if not is_map(tree) then error(path .. ": a config must be a YAML mapping (key: value lines)", 0) end
  local w = yaml.where(tree)
  local bases = tree._base_
  tree._base_ = nil
  local merged
  if bases ~= nil then
    local where = string.format("%s:%d: _base_", path, w.keys._base_)
    if type(bases) ~= "string" and not (type(bases) == "table" and (yaml.where(bases) or {}).list) then
      error(where .. " must be a file name or a list of them", 0)
    end
    if type(bases) == "string" then bases = { bases } end
    -- as PaddleSeg: the config is merged over its first base, that result over the second, ...
    -- so an earlier base wins over a later one
    merged = merge(nil, tree)
    for _, b in ipairs(bases) do
      if type(b) ~= "string" then error(where .. " must be a file name or a list of them", 0) end
      local bp = b:sub(1, 1) == "/" and b or (dirname(path) .. "/" .. b)
      merged = merge(M.load(bp, seen, where), merged)
    end
  end
  seen[path] = nil
  return merged or merge(nil, tree) -- normalised: a where with files per key
end

-- "file:line" of key k of table t (or of t itself).
function M.pos(t, k)
  local w = yaml.where(t)
  if not w then return "?" end
  local file = (k ~= nil and w.files and w.files[k]) or w.file
  local line = (k ~= nil and w.keys[k]) or w.line
  if type(line) == "string" then return line end -- "--opts key=value" (config/opts.lua)
  return string.format("%s:%s", file, tostring(line or "?"))
end

return M
