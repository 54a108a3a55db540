-- config/opts.lua: PaddleSeg's `--opts key.path=value [key.path=value ...]` on a merged config
-- (cvlibs/config.py's update_config_dict): each item is split at its one '='; the value is
-- read as a Python literal (ast.literal_eval: 2, 0.5, 1e-4, True, None, 'text', [1, 2],
-- 0.75,1.0,1.25 as a tuple) and anything else stays the text as written (STDC1, data/x); the
-- key path must already be in the config (PaddleSeg's rule: --opts changes keys, it adds none).
-- PaddleSeg applies --opts after --iters/--batch_size/--learning_rate, so it wins over them.
-- moonseg's extension: a number in the path indexes a list from 0 (loss.types.0.type=...).
local yaml = require "moonseg.config.yaml"

local M = {}

local function is_list(v) return type(v) == "table" and v ~= yaml.null and (yaml.where(v) or {}).list end
local function is_map(v) return type(v) == "table" and v ~= yaml.null and not is_list(v) end

-- ---- Python literals ------------------------------------------------------------------------
local consts = { True = true, False = false }

-- literal(s) -> value, or nil when s is not a Python literal (then the text is the value).
local function literal(s, where)
  local pos = 1
  local function ws() pos = s:find("[^ \t]", pos) or #s + 1 end
  local value
  local function items(close) -- after an opening bracket: values separated by commas
    local r = {}
    ws()
    if s:sub(pos, pos) == close then
      pos = pos + 1
      return r
    end
    while true do
      local v = value()
      if v == nil then return nil end
      r[#r + 1] = v
      ws()
      local c = s:sub(pos, pos)
      pos = pos + 1
      if c == close then return r end
      if c ~= "," then return nil end
      ws()
      if s:sub(pos, pos) == close then -- a trailing comma
        pos = pos + 1
        return r
      end
    end
  end
  function value()
    ws()
    local c = s:sub(pos, pos)
    if c == "[" or c == "(" then
      pos = pos + 1
      local r = items(c == "[" and "]" or ")")
      if r then yaml.set_where(r, { file = "--opts", line = where, keys = {}, list = true }) end
      return r
    end
    if c == "'" or c == '"' then
      local out, i = {}, pos + 1
      while i <= #s do
        local ch = s:sub(i, i)
        if ch == c then
          pos = i + 1
          return table.concat(out)
        end
        if ch == "\\" then
          local e = s:sub(i + 1, i + 1)
          out[#out + 1] = ({ n = "\n", t = "\t", ["\\"] = "\\", ["'"] = "'", ['"'] = '"' })[e] or ("\\" .. e)
          i = i + 2
        else
          out[#out + 1] = ch
          i = i + 1
        end
      end
      return nil -- unterminated
    end
    local word = s:match("^[%w_.+-]+", pos)
    if not word then return nil end
    pos = pos + #word
    if consts[word] ~= nil then return consts[word] end
    if word == "None" then return yaml.null end
    local sign, body = word:match("^([+-]?)(.*)$")
    body = body:gsub("(%d)_(%d)", "%1%2")
    local n
    if body:match("^%d+$") and (body == "0" or not body:match("^0")) then
      n = tonumber(body)
    elseif body:match("^0[xX]%x+$") or body:match("^0[oO][0-7]+$") or body:match("^0[bB][01]+$") then
      local base = ({ x = 16, o = 8, b = 2 })[body:sub(2, 2):lower()]
      n = tonumber(body:sub(3), base)
    elseif body:match("^%d+%.?%d*[eE][+-]?%d+$") or body:match("^%.%d+[eE][+-]?%d+$") or body:match("^%d+%.%d*$") or
      body:match("^%.%d+$") then
      n = tonumber(body)
    elseif body == "inf" or body == "nan" then
      return nil -- float('inf') is not a literal
    end
    if n == nil then return nil end
    return sign == "-" and -n or n
  end
  local v = value()
  if v == nil then return nil end
  ws()
  if pos <= #s then -- a bare comma list is a tuple: 0.75,1.0,1.25
    if s:sub(pos, pos) ~= "," then return nil end
    local r = { v }
    while pos <= #s do
      if s:sub(pos, pos) ~= "," then return nil end
      pos = pos + 1
      ws()
      if pos > #s then break end -- a trailing comma: (1,)
      local x = value()
      if x == nil then return nil end
      r[#r + 1] = x
      ws()
    end
    yaml.set_where(r, { file = "--opts", line = where, keys = {}, list = true })
    return r
  end
  return v
end

-- value(text, where) -> what --opts puts in the config for this text.
function M.value(text, where)
  local v = literal(text, where or ("--opts " .. text))
  if v == nil then return text end
  return v
end

-- ---- command line -----------------------------------------------------------------------------
-- extract(argv) -> argv without --opts and its items, the items (nil when no --opts). As
-- argparse's nargs='+': the items run to the next --flag; --opts=ITEM gives one.
function M.extract(argv)
  local rest, items = {}, nil
  local i = 1
  while i <= #argv do
    local a = argv[i]
    if a == "--opts" then
      items = items or {}
      local n = 0
      i = i + 1
      while argv[i] ~= nil and not argv[i]:match("^%-%-") do
        items[#items + 1] = argv[i]
        n, i = n + 1, i + 1
      end
      if n == 0 then error("--opts needs at least one key.path=value", 0) end
    elseif a:match("^%-%-opts=") then
      items = items or {}
      items[#items + 1] = a:sub(8)
      i = i + 1
    else
      rest[#rest + 1] = a
      i = i + 1
    end
  end
  return rest, items
end

-- ---- applying them ----------------------------------------------------------------------------
local function keys_of(t)
  local r = {}
  for k in pairs(t) do r[#r + 1] = tostring(k) end
  table.sort(r)
  return table.concat(r, ", ")
end

-- apply(cfg, items) -> the set of key paths changed ({["batch_size"] = true, ...}). cfg is
-- changed in place; each changed key remembers "--opts ITEM" as where it came from.
function M.apply(cfg, items)
  local touched = {}
  for _, item in ipairs(items or {}) do
    local where = "--opts " .. item
    local key, text = item:match("^([^=]*)=([^=]*)$")
    if not key then
      error(where .. ": each item must be key.path=value with one '=' (e.g. --opts batch_size=2 " ..
        "model.backbone.type=STDC1)", 0)
    end
    if key == "" or key:match("^%.") or key:match("%.$") or key:match("%.%.") then
      error(where .. ": '" .. key .. "' is not a key path (keys joined by dots: model.backbone.type)", 0)
    end
    local parts = {}
    for p in key:gmatch("[^.]+") do parts[#parts + 1] = p end
    local t, path = cfg, ""
    for i, p in ipairs(parts) do
      local here = path == "" and p or (path .. "." .. p)
      local k
      if is_map(t) then
        if t[p] == nil then
          error(string.format("%s: %s is not in the config (--opts changes the keys a config has, as " ..
            "PaddleSeg's; %s has: %s)", where, here, path == "" and "the config" or path, keys_of(t)), 0)
        end
        k = p
      elseif is_list(t) then
        local n = tonumber(p)
        if not n or n ~= math.floor(n) or n < 0 or n >= #t then
          error(string.format("%s: %s: %s is a list of %d; index it from 0 (%s.0)", where, here, path, #t, path), 0)
        end
        k = n + 1
      else
        error(string.format("%s: %s: %s is %s, not a mapping", where, here, path,
          t == yaml.null and "null" or ("the value " .. tostring(t))), 0)
      end
      if i == #parts then
        t[k] = M.value(text, where)
        local w = yaml.where(t)
        if w then
          w.keys[k] = where
          if w.files then w.files[k] = "--opts" end
        end
      else
        t = t[k]
      end
      path = here
    end
    touched[key] = true
  end
  return touched
end

return M
