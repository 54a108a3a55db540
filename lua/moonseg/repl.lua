-- repl.lua: an interactive moonseg prompt: results printed without '=', readline history and
-- tab completion of fields when libreadline is present, plain line input otherwise.
local ffi = require "ffi"

local function load_readline()
  for _, name in ipairs { "readline", "libreadline.so.8", "libreadline.so.7" } do
    local ok, lib = pcall(ffi.load, name)
    if ok then return lib end
  end
end

pcall(ffi.cdef, [[
char *readline(const char *prompt);
void add_history(const char *line);
void free(void *p);
char *strdup(const char *s);
typedef char *rl_compentry_func_t(const char *text, int state);
typedef char **rl_completion_func_t(const char *text, int start, int end);
char **rl_completion_matches(const char *text, rl_compentry_func_t *entry);
extern rl_completion_func_t *rl_attempted_completion_function;
extern const char *rl_basic_word_break_characters;
extern int rl_completion_append_character;
]])

-- Names that complete `prefix` in env: "ms.ze" -> {"ms.zeros"}; "x:si" -> {"x:size"}.
local function completions(env, text)
  local head, sep, partial = text:match("^(.-)([%.:])([%w_]*)$")
  local obj, base
  if head then
    obj = env
    for part in head:gmatch("[^%.]+") do
      if type(obj) ~= "table" then obj = nil break end
      obj = obj[part]
    end
    base = head .. sep
  else
    obj, base, partial = env, "", text
  end
  local seen, out = {}, {}
  local function add_keys(t)
    if type(t) ~= "table" then return end
    for k in pairs(t) do
      if type(k) == "string" and k:sub(1, #partial) == partial and not seen[k] and k:sub(1, 1) ~= "_" then
        seen[k] = true
        out[#out + 1] = base .. k
      end
    end
  end
  if type(obj) == "table" then
    add_keys(obj)
    local mt = getmetatable(obj)
    if mt and type(mt.__index) == "table" then add_keys(mt.__index) end
    local ms = package.loaded.moonseg
    if ms and ms.is_tensor(obj) then add_keys(ms.Tensor) end
    if mt and mt.__index == nil and rawget(obj, "__index") then add_keys(obj.__index) end
  end
  if obj == env then add_keys(_G) end
  table.sort(out)
  return out
end

-- Pretty form of a value: tensors and modules through their __tostring, tables shallowly.
local function show(v)
  if type(v) == "table" and not (getmetatable(v) and getmetatable(v).__tostring) then
    local parts, n = {}, 0
    local function item(x) return type(x) == "string" and string.format("%q", x) or tostring(x) end
    if #v > 0 then
      for i = 1, math.min(#v, 20) do parts[i] = item(v[i]) end
      if #v > 20 then parts[#parts + 1] = "..." end
      return "{" .. table.concat(parts, ", ") .. "}"
    end
    for k, x in pairs(v) do
      n = n + 1
      if n > 20 then parts[#parts + 1] = "..." break end
      parts[#parts + 1] = (type(k) == "string" and k .. " = " or "[" .. tostring(k) .. "] = ") .. item(x)
    end
    return "{" .. table.concat(parts, ", ") .. "}"
  end
  return tostring(v)
end

-- Compiles a line: as an expression first (so results print), then as a statement.
local function compile(src, env)
  local f, err = loadstring("return " .. src, "=repl")
  if not f then f, err = loadstring(src, "=repl") end
  if f then setfenv(f, env) end
  return f, err
end

local function run(opts)
  opts = opts or {}
  local ms = require "moonseg"
  local env = setmetatable({ ms = ms, F = ms.functional }, { __index = _G })
  local rl = not opts.plain and load_readline()
  local input, keep
  if rl then
    local matches = {}
    local entry = ffi.cast("rl_compentry_func_t*", function(_, state)
      local s = matches[state + 1]
      return s and ffi.C.strdup(s) or nil
    end)
    local attempt = ffi.cast("rl_completion_func_t*", function(text)
      matches = completions(env, ffi.string(text))
      return rl.rl_completion_matches(text, entry)
    end)
    rl.rl_attempted_completion_function = attempt
    rl.rl_basic_word_break_characters = " \t\n\"'><=;(){}[],+-*/%^~#"
    keep = { entry, attempt }
    input = function(prompt)
      local p = rl.readline(prompt)
      if p == nil then return nil end
      local s = ffi.string(p)
      ffi.C.free(p)
      if s:match("%S") then rl.add_history(s) end
      return s
    end
  else
    input = function(prompt)
      io.write(prompt)
      io.flush()
      return io.read("*l")
    end
  end
  if not opts.quiet then
    print("moonseg " .. ms.version .. " (" .. ms.build_info() .. ")  ms = require'moonseg', F = ms.functional; ctrl-D quits")
  end
  local buffer = ""
  while true do
    local line = input(buffer == "" and "ms> " or "..> ")
    if line == nil then break end
    buffer = buffer == "" and line or buffer .. "\n" .. line
    local f, err = compile(buffer, env)
    if not f and err:find("<eof>", 1, true) then
      -- incomplete chunk: keep reading
    else
      buffer = ""
      if not f then
        print(err)
      else
        local r = { xpcall(f, debug.traceback) }
        if not r[1] then
          print(r[2])
        else
          for i = 2, table.maxn(r) do print(show(r[i])) end
        end
      end
    end
  end
  if keep then rl.rl_attempted_completion_function = nil end
  print()
end

return setmetatable({ completions = completions, show = show, compile = compile, run = run },
  { __call = function(_, opts) return run(opts) end })
