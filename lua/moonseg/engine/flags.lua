-- flags.lua: command-line flags in PaddleSeg's style (--iters 1000 --crop_size 512 512 --do_eval).
--
-- A spec is a list of {name, kind, default, help, choices=}: kind is "int", "float",
-- "string", "bool" (a switch: --do_eval, or --do_eval true/false) or "size" (two ints: W H).
-- Unknown flags, missing or malformed values and values outside choices raise an error that
-- lists what is accepted; --help prints the flags and exits.
local M = {}

local function usage(spec, prog)
  local lines = { "usage: luajit " .. prog .. " [flags]", "" }
  for _, f in ipairs(spec) do
    local shape = ({ int = " N", float = " X", string = " S", bool = "", size = " W H" })[f[2]]
    local def = f[3]
    if type(def) == "table" then def = table.concat(def, " ") end
    local extra = f.choices and (" {" .. table.concat(f.choices, ",") .. "}") or ""
    lines[#lines + 1] = string.format("  --%-24s %s%s%s", f[1] .. shape, f[4] or "", extra,
      def ~= nil and def ~= false and (" (default " .. tostring(def) .. ")") or "")
  end
  return table.concat(lines, "\n")
end
M.usage = usage

local function accepted(spec)
  local names = {}
  for _, f in ipairs(spec) do names[#names + 1] = "--" .. f[1] end
  return table.concat(names, " ")
end

-- parse(spec, argv, prog) -> table of values (defaults filled in).
function M.parse(spec, argv, prog)
  prog = prog or "recipe"
  local by_name, cfg = {}, {}
  for _, f in ipairs(spec) do
    by_name[f[1]] = f
    local d = f[3]
    if type(d) == "table" then d = { unpack(d) } end
    cfg[f[1]] = d
  end
  local function fail(msg)
    error(msg .. "\naccepted flags: " .. accepted(spec) .. "\n(run with --help for details)", 0)
  end
  local i = 1
  while i <= #argv do
    local a = argv[i]
    if a == "--help" or a == "-h" then
      print(usage(spec, prog))
      os.exit(0)
    end
    local name, inline = a:match("^%-%-([%w_]+)=(.*)$")
    if not name then name = a:match("^%-%-([%w_]+)$") end
    if not name then fail("unexpected argument '" .. a .. "'") end
    local f = by_name[name]
    if not f then fail("unknown flag --" .. name) end
    local kind = f[2]
    local function take()
      if inline then
        local v = inline
        inline = nil
        return v
      end
      i = i + 1
      local v = argv[i]
      if v == nil or (v:match("^%-%-") and kind ~= "float" and kind ~= "int") then
        fail("flag --" .. name .. " needs a value")
      end
      return v
    end
    local v
    if kind == "bool" then
      local nxt = inline or argv[i + 1]
      if nxt == "true" or nxt == "false" or nxt == "1" or nxt == "0" then
        v = take()
        v = v == "true" or v == "1"
      else
        v = true
      end
    elseif kind == "int" or kind == "float" then
      local s = take()
      v = tonumber(s)
      if not v or (kind == "int" and v ~= math.floor(v)) then
        fail(string.format("flag --%s needs %s, got '%s'", name, kind == "int" and "an integer" or "a number", s))
      end
      if f.min and v < f.min then fail(string.format("flag --%s must be >= %s, got %s", name, f.min, s)) end
    elseif kind == "size" then
      local nxt1, nxt2 = argv[i + 1], argv[i + 2]
      if not inline and (not tonumber(nxt1 or "") or not tonumber(nxt2 or "")) then
        fail("flag --" .. name .. " needs two positive integers W H")
      end
      local w, h = take(), take()
      w, h = tonumber(w), tonumber(h)
      if not w or not h or w < 1 or h < 1 or w ~= math.floor(w) or h ~= math.floor(h) then
        fail("flag --" .. name .. " needs two positive integers W H")
      end
      v = { w, h }
    else
      v = take()
    end
    if f.choices then
      local ok = false
      for _, c in ipairs(f.choices) do if c == v then ok = true end end
      if not ok then
        fail(string.format("flag --%s: '%s' is not one of %s", name, tostring(v), table.concat(f.choices, ", ")))
      end
    end
    cfg[name] = v
    i = i + 1
  end
  return cfg
end

return M
