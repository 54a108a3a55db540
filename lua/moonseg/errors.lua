-- errors.lua: user errors (bad flags, data, config, checkpoints) as a type of their own, and
-- the recipes' top-level handler: a user error prints its message alone and exits 1; any other
-- error is internal and keeps its stack traceback. MOONSEG_DEBUG=1 shows the traceback of
-- user errors too.
local ffi = require "ffi"

local E = {}

local UserError = {}
UserError.__tostring = function(e) return e.message end
-- "context: " .. err keeps working on a user error (the result is a plain string).
UserError.__concat = function(a, b) return tostring(a) .. tostring(b) end

function E.is_user(e) return getmetatable(e) == UserError end

-- Raises msg as a user error (no position prefix: the message names what is at fault).
function E.user(msg)
  if E.is_user(msg) then error(msg, 0) end
  error(setmetatable({ message = tostring(msg) }, UserError), 0)
end

-- Like lib.check, for calls whose failures are the user's (missing or corrupt files, bad
-- data): a non-zero status raises ms_last_error() as a user error.
function E.check(status)
  if status ~= 0 then E.user(ffi.string(require("moonseg.lib").C.ms_last_error())) end
end

-- Calls fn(...); any error it raises becomes a user error (for loading what the user named).
function E.as_user(fn, ...)
  local r = { pcall(fn, ...) }
  if not r[1] then E.user(r[2]) end
  return unpack(r, 2, table.maxn(r))
end

-- Runs fn(...) as a program's main: returns its results, or reports the error on stderr
-- (prefixed by prog) and exits with status 1.
function E.main(prog, fn, ...)
  local trace
  local r = { xpcall(fn, function(e)
    trace = debug.traceback(tostring(e), 2)
    return e
  end, ...) }
  if r[1] then return unpack(r, 2, table.maxn(r)) end
  io.stdout:flush()
  if E.is_user(r[2]) and os.getenv("MOONSEG_DEBUG") ~= "1" then
    io.stderr:write(prog, ": ", tostring(r[2]), "\n")
  else
    io.stderr:write(prog, ": ", trace, "\n")
  end
  os.exit(1)
end

return E
